"""The per-member pipeline's pure parts: which version a member gets and why, and its rollout view."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from blueprintd.api.blueprint import Blueprint
from blueprintd.api.membercluster import MemberCluster
from blueprintd.operator.pipeline import (
    ROLLBACK_ANNOTATION,
    assigned_version,
    cluster_view,
    inventory_for,
    restore_request,
    selects,
    target_version,
)

REPO = Path(__file__).resolve().parents[2]


def bp(version: str = "1.1.0", assignments: dict[str, str] | None = None, **annotations: str) -> Blueprint:
    doc = yaml.safe_load((REPO / "blueprints" / "gpu-platform" / "blueprint.yaml").read_text())
    doc["spec"]["version"] = version
    doc["metadata"]["annotations"] = annotations
    if assignments is not None:
        doc["status"] = {"rollout": {"targetVersion": version, "assignments": assignments}}
    return Blueprint.model_validate(doc)


def mc(
    name: str = "alpha", pins: dict[str, str] | None = None, status: dict[str, Any] | None = None, **labels: str
) -> MemberCluster:
    return MemberCluster.model_validate(
        {
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "kubeconfigSecretRef": {"name": f"{name}-kubeconfig"},
                "versionPins": [{"blueprint": b, "version": v} for b, v in (pins or {}).items()],
            },
            "status": status,
        }
    )


def test_a_pin_wins_over_the_rollout() -> None:
    got = assigned_version(bp(assignments={"alpha": "1.1.0"}), mc(pins={"gpu-platform": "1.0.0"}))
    assert (got.version, got.source, got.reason) == ("1.0.0", "pin", "pinned on the MemberCluster")


def test_the_rollout_assigns_otherwise() -> None:
    got = assigned_version(bp(assignments={"alpha": "1.1.0"}), mc())
    assert (got.version, got.source, got.planned) == ("1.1.0", "rollout", "1.1.0")


def test_no_assignment_yet_plans_the_target_but_applies_nothing() -> None:
    got = assigned_version(bp(assignments={"beta": "1.1.0"}), mc())
    assert got.version is None and got.source == "none" and got.planned == "1.1.0"
    assert "not assigned" in got.reason


def test_rollback_annotation_targets_the_earlier_version_only_for_its_spec_version() -> None:
    assert target_version(bp("1.2.0", **{ROLLBACK_ANNOTATION: "1.0.0@1.2.0"})) == "1.0.0"
    assert target_version(bp("1.3.0", **{ROLLBACK_ANNOTATION: "1.0.0@1.2.0"})) == "1.3.0"


def test_selection_follows_the_cluster_selector() -> None:
    assert selects(bp(), mc(env="test"))
    assert not selects(bp(), mc(**{"blueprintd.io/gpu-platform": "disabled"}))


def test_cluster_view_and_inventory_come_from_the_typed_status() -> None:
    status = {
        "reachable": True,
        "appliedRevisions": [{"blueprint": "gpu-platform", "version": "1.0.0"}],
        "blueprints": [
            {
                "blueprint": "gpu-platform",
                "version": "1.1.0",
                "state": "Failed",
                "failedAddon": "gpu-operator",
                "message": "boom",
                "since": "2026-03-01T12:00:00Z",
                "inventory": {"blueprint": "gpu-platform", "nodeLabelKeys": ["a"]},
            }
        ],
    }
    member = mc(status=status, env="test")
    view = cluster_view("gpu-platform", member)
    assert (view.applied_version, view.state, view.state_version, view.failed_addon, view.reachable) == (
        "1.0.0",
        "Failed",
        "1.1.0",
        "gpu-operator",
        True,
    )
    assert inventory_for(member, "gpu-platform").node_label_keys == ["a"]
    assert inventory_for(member, "other").blueprint == "other"
    fresh = cluster_view("gpu-platform", mc())
    assert (fresh.state, fresh.reachable, fresh.applied_version) == ("Pending", False, None)


def test_a_restore_request_is_pending_until_recorded() -> None:
    member = mc()
    member.metadata.annotations["blueprintd.io/restore-drift"] = "t1"
    assert restore_request(member) == ("t1", True)
    member = mc(status={"driftRestored": "t1"})
    member.metadata.annotations["blueprintd.io/restore-drift"] = "t1"
    assert restore_request(member) == ("t1", False)
