"""Hostile but structurally valid Blueprints: refused at validate, or rendered within the budget.

Hypothesis writes Blueprints the way an attacker with merge rights would: nested
comprehensions over literal lists and fact lists, string doubling, regex matches over long
strings and patterns, deep nesting, and huge or deep Helm values, placed in overlay
conditions, templated patch values and node labels. For each one:

* validation (default limits) either refuses it with a clear issue, or accepts it; an
  accepted Blueprint never runs out of the runtime cost budget (the static estimate is an
  upper bound of what the meter charges), and its render finishes by the deadline;
* a refused Blueprint, compiled anyway with the CEL cost limit raised (an operator that
  trusts its authors), still finishes its render by the deadline: it renders or fails with
  a budget error.

The example count is bounded so that the test takes well under half a minute in ``make test``.
"""

from __future__ import annotations

import time
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from render_helpers import H100, L4, facts, pool

from blueprintd.api.blueprint import Blueprint
from blueprintd.api.cel import CelBudget
from blueprintd.api.issues import InvalidInput
from blueprintd.api.limits import BlueprintLimits
from blueprintd.api.load import parse_blueprint
from blueprintd.errors import RenderError
from blueprintd.render import RenderOptions, compile_blueprint, render

DEADLINE = 0.5
# How far past the deadline a render may finish: the deadline is checked at every metered
# operation, so what remains is work between two checks (copying values, applying patches).
SLACK = 10.0
FACTS = facts(pool("h100", H100, 8, nodes=[f"h100-{i}" for i in range(60)]), pool("l4", L4, 1))
RAISED = BlueprintLimits(cel_cost=10**15)

# Problems a hostile Blueprint may be refused for: limits, and the ordinary CEL checks.
REFUSALS = (
    "estimated CEL cost",
    "Too long",
    "Too deep",
    "Too many",
    "needs numbers",
    "nested too deeply",
    "CEL syntax error",
    "String should have at most",
    "invalid templated label",
    "label value",
)

int_lists = st.integers(1, 40).map(lambda n: "[" + ",".join(str(i) for i in range(n)) + "]")
str_lists = st.integers(1, 40).map(lambda n: "[" + ",".join(f"'s{i}'" for i in range(n)) + "]")
fact_lists = st.sampled_from(
    ["cluster.pools", "pool.nodes", "pool.migProfiles", "cluster.pools.map(p, p.name)", "pool.labels"]
)
ranges = st.one_of(int_lists, str_lists, fact_lists)


@st.composite
def comprehensions(draw: st.DrawFn) -> str:
    depth = draw(st.integers(1, 5))
    names = ["a", "b", "c", "d", "e"][:depth]
    expr = " + ".join(f"size(string({v}))" for v in names) + " >= 0"
    for v in reversed(names):
        macro = draw(st.sampled_from(["all", "exists", "exists_one"]))
        expr = f"{draw(ranges)}.{macro}({v}, {expr})"
    return expr


doubling = st.integers(1, 40).map(lambda n: "size(['ab']" + ".map(x, x + x)" * n + "[0]) > 0")
regexes = st.tuples(st.integers(1, 3000), st.integers(1, 400)).map(
    lambda t: "'" + "a" * t[0] + "b'.matches('^" + "(a|aa)*" * t[1] + "c')"
)
concatenation = st.integers(1, 200).map(lambda n: "size(" + " + ".join(["pool.name"] * n) + ") > 0")
deep = st.integers(1, 400).map(lambda n: "(" * n + "1" + " + 1)" * n + " > 0")
map_products = st.integers(1, 4).map(
    lambda d: "size(" + "".join(f"pool.nodes.map(v{i}, " for i in range(d)) + "1" + ")" * d + ") > 0"
)
expressions = st.one_of(comprehensions(), doubling, regexes, concatenation, deep, map_products)


@st.composite
def huge_values(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["none", "string", "list", "deep"]))
    if kind == "string":
        return {"blob": "v" * draw(st.integers(1, 400_000))}
    if kind == "list":
        return {"items": ["item"] * draw(st.integers(1, 150_000))}
    if kind == "deep":
        node: dict[str, Any] = {"leaf": 1}
        for _ in range(draw(st.integers(1, 120))):
            node = {"n": node}
        return {"deep": node}
    return {}


def hostile(expr: str, place: str, values: dict[str, Any]) -> dict[str, Any]:
    overlay: dict[str, Any] = {"name": "hostile", "scope": "nodePool", "when": "pool.gpuCount > 0"}
    if place == "when":
        overlay["when"] = expr
        overlay["patches"] = [{"addon": "op", "values": {"hit": True}}]
    elif place == "value":
        overlay["patches"] = [{"addon": "op", "values": {"hit": "${ string(" + expr + ") }"}}]
    else:
        overlay["nodeLabels"] = {"example.com/hit": "${ string(" + expr + ") }"}
    return {
        "apiVersion": "blueprintd.io/v1alpha1",
        "kind": "Blueprint",
        "metadata": {"name": "hostile"},
        "spec": {
            "version": "1.0.0",
            "addons": [
                {
                    "name": "op",
                    "namespace": "ops",
                    "helm": {
                        "repo": "https://charts.example.com/stable",
                        "chart": "op",
                        "version": "1.0.0",
                        "values": {"replicas": 1, **values},
                    },
                }
            ],
            "overlays": [overlay],
        },
    }


def _kind(outcome: str) -> str:
    if outcome == "ok":
        return "rendered"
    return "deadline" if "deadline" in outcome else "cost budget" if "cost budget" in outcome else "render error"


def timed_render(compiled: Any) -> tuple[str, float]:
    """Render under the test deadline: ``("ok" | error text, seconds)``."""
    started = time.monotonic()
    try:
        render(compiled, FACTS, RenderOptions(cel_budget=CelBudget(timeout_seconds=DEADLINE)))
        outcome = "ok"
    except RenderError as exc:
        outcome = str(exc)
    return outcome, time.monotonic() - started


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(expressions, st.sampled_from(["when", "value", "label"]), huge_values())
def test_hostile_blueprints_are_refused_or_rendered_within_the_budget(
    expr: str, place: str, values: dict[str, Any]
) -> None:
    data = hostile(expr, place, values)
    try:
        accepted = parse_blueprint(data, source="hostile.yaml")
    except InvalidInput as exc:
        event("refused at validate: " + next(w for w in REFUSALS if w in exc.issues[0].message))
        for issue in exc.issues:
            assert any(word in issue.message for word in REFUSALS), str(issue)
        # An operator that raised the CEL cost limit compiles it anyway: the render still
        # ends by the deadline, rendered or failed, never hung.
        try:
            compiled = compile_blueprint(Blueprint.model_validate(data), RAISED)
        except InvalidInput:
            return  # refused for a size limit or an invalid expression: nothing to render
        except Exception as other:  # pydantic refused the structure (e.g. `when` over 4096)
            assert "validation error" in str(other)
            return
        outcome, seconds = timed_render(compiled)
        event("limit raised: " + _kind(outcome))
        assert seconds < DEADLINE + SLACK, (outcome, seconds)
        return
    outcome, seconds = timed_render(accepted)
    event("accepted: " + _kind(outcome))
    assert "exceeded its cost budget" not in outcome, outcome  # the estimate bounds the meter
    assert seconds < DEADLINE + SLACK, (outcome, seconds)
