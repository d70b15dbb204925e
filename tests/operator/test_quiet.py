"""When a member resync may skip its reconcile (operator/quiet.py): one test per rule, and
the inputs a platform team changes (labels, pins, a rollout's assignment, a new revision)
each make the next resync a full one."""

from __future__ import annotations

from typing import Any

import pytest

from blueprintd.api.blueprint import Blueprint
from blueprintd.api.membercluster import RESTORE_ANNOTATION, MemberCluster, MemberClusterStatus
from blueprintd.operator.quiet import QuietMark, converged, decide, inputs_key

FULL = 300.0


def mc(labels: dict[str, str] | None = None, **spec: Any) -> MemberCluster:
    return MemberCluster.model_validate(
        {
            "apiVersion": "blueprintd.io/v1alpha1",
            "kind": "MemberCluster",
            "metadata": {"name": "m1", "namespace": "ns", "generation": 1, "labels": labels or {"env": "prod"}},
            "spec": {"kubeconfigSecretRef": {"name": "m1-kubeconfig"}, **spec},
        }
    )


def bp(version: str = "1.0.0", revision: str = "bp-abc", assigned: str | None = "1.0.0", gen: int = 1) -> Blueprint:
    doc: dict[str, Any] = {
        "apiVersion": "blueprintd.io/v1alpha1",
        "kind": "Blueprint",
        "metadata": {"name": "platform", "namespace": "ns", "generation": gen},
        "spec": {
            "version": version,
            "clusterSelector": {"matchLabels": {"env": "prod"}},
            "addons": [{"name": "app", "namespace": "app", "manifests": []}],
        },
        "status": {"revision": revision},
    }
    if assigned:
        doc["status"]["rollout"] = {"targetVersion": version, "assignments": {"m1": assigned}}
    return Blueprint.model_validate(doc)


def status(**over: Any) -> MemberClusterStatus:
    base: dict[str, Any] = {
        "reachable": True,
        "blueprints": [{"blueprint": "platform", "version": "1.0.0", "state": "Ready"}],
    }
    return MemberClusterStatus.model_validate({**base, **over})


KEY = inputs_key(mc(), [bp()])
MARK = QuietMark(KEY, changes=7, at=1000.0)


def test_rule_6_a_converged_member_that_did_not_change_is_skipped() -> None:
    assert decide(MARK, KEY, 7, 1010.0, FULL) == (True, "nothing changed")


def test_rule_1_without_a_mark_the_reconcile_is_full() -> None:
    assert decide(None, KEY, 7, 1010.0, FULL)[0] is False


def test_rule_2_changed_inputs_make_it_full() -> None:
    assert decide(MARK, inputs_key(mc({"env": "prod", "gpu": "h100"}), [bp()]), 7, 1010.0, FULL) == (
        False,
        "the member's or a Blueprint's inputs changed",
    )


def test_rule_3_a_member_whose_watches_are_not_synced_is_reconciled_in_full() -> None:
    assert decide(MARK, KEY, None, 1010.0, FULL)[1] == "the member's watches are not all synced"
    unwatched = QuietMark(KEY, changes=None, at=1000.0)  # the monitor started after it began
    assert decide(unwatched, KEY, 0, 1010.0, FULL)[0] is False


def test_rule_4_any_change_seen_by_the_watches_makes_it_full() -> None:
    assert decide(MARK, KEY, 8, 1010.0, FULL) == (False, "the member changed since the last full reconcile")


def test_rule_5_a_full_resync_comes_at_least_every_full_resync_seconds() -> None:
    assert decide(MARK, KEY, 7, 1000.0 + FULL - 1, FULL)[0] is True
    assert decide(MARK, KEY, 7, 1000.0 + FULL, FULL) == (False, "full resync due")


@pytest.mark.parametrize(
    ("what", "member", "blueprints"),
    [
        ("a label", mc({"env": "staging"}), [bp()]),
        ("a version pin (a new generation)", mc().model_copy(update={"metadata": mc().metadata.model_copy(update={"generation": 2})}), [bp()]),  # noqa: E501
        ("the rollout's assignment", mc(), [bp(assigned="1.1.0")]),
        ("a new revision", mc(), [bp(revision="bp-def")]),
        ("a new Blueprint generation", mc(), [bp(gen=2)]),
        ("a Blueprint that fails validation", mc(), [bp(), ("broken", 3)]),
        ("no Blueprint at all", mc(), []),
    ],
)
def test_each_input_a_team_changes_is_in_the_key(what: str, member: MemberCluster, blueprints: list[Any]) -> None:
    assert inputs_key(member, blueprints) != KEY, what


def with_status(st: MemberClusterStatus) -> MemberCluster:
    return mc().model_copy(update={"status": st})


def test_the_key_ignores_status_that_other_writers_keep() -> None:
    """The drift monitor writes the drift summary and sharding the owner: neither is the
    reconcile's, so neither makes a resync full."""
    base = inputs_key(with_status(status()), [bp()])
    assert inputs_key(with_status(status(drift={"open": 3})), [bp()]) == base
    assert inputs_key(with_status(status(shard={"replica": "r2"})), [bp()]) == base
    assert inputs_key(with_status(status(lastContactTime="2026-12-01T10:00:00Z")), [bp()]) == base


def test_a_status_another_writer_changed_makes_the_next_resync_full() -> None:
    """The chaos run of 2026-12-01: a replica resumed after SIGSTOP wrote its older view of a
    member's status over the new owner's. The owner's mark still matched everything it read,
    so it skipped the member while its status said an old version, for the whole 180 s wait.
    The reconciled part of the status is in the key: such a write makes the next resync full."""
    marked = inputs_key(with_status(status()), [bp()])
    stale = status(blueprints=[{"blueprint": "platform", "version": "0.9.0", "state": "Progressing"}])
    assert inputs_key(with_status(stale), [bp()]) != marked
    assert inputs_key(with_status(status(lastError="member API server unreachable")), [bp()]) != marked


def test_converged_means_nothing_is_left_to_retry_or_finish() -> None:
    assert converged(mc(), status())
    assert not converged(mc(), status(reachable=False))
    assert not converged(mc(), status(lastError="add-on app: not ready"))
    assert not converged(mc(), status(backoff={"failures": 1}))
    for state in ("Pending", "Progressing", "Drifted", "Failed"):
        st = status(blueprints=[{"blueprint": "platform", "version": "1.0.0", "state": state}])
        assert not converged(mc(), st), state
    running = status(
        blueprints=[
            {"blueprint": "platform", "version": "1.0.0", "state": "Ready", "current": {"addon": "app", "step": "wait"}}
        ]
    )
    assert not converged(mc(), running)
    restore = mc().model_copy(
        update={"metadata": mc().metadata.model_copy(update={"annotations": {RESTORE_ANNOTATION: "now"}})}
    )
    assert not converged(restore, status())  # asked for, not carried out
    assert converged(restore, status(driftRestored="now"))
