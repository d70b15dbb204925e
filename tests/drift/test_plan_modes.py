"""The periodic reconcile leaves notify/block drift alone, but still applies Blueprint changes."""

from __future__ import annotations

import copy
from typing import Any

from blueprintd.plan.inventory import Inventory, inventory_of, object_key
from blueprintd.plan.live import LiveState, ReleaseState
from blueprintd.plan.planner import plan_cluster
from blueprintd.render.desired import DesiredState

CM = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": "ops"}, "data": {"a": "1"}}


def desired(mode: str, value: str = "1", gpu_sharing: bool = True) -> DesiredState:
    cm = copy.deepcopy(CM)
    cm["data"]["a"] = value
    return DesiredState.model_validate({
        "blueprint": "bp", "version": "1.0.0", "revision": "sha256:x", "cluster": "c1",
        "steps": [
            {"addon": "kai", "namespace": "kai", "drift": {"mode": mode},
             "helm": {"releaseName": "kai", "namespace": "kai", "repo": "http://m", "chart": "kai",
                      "version": "1.0.0", "values": {"gpuSharing": gpu_sharing}}},
            {"addon": "cfg", "namespace": "ops", "manifests": [cm], "drift": {"mode": mode}},
        ],
        "nodeLabels": [{"pool": "p", "nodes": ["n1"], "labels": {"k": "v"}}],
        "nodeLabelDrift": mode,
    })


def drifted() -> LiveState:
    live = LiveState()
    live.releases[("kai", "kai")] = ReleaseState("kai", "kai", "kai", "1.0.0", "deployed", 2, {"gpuSharing": False},
                                                 "Upgrade complete")
    cm: dict[str, Any] = copy.deepcopy(CM)
    cm["data"]["a"] = "changed"
    live.objects[object_key(CM)] = cm
    live.node_labels = {"n1": {"k": "other"}}
    return live


def test_notify_and_block_drift_is_held_while_the_blueprint_is_unchanged() -> None:
    for mode in ("notify", "block"):
        state = desired(mode)
        plan = plan_cluster(state, drifted(), inventory_of(state))
        assert plan.empty, plan.actions()
        assert sorted(a.kind for a in plan.held) == ["apply", "helm-upgrade", "label-nodes"]


def test_remediate_drift_is_applied() -> None:
    state = desired("remediate")
    plan = plan_cluster(state, drifted(), inventory_of(state))
    assert sorted(a.kind for a in plan.actions()) == ["apply", "helm-upgrade", "label-nodes"] and not plan.held


def test_a_blueprint_change_is_applied_in_every_mode() -> None:
    old = desired("notify")
    new = desired("notify", value="2", gpu_sharing=False)
    plan = plan_cluster(new, drifted(), inventory_of(old))
    assert sorted(a.kind for a in plan.actions()) == ["apply"], "values already match the new gpuSharing"
    assert [a.kind for a in plan.held] == ["label-nodes"]


def test_deleted_objects_and_releases_stay_deleted_under_notify_until_a_restore() -> None:
    state = desired("notify")
    live = drifted()
    live.objects[object_key(CM)] = None
    live.releases[("kai", "kai")] = None
    plan = plan_cluster(state, live, inventory_of(state))
    assert plan.empty, plan.actions()
    assert sorted(a.kind for a in plan.held) == ["apply", "helm-install", "label-nodes"]
    restored = plan_cluster(state, live, inventory_of(state), restore_drift=True)
    assert sorted(a.kind for a in restored.actions()) == ["apply", "helm-install", "label-nodes"]
    assert not restored.held


def test_a_first_install_is_never_held() -> None:
    state = desired("block")
    live = LiveState()
    live.node_labels = {"n1": {}}
    plan = plan_cluster(state, live, Inventory(blueprint="bp"))
    assert sorted(a.kind for a in plan.actions()) == ["apply", "helm-install", "label-nodes"]
    assert not plan.held


def test_node_labels_follow_the_blueprint_mode_not_the_add_ons() -> None:
    state = desired("notify").model_copy(update={"node_label_drift": "remediate"})
    plan = plan_cluster(state, drifted(), inventory_of(state))
    assert [a.kind for a in plan.actions()] == ["label-nodes"]


def test_a_restore_keeps_the_values_of_ignored_fields() -> None:
    deploy = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "ops"},
              "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "c", "image": "app:1"}]}}}}
    state = DesiredState.model_validate({
        "blueprint": "bp", "version": "1.0.0", "revision": "sha256:x", "cluster": "c1",
        "steps": [{"addon": "web", "namespace": "ops", "manifests": [deploy], "drift": {
            "mode": "remediate", "ignore": [{"kind": "Deployment", "paths": ["/spec/replicas"]}]}}],
    })
    live = LiveState()
    scaled = copy.deepcopy(deploy)
    scaled["spec"]["replicas"] = 7
    scaled["spec"]["template"]["spec"]["containers"][0]["image"] = "evil:1"
    live.objects[object_key(deploy)] = scaled
    [action] = plan_cluster(state, live, inventory_of(state)).actions()
    assert action.object is not None
    assert action.object["spec"]["replicas"] == 7, "the autoscaler's value is applied back as it is"
    assert action.object["spec"]["template"]["spec"]["containers"][0]["image"] == "app:1"
    live.objects[object_key(deploy)] = None  # on creation the Blueprint's value is used
    [create] = plan_cluster(state, live, inventory_of(state)).actions()
    assert create.object is not None and create.object["spec"]["replicas"] == 1
