"""Static CEL cost: expensive expressions are refused at validate time, with field path and cost."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from blueprintd.api.blueprint import BlueprintSpec
from blueprintd.api.cel import CLUSTER_FIELDS, POOL_FIELDS, Meter, compile_cel, to_cel
from blueprintd.api.celcost import CLUSTER, MAX_NODES, POOL, CostEstimateError, estimate, variable_shapes
from blueprintd.api.checks import check_spec
from blueprintd.api.facts import ClusterFacts, NodePool
from blueprintd.api.issues import InvalidInput, Issue
from blueprintd.api.limits import DEFAULT_LIMITS, BlueprintLimits
from blueprintd.api.load import load_blueprints, parse_blueprint
from blueprintd.api.params import Parameter
from blueprintd.cli.main import app
from blueprintd.render.activation import cluster_facts, pool_facts

REPO = Path(__file__).resolve().parents[2]
THIRTY = "[" + ",".join(str(i) for i in range(30)) + "]"
# The issue's reproduction: five nested comprehensions over a 30-element list (30^5 steps).
BOMB = f"{THIRTY}.all(a, {THIRTY}.all(b, {THIRTY}.all(c, {THIRTY}.all(d, {THIRTY}.all(e, a+b+c+d+e >= 0)))))"
POOL_VARS = variable_shapes(
    "nodePool", {"replicas": Parameter.model_validate(4), "suffix": Parameter.model_validate("x")}
)


def problems(data: dict[str, Any]) -> list[Issue]:
    with pytest.raises(InvalidInput) as info:
        parse_blueprint(data, source="bp")
    return info.value.issues


def cost_of(text: str) -> int:
    return estimate(text, POOL_VARS)[0]


def test_the_nested_comprehension_bomb_is_refused_with_path_and_cost(small: dict[str, Any]) -> None:
    small["spec"]["overlays"][0]["when"] = BOMB
    (issue,) = problems(small)
    assert issue.field == "spec.overlays[0].when"
    match = re.search(r"Forbidden: estimated CEL cost (\d+) exceeds the limit of (\d+)", issue.message)
    assert match, issue.message
    cost, limit = int(match.group(1)), int(match.group(2))
    assert cost >= 30**5  # every innermost step counted
    assert limit == DEFAULT_LIMITS.cel_cost
    assert "by a factor of" in issue.message and "--cel-cost-limit" in issue.message


def test_validate_cli_refuses_the_bomb_and_accepts_it_under_a_raised_limit(tmp_path: Path) -> None:
    text = (REPO / "tests" / "api" / "data" / "bomb.yaml").read_text()
    target = tmp_path / "bomb.yaml"
    target.write_text(text)
    runner = CliRunner()
    refused = runner.invoke(app, ["validate", str(target)])
    assert refused.exit_code == 1
    line = next(line for line in refused.stdout.splitlines() if "spec.overlays[0].when" in line)
    assert line.startswith(f"{target}:")  # file:line: field: message, like every other problem
    assert "estimated CEL cost" in line
    accepted = runner.invoke(app, ["validate", str(target), "--cel-cost-limit", str(10**12)])
    assert accepted.exit_code == 0, accepted.stdout


def test_templated_values_and_node_labels_are_costed_at_their_own_paths(small: dict[str, Any]) -> None:
    ov = small["spec"]["overlays"][0]
    ov["nodeLabels"] = {"example.com/x": f"${{ string({THIRTY}.map(a, {THIRTY}.map(b, {THIRTY}.map(c, a))).size()) }}"}
    cubic = f"{THIRTY}.all(a, {THIRTY}.all(b, {THIRTY}.all(c, a + b + c >= 0)))"
    ov["patches"][0]["values"] = {"deep": {"list": [f"${{ {cubic} }}"]}}
    fields = {i.field for i in problems(small) if "estimated CEL cost" in i.message}
    assert fields == {"spec.overlays[0].nodeLabels['example.com/x']", "spec.overlays[0].patches[0].values.deep.list[0]"}


def test_the_default_blueprint_is_far_below_the_limit() -> None:
    (bp,) = load_blueprints([REPO / "blueprints" / "gpu-platform"])
    assert check_spec(bp.spec, limits=BlueprintLimits(cel_cost=200)) == []


def test_every_variable_a_blueprint_can_read_has_a_declared_size() -> None:
    assert set(POOL.fields) == POOL_FIELDS
    assert set(CLUSTER.fields) == CLUSTER_FIELDS
    assert POOL.fields["nodes"].size == MAX_NODES and POOL.fields["gpuTotal"].kind == "scalar"


def test_nesting_multiplies_by_the_list_size() -> None:
    one = cost_of(f"{THIRTY}.all(a, a + 1 >= 0)")
    two = cost_of(f"{THIRTY}.all(a, {THIRTY}.all(b, a + b >= 0))")
    assert 25 * one <= two <= 45 * one


def test_fact_lists_are_bounded_by_the_declared_schema_bounds() -> None:
    nodes = cost_of("pool.nodes.exists(n, n.startsWith('dgx'))")
    assert MAX_NODES <= nodes <= DEFAULT_LIMITS.cel_cost  # one pass over the nodes is fine
    nested = cost_of("cluster.pools.exists(p, p.nodes.exists(n, n.startsWith('dgx')))")
    assert nested > DEFAULT_LIMITS.cel_cost  # every node of every pool is not
    assert cost_of("pool.migCapable && !pool.sandbox") < 10


def test_string_doubling_grows_the_estimate_exponentially() -> None:
    doubling = '["ab"]' + ".map(x, x + x)" * 24
    assert cost_of(doubling) > DEFAULT_LIMITS.cel_cost
    assert cost_of('["ab"]' + ".map(x, x + x)" * 3) < 100


def test_regex_cost_grows_with_text_and_pattern() -> None:
    short = cost_of("pool.name.matches('^a')")
    long_pattern = cost_of("pool.name.matches('" + "a?" * 200 + "')")
    assert long_pattern > 10 * short


def test_string_repetition_is_refused_as_never_working(small: dict[str, Any]) -> None:
    with pytest.raises(CostEstimateError):
        estimate("'ab' * 1000000", POOL_VARS)
    small["spec"]["overlays"][0]["when"] = "size('ab' * 1000000) > 1"
    (issue,) = problems(small)
    assert issue.field == "spec.overlays[0].when"
    assert "needs numbers" in issue.message


def test_raising_the_limit_accepts_what_the_default_refuses(small: dict[str, Any]) -> None:
    small["spec"]["overlays"][0]["when"] = f"{THIRTY}.all(a, {THIRTY}.all(b, {THIRTY}.all(c, a+b+c >= 0)))"
    spec = BlueprintSpec.model_validate(small["spec"])
    assert [i.field for i in check_spec(spec)] == ["spec.overlays[0].when"]
    assert check_spec(spec, limits=BlueprintLimits(cel_cost=10**7)) == []


@pytest.mark.parametrize(
    "text",
    [
        "pool.migCapable && !pool.sandbox",
        "pool.nodes.exists(n, n.startsWith('h100'))",
        "cluster.pools.filter(p, p.gpuCount > 0).map(p, p.name + '-x').size() > 1",
        "cluster.pools.all(p, p.nodes.all(n, n.size() > 0))",
        "pool.labels.exists(k, k.matches('^nvidia'))",
        "'h100-0' in pool.nodes || params.suffix + pool.name == 'x'",
        f"{THIRTY}.map(a, {THIRTY}.filter(b, b > a)).size() == 30",
        "has(pool.labels.foo) ? 'y' : string(params.replicas)",
        "cluster.pools.all(p, size(pool.nodes) > 0 && ''.matches('" + "x" * 600 + "') == false)",
    ],
)
def test_runtime_cost_never_exceeds_the_estimate(text: str) -> None:
    """The meter charges a subset of what the estimate counts, so an expression that passed
    validation never runs out of the (equal) runtime budget on facts within the bounds."""
    h100 = NodePool(
        name="h100",
        nodes=[f"h100-{i}" for i in range(40)],
        gpu_product="NVIDIA-H100-80GB-HBM3",
        gpu_count=8,
        mig_capable=True,
        labels={"nvidia.com/a": "1"},
    )
    l4 = NodePool(name="l4", nodes=["l4-0"], gpu_product="NVIDIA-L4", gpu_count=1)
    pools = [pool_facts(h100), pool_facts(l4)]
    activation = {
        "cluster": to_cel(cluster_facts(ClusterFacts(cluster="c"), pools)),
        "pool": to_cel(pools[0]),
        "params": to_cel({"replicas": 4, "suffix": "x"}),
    }
    meter = Meter(10**9)
    compile_cel(text, {"cluster": None, "pool": None, "params": None}).evaluate(activation, meter)
    assert meter.used <= cost_of(text)


def test_declared_parameters_are_sized_by_their_declaration() -> None:
    """A member may override a declared string with any text; an enum bounds it; numbers are scalars."""
    declared = {
        "suffix": Parameter(type="string", default="x"),
        "mode": Parameter(type="string", default="a", enum=["a", "bb"]),
        "replicas": Parameter(type="integer", default=4, minimum=1, maximum=64),
    }
    shapes = variable_shapes("nodePool", declared)
    scan = "pool.name.matches(params.{})"
    free_text = estimate(scan.format("suffix"), shapes)[0]
    enumerated = estimate(scan.format("mode"), shapes)[0]
    # The free-text pattern is costed at its worst case (a long override), the enum at its longest value.
    assert free_text > 50 * enumerated
    assert estimate("params.replicas + 1 > 2", shapes)[0] < 10
