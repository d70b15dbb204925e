"""Planning is pure: DesiredState + live state + inventory → the writes a reconcile must make."""

from __future__ import annotations

import copy
from typing import Any

from blueprintd.plan.compare import diff_owned
from blueprintd.plan.inventory import Inventory, inventory_of, object_key
from blueprintd.plan.live import LiveState, ReleaseState
from blueprintd.plan.planner import apply_body, desired_objects, plan_cluster
from blueprintd.render.desired import DesiredState

CM = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": "ops"},
      "data": {"mode": "mig"}}
DEPLOY = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "ops"},
          "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "c", "image": "nginx:1"}]}}}}


def desired(**extra: Any) -> DesiredState:
    data: dict[str, Any] = {
        "blueprint": "bp", "version": "1.0.0", "revision": "sha256:x", "cluster": "c1",
        "steps": [
            {"addon": "kai", "namespace": "kai-scheduler",
             "helm": {"releaseName": "kai", "namespace": "kai-scheduler", "repo": "http://mirror", "chart": "kai",
                      "version": "1.0.0", "values": {"global": {"gpuSharing": True}}}},
            {"addon": "settings", "namespace": "ops", "dependsOn": ["kai"], "manifests": [CM, DEPLOY],
             "drift": {"mode": "remediate", "ignore": [{"kind": "Deployment", "paths": ["spec.replicas"]}]}},
        ],
        "nodeLabels": [{"pool": "h100", "nodes": ["n1"], "labels": {"nvidia.com/mig.config": "all-1g.10gb"}}],
    }
    data.update(extra)
    return DesiredState.model_validate(data)


def converged_live(state: DesiredState) -> LiveState:
    live = LiveState()
    live.releases[("kai-scheduler", "kai")] = ReleaseState("kai", "kai-scheduler", "kai", "1.0.0", "deployed", 1,
                                                           {"global": {"gpuSharing": True}})
    for obj in desired_objects(state, state.step("settings")):
        server = {**obj, "metadata": {**obj["metadata"], "uid": "u", "resourceVersion": "7",
                                      "managedFields": [{"manager": "blueprintd"}]}, "status": {"ready": True}}
        live.objects[object_key(obj)] = server
    live.node_labels = {"n1": {"nvidia.com/mig.config": "all-1g.10gb", "kubernetes.io/os": "linux"},
                        "n2": {"kubernetes.io/os": "linux"}}
    return live


def test_a_converged_cluster_plans_nothing() -> None:
    state = desired()
    plan = plan_cluster(state, converged_live(state), inventory_of(state))
    assert plan.empty, plan.actions()


def test_first_install_plans_every_step_in_order_and_labels_nodes() -> None:
    state = desired()
    live = LiveState(node_labels={"n1": {}})
    plan = plan_cluster(state, live, Inventory(blueprint="bp"))
    assert [(s.addon, [a.kind for a in s.actions]) for s in plan.steps] == [
        ("kai", ["helm-install"]), ("settings", ["apply", "apply"])]
    assert [(a.target, a.labels) for a in plan.node_labels] == [("Node n1", {"nvidia.com/mig.config": "all-1g.10gb"})]


def test_changed_values_chart_version_or_failed_release_upgrade() -> None:
    state = desired()
    for release, reason in [
        (ReleaseState("kai", "kai-scheduler", "kai", "1.0.0", "deployed", 3, {"global": {"gpuSharing": False}}),
         "values differ at global.gpuSharing"),
        (ReleaseState("kai", "kai-scheduler", "kai", "0.9.0", "deployed", 3, {"global": {"gpuSharing": True}}),
         "chart kai 0.9.0 -> kai 1.0.0"),
        (ReleaseState("kai", "kai-scheduler", "kai", "1.0.0", "failed", 3, {"global": {"gpuSharing": True}}),
         "release is failed"),
        (ReleaseState("kai", "kai-scheduler", "kai", "1.0.0", "deployed", 3,
                      {"global": {"gpuSharing": True}, "extra": 1}), "values differ at extra"),
    ]:
        live = converged_live(state)
        live.releases[("kai-scheduler", "kai")] = release
        actions = plan_cluster(state, live, inventory_of(state)).actions()
        assert [(a.kind, a.reason) for a in actions] == [("helm-upgrade", reason)]


