"""The periodic reconcile leaves notify/block drift alone, but still applies Blueprint changes."""

from __future__ import annotations

import copy
from typing import Any

from blueprintd.plan.inventory import inventory_of, object_key
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


def test_deleted_objects_and_releases_are_recreated_in_every_mode() -> None:
    state = desired("notify")
    live = drifted()
    live.objects[object_key(CM)] = None
    live.releases[("kai", "kai")] = None
    plan = plan_cluster(state, live, inventory_of(state))
    assert sorted(a.kind for a in plan.actions()) == ["apply", "helm-install"]
