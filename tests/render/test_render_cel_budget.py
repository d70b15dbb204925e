"""A Blueprint that slips past the static limits (raised, say) fails only its own render, with
the Blueprint, overlay, field and budget in the error."""

from __future__ import annotations

from typing import Any

import pytest
from render_helpers import H100, L4, facts, pool

from blueprintd.api.blueprint import Blueprint
from blueprintd.api.cel import CelBudget
from blueprintd.api.issues import InvalidInput
from blueprintd.api.limits import BlueprintLimits
from blueprintd.errors import RenderError
from blueprintd.render import RenderOptions, compile_blueprint, render

THIRTY = "[" + ",".join(str(i) for i in range(30)) + "]"
BOMB = f"{THIRTY}.all(a, {THIRTY}.all(b, {THIRTY}.all(c, {THIRTY}.all(d, {THIRTY}.all(e, a+b+c+d+e >= 0)))))"
RAISED = BlueprintLimits(cel_cost=10**12)
FACTS = facts(pool("h100", H100, 8), pool("l4", L4, 1))


def bp(name: str, overlays: list[dict[str, Any]]) -> Blueprint:
    return Blueprint.model_validate(
        {
            "apiVersion": "blueprintd.io/v1alpha1",
            "kind": "Blueprint",
            "metadata": {"name": name},
            "spec": {
                "version": "1.0.0",
                "addons": [
                    {
                        "name": "objs",
                        "namespace": "apps",
                        "manifests": [
                            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"a": "1"}}
                        ],
                    }
                ],
                "overlays": overlays,
            },
        }
    )


def cm_patch(data: dict[str, str]) -> dict[str, Any]:
    return {"addon": "objs", "target": {"kind": "ConfigMap", "name": "cm"}, "mergePatch": {"data": data}}


def test_the_bomb_is_refused_when_compiled_with_default_limits() -> None:
    with pytest.raises(InvalidInput) as info:
        compile_blueprint(bp("bomb", [{"name": "bomb", "when": BOMB}]))
    assert info.value.issues[0].field == "spec.overlays[0].when"


def test_cost_budget_error_names_blueprint_overlay_field_and_budget() -> None:
    compiled = compile_blueprint(bp("bomb", [{"name": "fine", "when": "true"}, {"name": "bomb", "when": BOMB}]), RAISED)
    with pytest.raises(RenderError) as info:
        render(compiled, FACTS, RenderOptions(cel_budget=CelBudget(cost=5_000, timeout_seconds=600)))
    message = str(info.value)
    assert message.startswith("Blueprint 'bomb' overlay 'bomb', spec.overlays[1].when: ")
    assert "exceeded its cost budget of 5000" in message
    assert "BLUEPRINTD_CEL_COST_BUDGET" in message


def test_deadline_error_for_a_budget_that_would_allow_it() -> None:
    compiled = compile_blueprint(bp("bomb", [{"name": "bomb", "when": BOMB}]), RAISED)
    with pytest.raises(RenderError) as info:
        render(compiled, FACTS, RenderOptions(cel_budget=CelBudget(cost=10**12, timeout_seconds=0.3)))
    assert "ran past the render deadline of 0.3s" in str(info.value)
    assert "BLUEPRINTD_RENDER_TIMEOUT" in str(info.value)


def test_a_templated_value_names_its_field_and_pool() -> None:
    overlay = {
        "name": "labels",
        "scope": "nodePool",
        "when": "pool.gpuCount > 0",
        "patches": [cm_patch({"x": "${ string(" + BOMB + ") }"})],
    }
    compiled = compile_blueprint(bp("tmpl", [overlay]), RAISED)
    with pytest.raises(RenderError) as info:
        render(compiled, FACTS, RenderOptions(cel_budget=CelBudget(cost=5_000, timeout_seconds=600)))
    assert str(info.value).startswith(
        "Blueprint 'tmpl' overlay 'labels' (pool h100), spec.overlays[0].patches[0].mergePatch.data.x: "
    )


class FakeClock:
    """``time.monotonic`` that advances 1 ms per reading: the meter reads it at every charge,
    so elapsed "time" counts charges, whatever the machine's load."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        self.now += 0.001
        return self.now


def test_the_deadline_is_shared_by_the_whole_render(monkeypatch: pytest.MonkeyPatch) -> None:
    """Many evaluations, each far within the deadline, still stop at the render's deadline."""
    clock = FakeClock()
    monkeypatch.setattr("blueprintd.api.cel.time", clock)
    monkeypatch.setattr("blueprintd.render.engine.time", clock)
    square = f"{THIRTY}.all(a, [0, 1, 2, 3, 4].all(b, a + b >= 0))"  # about 600 charges
    overlays = [{"name": f"o{i}", "scope": "nodePool", "when": f"{square} && pool.gpuCount > {i}"} for i in range(64)]
    four_pools = facts(pool("h100", H100, 8), pool("l4", L4, 1), pool("l4x2", L4, 2), pool("h100x4", H100, 4))
    options = RenderOptions(cel_budget=CelBudget(cost=10**9, timeout_seconds=10.0))
    render(compile_blueprint(bp("one", overlays[:1]), RAISED), four_pools, options)  # 4 evaluations: fine
    assert clock.now < 5.0
    with pytest.raises(RenderError, match=r"render deadline of 10s"):
        render(compile_blueprint(bp("many", overlays), RAISED), four_pools, options)  # 256: not


def test_other_blueprints_render_normally_afterwards() -> None:
    bomb = compile_blueprint(bp("bomb", [{"name": "bomb", "when": BOMB}]), RAISED)
    with pytest.raises(RenderError):
        render(bomb, FACTS, RenderOptions(cel_budget=CelBudget(cost=2_000)))
    good = bp(
        "good", [{"name": "gpu", "scope": "nodePool", "when": "pool.gpuCount > 1", "patches": [cm_patch({"b": "2"})]}]
    )
    desired = render(good, FACTS)
    (step,) = desired.steps
    assert step.manifests is not None and step.manifests[0]["data"] == {"a": "1", "b": "2"}