def test_only_owned_fields_count_and_ignored_paths_are_skipped() -> None:
    state = desired()
    live = converged_live(state)
    dep = live.objects[object_key(DEPLOY)]
    assert dep is not None
    dep["spec"] = {**dep["spec"], "replicas": 5, "strategy": {"type": "RollingUpdate"}}  # autoscaler + defaults
    assert plan_cluster(state, live, inventory_of(state)).empty
    dep["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:2"
    actions = plan_cluster(state, live, inventory_of(state)).actions()
    assert [(a.kind, a.reason) for a in actions] == [
        ("apply", "fields differ: spec.template.spec.containers[0].image")]


def test_removed_objects_releases_and_labels_are_pruned_in_reverse_order() -> None:
    old = desired()
    new = desired(steps=[old.steps[0].model_dump(by_alias=True)], nodeLabels=[])
    live = converged_live(old)
    plan = plan_cluster(new, live, inventory_of(old))
    assert [(a.kind, a.target) for a in plan.prune] == [
        ("delete-object", object_key(DEPLOY)), ("delete-object", object_key(CM))]
    assert [(a.target, a.labels) for a in plan.node_labels] == [("Node n1", {"nvidia.com/mig.config": None})]
    gone = desired(steps=[], nodeLabels=[])
    kinds = [a.kind for a in plan_cluster(gone, live, inventory_of(old)).prune]
    assert kinds == ["delete-object", "delete-object", "helm-uninstall"]


def test_labels_blueprintd_never_set_are_left_alone() -> None:
    state = desired(nodeLabels=[])
    live = converged_live(desired())
    live.node_labels["n2"]["nvidia.com/mig.config"] = "set-by-someone-else"
    plan = plan_cluster(state, live, Inventory(blueprint="bp"))
    assert plan.node_labels == []


def test_owned_field_comparison_treats_numbers_and_strings_alike() -> None:
    assert diff_owned({"port": 9400, "x": {}}, {"port": "9400"}) == []
    assert [d.path for d in diff_owned({"a": [1, 2]}, {"a": [1]})] == ["a"]
    assert [d.path for d in diff_owned({"flag": True}, {"flag": "true"})] == ["flag"]


def test_zero_values_the_server_omits_are_not_differences() -> None:
    desired = {"spec": {"containers": [{"name": "c", "env": [{"name": "A", "value": ""}]}],
                        "hostNetwork": False, "priority": 0}}
    live = {"spec": {"containers": [{"name": "c", "env": [{"name": "A"}]}]}}
    assert diff_owned(desired, live) == []
    # ... but a zero value the live object spells differently is one
    assert [d.path for d in diff_owned({"spec": {"hostNetwork": False}}, {"spec": {"hostNetwork": True}})] == [
        "spec.hostNetwork"
    ]


def test_quantities_the_server_canonicalises_are_equal() -> None:
    desired = {"memory": "4096Mi", "cpu": "0.5", "gpus": 2}
    assert diff_owned(desired, {"memory": "4Gi", "cpu": "500m", "gpus": "2"}) == []
    assert [d.path for d in diff_owned({"memory": "4096Mi"}, {"memory": "8Gi"})] == ["memory"]
    assert [d.path for d in diff_owned({"tag": "1k"}, {"tag": "v1000"})] == ["tag"]


def test_a_null_in_a_manifest_is_not_set_never_compared_nor_sent() -> None:
    """``revisionHistoryLimit: null`` in a manifest: the server stores its default (10); that
    is no difference, and an apply never carries the null (a typed schema refuses it)."""
    dep = copy.deepcopy(DEPLOY)
    dep["spec"]["revisionHistoryLimit"] = None
    dep["spec"]["template"]["spec"]["containers"][0]["args"] = None
    state = desired(steps=[{"addon": "settings", "namespace": "ops", "manifests": [CM, dep]}])
    live = LiveState(node_labels={})
    [cm_apply, dep_apply] = plan_cluster(state, live, Inventory(blueprint="bp")).actions()
    assert dep_apply.object is not None
    assert "revisionHistoryLimit" not in dep_apply.object["spec"]
    assert "args" not in dep_apply.object["spec"]["template"]["spec"]["containers"][0]
    server = copy.deepcopy(dep_apply.object)
    server["spec"]["revisionHistoryLimit"] = 10
    live.objects[object_key(dep)] = server
    live.objects[object_key(CM)] = cm_apply.object
    assert plan_cluster(state, live, inventory_of(state)).empty
    assert diff_owned({"a": None, "b": {"c": None}}, {"a": False, "b": {"c": 10}}) == []


def test_a_live_null_an_ignore_rule_keeps_is_not_sent_either() -> None:
    """Nulls leave a manifest where it enters the plan; the live values an ignore rule keeps
    come from the server, which writes ``creationTimestamp: null`` into pod templates."""
    dep = copy.deepcopy(DEPLOY)
    dep["spec"]["template"]["metadata"] = {"labels": {"app": "web"}}
    ignore = [{"kind": "Deployment", "paths": ["spec.template.metadata"]}]
    state = desired(steps=[{"addon": "settings", "namespace": "ops", "manifests": [dep],
                            "drift": {"mode": "remediate", "ignore": ignore}}])
    step = state.step("settings")
    [obj] = desired_objects(state, step)
    live = copy.deepcopy(obj)
    live["spec"]["template"]["metadata"] = {"creationTimestamp": None, "labels": {"app": "web", "pod": "x"}}
    live["spec"]["replicas"] = 5
    body = apply_body(step, obj, live)
    assert body["spec"]["template"]["metadata"] == {"labels": {"app": "web", "pod": "x"}}
    assert body["spec"]["replicas"] == 2
    assert apply_body(step, obj, None)["spec"]["template"]["metadata"] == {"labels": {"app": "web"}}


def test_every_applied_manifest_carries_the_identity_labels_and_a_mode_change_relabels() -> None:
    state = desired()
    live = converged_live(state)
    for key in (object_key(CM), object_key(DEPLOY)):
        labels = (live.objects[key] or {})["metadata"]["labels"]
        assert labels["blueprintd.io/blueprint"] == "bp" and labels["blueprintd.io/drift-mode"] == "remediate"
    # The same content under drift mode block: the labels the block policy selects must follow,
    # although block holds back drift — a Blueprint change is applied in every mode.
    blocked = desired()
    blocked.step("settings").drift.mode = "block"
    actions = plan_cluster(blocked, live, inventory_of(state)).actions()
    assert [(a.kind, a.reason) for a in actions] == [
        ("apply", "fields differ: metadata.labels.blueprintd.io/drift-mode")] * 2
    assert all((a.object or {})["metadata"]["labels"]["blueprintd.io/drift-mode"] == "block" for a in actions)


def test_every_action_names_its_target_with_an_object_ref() -> None:
    """The adapters act on ``Action.ref``; ``target`` is display text and is never parsed back."""
    from blueprintd.api.ref import ObjectRef

    old = desired()
    install = plan_cluster(old, LiveState(node_labels={"n1": {}}), Inventory(blueprint="bp"))
    gone = plan_cluster(desired(steps=[], nodeLabels=[]), converged_live(old), inventory_of(old))
    refs = [a.ref for a in install.actions() + gone.actions()]
    assert refs == [
        ObjectRef.release("kai-scheduler", "kai"),
        ObjectRef.of(CM),
        ObjectRef.of(DEPLOY),
        ObjectRef.node("n1"),
        ObjectRef.node("n1"),  # the label blueprintd set is removed
        ObjectRef.of(DEPLOY),
        ObjectRef.of(CM),
        ObjectRef.release("kai-scheduler", "kai"),
    ]
