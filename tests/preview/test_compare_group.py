"""blueprintd.preview: what a version change does to a rendered cluster, and the fleet grouped (pure)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from blueprintd.api.facts import ClusterFacts
from blueprintd.api.load import load_model_file, parse_blueprint
from blueprintd.errors import BlueprintdError
from blueprintd.preview.compare import compare, field_changes
from blueprintd.preview.group import MemberPreview, change_lines, describe_clusters, group
from blueprintd.preview.select import parse_selector
from blueprintd.render import compile_blueprint, render
from blueprintd.render.desired import DesiredState

REPO = Path(__file__).resolve().parents[2]
DOC = yaml.safe_load((REPO / "blueprints" / "gpu-platform" / "blueprint.yaml").read_text())
MIXED = load_model_file(REPO / "examples" / "facts" / "mixed.yaml", ClusterFacts)
L4 = load_model_file(REPO / "examples" / "facts" / "l4-only.yaml", ClusterFacts)


def version_1_1(doc: dict[str, Any]) -> dict[str, Any]:
    """1.1.0: a chart upgrade, a parameter change, a new Queue, a new pool label, one add-on dropped."""
    new = copy.deepcopy(doc)
    new["spec"]["version"] = "1.1.0"
    new["spec"]["parameters"]["timeSlicingReplicas"]["default"] = 8
    addons = {a["name"]: a for a in new["spec"]["addons"]}
    addons["gpu-operator"]["helm"]["version"] = "v25.10.1"
    queues = addons["kai-queues"]["manifests"]
    extra = copy.deepcopy(next(m for m in queues if m["metadata"]["name"] == "batch"))
    extra["metadata"]["name"] = "research"
    queues.append(extra)
    overlays = {o["name"]: o for o in new["spec"]["overlays"]}
    overlays["time-slicing"]["nodeLabels"]["blueprintd.io/sharing"] = "time-slicing"
    return new


def rendered(doc: dict[str, Any], facts: ClusterFacts) -> DesiredState:
    return render(compile_blueprint(parse_blueprint(doc)), facts)


def test_field_changes_walks_both_sides() -> None:
    before = {"a": {"b": 1, "c": [1, 2]}, "gone": True, "list": [1]}
    after = {"a": {"b": 2, "c": [1, 3]}, "new": "x", "list": [1, 2]}
    got = [(c.path, c.before, c.after) for c in field_changes(before, after)]
    assert got == [("a.b", 1, 2), ("a.c[1]", 2, 3), ("gone", True, None), ("list", [1], [1, 2]),
                   ("new", None, "x")]
    assert field_changes(before, copy.deepcopy(before)) == []
    yaml_in_string = field_changes({"data": {"c.yaml": "a: 1\nb: 2\n"}}, {"data": {"c.yaml": "a: 1\nb: 3\n"}})
    assert [(c.path, c.before, c.after) for c in yaml_in_string] == [("data.c.yaml | b", 2, 3)]


def test_same_version_renders_no_change() -> None:
    assert compare(rendered(DOC, MIXED), rendered(copy.deepcopy(DOC), MIXED)).empty


def test_version_change_lists_upgrade_values_objects_labels() -> None:
    changes = compare(rendered(DOC, MIXED), rendered(version_1_1(DOC), MIXED))
    by_addon = {a.addon: a for a in changes.addons}
    op = by_addon["gpu-operator"]
    assert (op.change, op.chart, op.chart_from, op.chart_to) == ("upgraded", "gpu-operator", "v25.10.0", "v25.10.1")
    assert [(c.path, c.before, c.after) for c in op.values] == [
        ("devicePlugin.config.data.ts-l4 | sharing.timeSlicing.resources[0].replicas", 4, 8)]
    queues = by_addon["kai-queues"]
    assert queues.change == "changed"
    assert [(o.target, o.change) for o in queues.objects] == [("Queue research", "added")]
    assert set(by_addon) == {"gpu-operator", "kai-queues"}, "untouched add-ons are not listed"
    labels = {(c.pool, c.label, c.before, c.after) for c in changes.node_labels}
    assert labels == {("l4", "blueprintd.io/sharing", None, "time-slicing"),
                      ("l4", "blueprintd.io/time-slicing-replicas", "4", "8")}, "only the time-sliced pool"
    assert changes.overlays == []


def test_newly_selected_and_unselected_clusters() -> None:
    state = rendered(DOC, L4)
    installed = compare(None, state)
    assert {a.change for a in installed.addons} == {"installed"}
    assert [a.addon for a in installed.addons] == [s.addon for s in state.steps]
    removed = compare(state, None)
    assert {a.change for a in removed.addons} == {"removed"}
    assert {c.after for c in removed.node_labels} == {None}


def test_overlays_that_fire_differently() -> None:
    new = copy.deepcopy(DOC)
    new["spec"]["version"] = "1.1.0"
    for o in new["spec"]["overlays"]:
        if o["name"] == "time-slicing":
            o["when"] = "pool.gpuCount > 4 && !pool.migCapable && !pool.sandbox"  # L4 nodes have 2 GPUs
    changes = compare(rendered(DOC, MIXED), rendered(new, MIXED))
    assert [(o.overlay, o.pool, o.before, o.after) for o in changes.overlays] == [("time-slicing", "l4", True, False)]
    assert any(c.label == "nvidia.com/device-plugin.config" and c.after is None for c in changes.node_labels)


def preview(cluster: str, facts: ClusterFacts, **kw: Any) -> MemberPreview:
    changes = compare(rendered(DOC, facts), rendered(version_1_1(DOC), facts))
    base: dict[str, Any] = {"cluster": cluster, "blueprint": "gpu-platform", "selected_before": True,
                            "selected_after": True, "version_from": "1.0.0", "version_to": "1.1.0",
                            "changes": changes}
    base.update(kw)
    return MemberPreview(**base)


def test_identical_changes_are_grouped_across_clusters() -> None:
    members = [preview(f"l4-inference-{i:02d}", L4) for i in range(12)] + [preview("h100-mixed", MIXED)]
    members.append(MemberPreview(cluster="pinned", blueprint="gpu-platform", selected_before=True,
                                 selected_after=True, version_from="1.0.0", version_to="1.0.0",
                                 why="pinned on the MemberCluster"))
    fleet = group(members)
    assert fleet.exit_code == 1
    lines = {g.change: g.clusters for g in fleet.groups}
    assert len(lines["gpu-operator v25.10.0 → v25.10.1"]) == 13
    assert len(lines["gpu-platform 1.0.0 → 1.1.0"]) == 13
    assert lines["kai-queues: Queue research added"] == sorted([f"l4-inference-{i:02d}" for i in range(12)]
                                                              + ["h100-mixed"])
    assert fleet.unchanged == ["pinned"]
    assert "kai-queues changed" not in lines, "the object line says it"
    assert describe_clusters(lines["gpu-operator v25.10.0 → v25.10.1"], 14).startswith("13 clusters: h100-mixed, ")
    assert describe_clusters(["a", "b"], 2) == "all 2 clusters"
    # 100 clusters stay a handful of lines
    big = group([preview(f"c{i:03d}", L4) for i in range(100)])
    assert len(big.groups) == len(change_lines(big.members[0])) < 20


def test_exit_codes() -> None:
    assert group([]).exit_code == 0
    same = MemberPreview(cluster="a", blueprint="b", selected_before=True, selected_after=True,
                         version_from="1.0.0", version_to="1.0.0")
    assert group([same]).exit_code == 0
    assert group([same, MemberPreview(cluster="x", blueprint="b", error="unreachable")]).exit_code == 2
    newly = MemberPreview(cluster="n", blueprint="b", selected_after=True, version_to="1.0.0")
    assert change_lines(newly)[:2] == ["b: newly selected", "b 1.0.0"]
    gone = MemberPreview(cluster="g", blueprint="b", selected_before=True, version_from="1.0.0")
    assert change_lines(gone) == ["b: no longer selected (its add-ons are removed)"]


@pytest.mark.parametrize(
    ("text", "yes", "no"),
    [
        ("env=prod", {"env": "prod"}, {"env": "dev"}),
        ("env==prod,gpu", {"env": "prod", "gpu": "l4"}, {"env": "prod"}),
        ("gpu in (h100, l4),!sandbox", {"gpu": "l4"}, {"gpu": "l4", "sandbox": "y"}),
        ("gpu notin (h100),env!=dev", {"gpu": "l4"}, {"gpu": "h100"}),
    ],
)
def test_selector_syntax(text: str, yes: dict[str, str], no: dict[str, str]) -> None:
    sel = parse_selector(text)
    assert sel.matches(yes) and not sel.matches(no)


def test_selector_errors_name_the_piece() -> None:
    with pytest.raises(BlueprintdError, match=r"cannot read 'env=~prod'"):
        parse_selector("gpu,env=~prod")
    with pytest.raises(BlueprintdError, match="lists no values"):
        parse_selector("gpu in ()")
