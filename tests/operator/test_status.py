"""The status fold, without an API server: previous status + this reconcile's results → new status.

Every scenario also checks the operator's contract on the result: folding the same results
again (a quiet resync) yields no patch, so an idle fleet makes no write call.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from blueprintd.api.blueprint import BlueprintStatus
from blueprintd.api.common import Condition, ConditionStatus
from blueprintd.api.membercluster import AddonProgress, BlueprintProgress, MemberClusterStatus, PoolSummary, WaitItem
from blueprintd.api.mergepatch import apply_merge_patch
from blueprintd.api.rollout import ClusterView, RolloutStatus
from blueprintd.cluster.reconcile import AddonResult, ReconcileResult
from blueprintd.operator import status as fold
from blueprintd.operator.backoff import BackoffPolicy
from blueprintd.plan.inventory import Inventory, InventoryObject
from blueprintd.plan.planner import ClusterPlan

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
BP = "gpu-platform"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def inventory(*names: str) -> Inventory:
    return Inventory(
        blueprint=BP,
        objects=[InventoryObject(key=f"v1|ConfigMap|gpu-operator|{n}", addon="gpu-operator") for n in names],
    )


def result(
    version: str = "1.0.0", *, ready: bool = True, failed: str = "", error: str = "", drifted: bool = False
) -> ReconcileResult:
    addons = [AddonResult("gpu-operator", "Failed" if failed else ("Drifted" if drifted else "Ready"), error)]
    return ReconcileResult(
        blueprint=BP,
        version=version,
        plan=ClusterPlan(cluster="alpha", blueprint=BP, version=version),
        addons=addons,
        ready=ready and not failed and not drifted,
        failed_addon=failed,
        error=error,
        inventory=inventory("a") if ready and not failed else None,
        drifted=["gpu-operator"] if drifted else [],
    )


def observed(*outcomes: fold.Outcome, k8s: str = "v1.31.0", **kw: Any) -> fold.MemberObservation:
    pools = [PoolSummary(pool="h100", product="NVIDIA-H100", nodes=2, gpus=16)]
    return fold.MemberObservation(kubernetes_version=k8s, pools=pools, outcomes=outcomes, **kw)


def stored(st: MemberClusterStatus | BlueprintStatus) -> dict[str, Any]:
    """What the API server holds after a full write of ``st`` (wire form)."""
    return st.to_wire()


def quiet(previous: MemberClusterStatus, obs: fold.MemberObservation, when: datetime) -> MemberClusterStatus:
    """Fold, write, read back, fold again later with the same results: the second fold must
    produce no patch (the operator's no-write contract)."""
    new = fold.fold_member(previous, obs, when)
    back = MemberClusterStatus.model_validate(stored(new))
    again = fold.fold_member(back, obs, when + timedelta(seconds=30))
    assert fold.status_patch(stored(new), again, fold.MEMBER_KEYS) is None
    return new


def cond(st: MemberClusterStatus | BlueprintStatus, type_: str) -> Condition:
    found = fold.condition_of(st.conditions, type_)
    assert found is not None, f"no {type_} condition in {st.conditions}"
    return found


# --- members -----------------------------------------------------------------------------------


def test_a_first_successful_reconcile_records_progress_applied_revision_and_conditions() -> None:
    new = quiet(MemberClusterStatus(), observed(fold.Applied(BP, "1.0.0", result(), "Prune", "sha256:x")), T0)
    assert new.reachable and new.kubernetes_version == "v1.31.0"
    [entry] = new.blueprints
    assert (entry.version, entry.state, entry.since, entry.on_unselect) == ("1.0.0", "Ready", T0, "Prune")
    assert entry.inventory == inventory("a")
    [applied] = new.applied_revisions
    assert (applied.version, applied.revision, applied.content_hash, applied.applied_at) == (
        "1.0.0",
        "gpu-platform-v1.0.0",
        "sha256:x",
        T0,
    )
    assert new.revision_summary == "gpu-platform@1.0.0"
    assert [(a.name, a.state, a.revision) for a in new.addons] == [("gpu-operator", "Ready", "1.0.0")]
    assert cond(new, "Ready").status == ConditionStatus.TRUE and cond(new, "Ready").reason == "Converged"
    assert cond(new, "Reachable").message == "Kubernetes v1.31.0"
    assert new.facts_summary[0].gpus == 16


def test_an_unchanged_status_produces_no_patch_and_keeps_every_timestamp() -> None:
    first = fold.fold_member(MemberClusterStatus(), observed(fold.Applied(BP, "1.0.0", result())), T0)
    later = fold.fold_member(
        MemberClusterStatus.model_validate(stored(first)), observed(fold.Applied(BP, "1.0.0", result())), at(600)
    )
    assert later == first
    assert fold.status_patch(stored(first), later, fold.MEMBER_KEYS) is None


def test_a_failure_keeps_the_inventory_and_names_the_addon_and_error() -> None:
    ok = fold.fold_member(MemberClusterStatus(), observed(fold.Applied(BP, "1.0.0", result())), T0)
    # A failed attempt is a real event (lastAttempt moves, retries back off): not a quiet fold.
    failed = fold.fold_member(
        ok, observed(fold.Applied(BP, "1.1.0", result("1.1.0", failed="gpu-operator", error="boom"))), at(10)
    )
    [entry] = failed.blueprints
    assert (entry.state, entry.failed_addon, entry.message, entry.since) == ("Failed", "gpu-operator", "boom", at(10))
    assert entry.last_attempt == at(10)
    assert entry.inventory == inventory("a"), "pruning still knows what was applied"
    assert [a.version for a in failed.applied_revisions] == ["1.0.0"], "a failed version is not applied"
    assert failed.last_error == "boom"
    assert cond(failed, "Ready").status == ConditionStatus.FALSE and cond(failed, "Ready").message == "boom"


def test_backoff_keeps_the_failed_entry_and_its_addon_states() -> None:
    failed = fold.fold_member(
        MemberClusterStatus(),
        observed(fold.Applied(BP, "1.1.0", result("1.1.0", failed="gpu-operator", error="boom"))),
        T0,
    )
    held = quiet(failed, observed(fold.Backoff(BP)), at(5))
    assert held.blueprints == failed.blueprints and held.addons == failed.addons
    assert held.last_error == "boom"


def test_render_failure_is_a_failed_entry_with_the_error() -> None:
    new = fold.fold_member(
        MemberClusterStatus(), observed(fold.NotApplied(BP, "2.0.0", "render failed: bad overlay")), T0
    )
    [entry] = new.blueprints
    assert (entry.state, entry.version, entry.message) == ("Failed", "2.0.0", "render failed: bad overlay")
    assert entry.inventory == Inventory(blueprint=BP)
    assert new.addons == [] and new.applied_revisions == []


def test_held_drift_is_drifted_not_failed() -> None:
    new = quiet(
        MemberClusterStatus(), observed(fold.Applied(BP, "1.0.0", result(drifted=True, error="cm deleted"))), T0
    )
    [entry] = new.blueprints
    assert entry.state == "Drifted" and entry.message == "gpu-operator: cm deleted"
    assert cond(new, "Ready").reason == "DriftHeld" and new.last_error == ""


def test_unselected_blueprint_is_dropped_with_its_applied_revision() -> None:
    ok = fold.fold_member(MemberClusterStatus(), observed(fold.Applied(BP, "1.0.0", result())), T0)
    gone = quiet(ok, observed(fold.Unselected(BP)), at(10))
    assert gone.blueprints == [] and gone.applied_revisions == [] and gone.revision_summary == ""
    patch = fold.status_patch(stored(ok), gone, fold.MEMBER_KEYS)
    assert patch is not None and patch["blueprints"] == [] and patch["appliedRevisions"] == []
    assert cond(gone, "Ready").status == ConditionStatus.FALSE  # nothing recorded: not "all applied"


def test_an_unselect_that_failed_keeps_the_entry_to_retry_from_its_inventory() -> None:
    ok = fold.fold_member(MemberClusterStatus(), observed(fold.Applied(BP, "1.0.0", result())), T0)
    stuck = fold.fold_member(ok, observed(fold.Unselected(BP, "pruning gpu-platform: timeout")), at(10))
    [entry] = stuck.blueprints
    assert entry.state == "Failed" and entry.inventory == inventory("a") and entry.last_attempt == at(10)
    assert stuck.last_error == "pruning gpu-platform: timeout"


def test_unreachable_member_keeps_everything_but_reachability() -> None:
    ok = fold.fold_member(MemberClusterStatus(), observed(fold.Applied(BP, "1.0.0", result())), T0)
    down = fold.fold_unreachable(ok, "Unreachable", "member API server unreachable: MaxRetryError", at(10))
    assert not down.reachable and down.last_error.startswith("member API server unreachable")
    assert down.blueprints == ok.blueprints and down.applied_revisions == ok.applied_revisions
    assert cond(down, "Reachable").status == ConditionStatus.FALSE
    assert cond(down, "Reachable").last_transition_time == at(10)
    patch = fold.status_patch(stored(ok), down, fold.UNREACHABLE_KEYS)
    assert patch is not None and set(patch) == {"reachable", "lastError", "conditions", "backoff"}
    assert down.backoff is not None and down.backoff.failures == 1
    # Still down at the next attempt: only the backoff moves (one more failure, a later nextAttempt).
    again = fold.fold_unreachable(
        MemberClusterStatus.model_validate(stored(down)), "Unreachable", down.last_error, at(40)
    )
    patch = fold.status_patch(stored(down), again, fold.UNREACHABLE_KEYS)
    assert patch is not None and set(patch) == {"backoff"}
    assert again.backoff is not None and again.backoff.failures == 2


def test_a_member_that_comes_back_is_reachable_again_with_a_new_transition_time() -> None:
    ok = fold.fold_member(MemberClusterStatus(), observed(fold.Applied(BP, "1.0.0", result())), T0)
    down = fold.fold_unreachable(ok, "Unreachable", "member API server unreachable: MaxRetryError", at(10))
    back = quiet(down, observed(fold.Applied(BP, "1.0.0", result())), at(20))
    assert back.reachable and back.last_error == ""
    assert cond(back, "Reachable").last_transition_time == at(20)
    assert cond(back, "Ready").last_transition_time == T0, "Ready never flipped"
    assert back.blueprints[0].since == T0


def test_restore_is_recorded_only_when_carried_out_without_error() -> None:
    ok = fold.fold_member(
        MemberClusterStatus(), observed(fold.Applied(BP, "1.0.0", result()), restore_request="t1", restore=True), T0
    )
    assert ok.drift_restored == "t1"
    bad = fold.fold_member(
        MemberClusterStatus(),
        observed(
            fold.Applied(BP, "1.0.0", result(failed="gpu-operator", error="x")), restore_request="t1", restore=True
        ),
        T0,
    )
    assert bad.drift_restored == ""


def test_the_drift_summary_belongs_to_the_drift_monitor() -> None:
    prev = MemberClusterStatus.model_validate({"drift": {"open": 3}})
    new = fold.fold_member(prev, observed(fold.Applied(BP, "1.0.0", result())), T0)
    patch = fold.status_patch({"drift": {"open": 3}}, new, fold.MEMBER_KEYS)
    assert patch is not None and "drift" not in patch


def test_entries_of_blueprints_without_an_assignment_are_kept() -> None:
    prev = MemberClusterStatus(blueprints=[BlueprintProgress(blueprint="other", version="2.0.0", state="Ready")])
    new = fold.fold_member(prev, observed(fold.Applied(BP, "1.0.0", result())), T0)
    assert [p.blueprint for p in new.blueprints] == [BP, "other"]


# --- Blueprints --------------------------------------------------------------------------------


def decision(assignments: dict[str, str], phase: str = "Complete") -> RolloutStatus:
    return RolloutStatus.model_validate(
        {
            "targetVersion": "1.0.0",
            "phase": phase,
            "wave": 1,
            "waves": [sorted(assignments)],
            "waveStartedAt": T0.isoformat(),
            "assignments": assignments,
            "message": "done",
        }
    )


def views(*names: str) -> list[ClusterView]:
    return [ClusterView(name=n, applied_version="1.0.0", state="Ready", state_version="1.0.0") for n in names]


def test_a_deleted_members_assignment_is_removed_by_the_patch_and_then_nothing_is_written() -> None:
    before = fold.fold_rollout(
        BlueprintStatus(),
        decision({"a": "1.0.0", "b": "1.0.0", "ghost": "1.0.0"}),
        views("a", "b", "ghost"),
        "1.0.0",
        T0,
    )
    on_server = stored(before)
    after = fold.fold_rollout(
        BlueprintStatus.model_validate(on_server),
        decision({"a": "1.0.0", "b": "1.0.0"}),
        views("a", "b"),
        "1.0.0",
        at(2),
    )
    patch = fold.status_patch(on_server, after, fold.ROLLOUT_KEYS)
    assert patch is not None and patch["rollout"]["assignments"] == {"ghost": None}
    assert patch["rollout"]["waves"] == [["a", "b"]] and patch["matchedClusters"] == 2
    on_server = apply_merge_patch(on_server, patch)  # what the API server keeps
    assert on_server["rollout"]["assignments"] == {"a": "1.0.0", "b": "1.0.0"}
    again = fold.fold_rollout(
        BlueprintStatus.model_validate(on_server),
        decision({"a": "1.0.0", "b": "1.0.0"}),
        views("a", "b"),
        "1.0.0",
        at(4),
    )
    assert fold.status_patch(on_server, again, fold.ROLLOUT_KEYS) is None


def test_rollout_conditions_and_counts() -> None:
    st = fold.fold_rollout(BlueprintStatus(), decision({"a": "1.0.0"}, "Progressing"), views("a", "b"), "1.0.0", T0)
    assert (st.matched_clusters, st.ready_clusters) == (2, 2)
    assert cond(st, "RollingOut").status == ConditionStatus.TRUE and cond(st, "Ready").status == ConditionStatus.FALSE
    done = fold.fold_rollout(st, decision({"a": "1.0.0", "b": "1.0.0"}), views("a", "b"), "1.0.0", at(5))
    assert (
        cond(done, "Ready").status == ConditionStatus.TRUE
        and cond(done, "Ready").message == "2/2 clusters ready at 1.0.0"
    )
    assert cond(done, "RollingOut").last_transition_time == at(5)


def test_publish_then_invalid_flips_valid_and_keeps_the_revision() -> None:
    pub = fold.fold_published(BlueprintStatus(), 1, "gpu-platform-v1.0.0", "sha256:x", "1.0.0", T0)
    assert cond(pub, "Valid").status == ConditionStatus.TRUE and pub.revision == "gpu-platform-v1.0.0"
    assert (
        fold.status_patch(
            stored(pub),
            fold.fold_published(pub, 1, "gpu-platform-v1.0.0", "sha256:x", "1.0.0", at(9)),
            fold.PUBLISH_KEYS,
        )
        is None
    )
    bad = fold.fold_invalid(pub, 2, "VersionReused", "bump spec.version", at(10))
    assert cond(bad, "Valid").reason == "VersionReused" and bad.revision == "gpu-platform-v1.0.0"
    assert set(fold.status_patch(stored(pub), bad, fold.INVALID_KEYS) or {}) == {"observedGeneration", "conditions"}


def test_condition_messages_are_clipped_and_sorted_by_type() -> None:
    conds = fold.set_condition([], "Reachable", True, "Connected", "x" * 5000, T0)
    conds = fold.set_condition(conds, "Drifted", False, "None", "", T0)
    assert [c.type for c in conds] == ["Drifted", "Reachable"]
    assert len(conds[1].message) == fold.MAX_CONDITION_MESSAGE


# --- a step in progress ----------------------------------------------------------------------


def in_progress(addon: str = "gatekeeper", *waits: tuple[str, str, str], step: str = "install") -> AddonProgress:
    return AddonProgress(
        addon=addon,
        step=step,  # type: ignore[arg-type]
        version="1.1.0",
        since=at(5),
        waiting_for=[WaitItem(kind=k, name=n, reason=r) for k, n, r in waits],
    )


HOOK = ("Job", "gatekeeper-system/gatekeeper-update-crds-hook", "pre-install hook Job running")


def test_a_first_install_in_progress_shows_a_progressing_entry_naming_the_addon_and_what_it_waits_for() -> None:
    new = fold.fold_in_progress(MemberClusterStatus(), BP, "1.1.0", in_progress("gatekeeper", HOOK), at(5))
    (entry,) = new.blueprints
    assert (entry.blueprint, entry.version, entry.state, entry.since) == (BP, "1.1.0", "Progressing", at(5))
    assert entry.current is not None and entry.current.addon == "gatekeeper"
    assert stored(new)["blueprints"][0]["current"] == {
        "addon": "gatekeeper",
        "step": "install",
        "version": "1.1.0",
        "since": "2026-03-01T12:00:05Z",
        "waitingFor": [{"kind": HOOK[0], "name": HOOK[1], "reason": HOOK[2]}],
    }
    # only the blueprints key is written, and writing the same progress again writes nothing
    assert set(fold.status_patch(None, new, fold.PROGRESS_KEYS) or {}) == {"blueprints"}
    again = fold.fold_in_progress(MemberClusterStatus.model_validate(stored(new)), BP, "1.1.0",
                                  in_progress("gatekeeper", HOOK), at(9))
    assert fold.status_patch(stored(new), again, fold.PROGRESS_KEYS) is None


def test_an_upgrade_in_progress_keeps_the_entry_and_only_adds_current() -> None:
    before = quiet(MemberClusterStatus(), observed(fold.Applied(BP, "1.0.0", result())), T0)
    during = fold.fold_in_progress(before, BP, "1.1.0", in_progress("gatekeeper", HOOK, step="upgrade"), at(5))
    old, new = before.blueprints[0], during.blueprints[0]
    assert new.model_copy(update={"current": None}) == old  # state, version, since, inventory untouched
    assert new.current is not None and new.current.step == "upgrade"
    assert during.model_copy(update={"blueprints": before.blueprints}) == before


def test_the_step_end_clears_current_and_a_missing_entry_stays_missing() -> None:
    during = fold.fold_in_progress(MemberClusterStatus(), BP, "1.1.0", in_progress("gatekeeper", HOOK), at(5))
    after = fold.fold_in_progress(during, BP, "1.1.0", None, at(9))
    assert after.blueprints[0].current is None
    assert "current" not in stored(after)["blueprints"][0]
    assert fold.fold_in_progress(MemberClusterStatus(), BP, "1.1.0", None, at(9)) == MemberClusterStatus()


def test_the_reconcile_fold_drops_every_current_left_behind() -> None:
    """An operator killed mid-step leaves current in the stored status; the next fold clears it,
    for applied Blueprints and for ones kept as they were (backoff)."""
    failed = fold.fold_member(MemberClusterStatus(), observed(fold.Applied(BP, "1.0.0", result(failed="x"))), T0)
    stale = fold.fold_in_progress(failed, BP, "1.0.0", in_progress("gatekeeper", HOOK), at(5))
    stale = fold.fold_in_progress(stale, "other", "2.0.0", in_progress("kai", HOOK), at(5))
    kept = fold.fold_member(stale, observed(fold.Backoff(BP)), at(10))
    assert [p.current for p in kept.blueprints] == [None, None]
    applied = fold.fold_member(stale, observed(fold.Applied(BP, "1.0.0", result())), at(10))
    assert all(p.current is None for p in applied.blueprints)


# --- backoff ------------------------------------------------------------------------------------

NO_JITTER = BackoffPolicy(base_seconds=5, cap_seconds=20, jitter=0.0)


def failing(version: str = "1.1.0", attempt: str = "a1") -> fold.Applied:
    return fold.Applied(BP, version, result(version, failed="gpu-operator", error="boom"), attempt=attempt)


def test_the_first_failure_is_shown_at_once_with_its_next_attempt() -> None:
    failed = fold.fold_member(MemberClusterStatus(), observed(failing()), T0, policy=NO_JITTER, cluster="alpha")
    [entry] = failed.blueprints
    assert (entry.state, entry.failed_addon, entry.message) == ("Failed", "gpu-operator", "boom")
    assert entry.backoff is not None
    assert (entry.backoff.failures, entry.backoff.next_attempt) == (1, at(5))
    wire = stored(failed)["blueprints"][0]["backoff"]
    assert wire["failures"] == 1 and wire["nextAttempt"] == "2026-03-01T12:00:05Z"


def test_repeated_failures_of_the_same_attempt_back_off_up_to_the_cap() -> None:
    st, now, waits = MemberClusterStatus(), T0, []
    for _ in range(5):
        st = fold.fold_member(
            MemberClusterStatus.model_validate(stored(st)), observed(failing()), now, policy=NO_JITTER, cluster="alpha"
        )
        entry = st.blueprints[0]
        assert entry.backoff is not None and entry.backoff.next_attempt is not None
        waits.append((entry.backoff.next_attempt - now).total_seconds())
        # Between attempts the controller reports Backoff: the status stays as it is (no write).
        held = quiet(st, observed(fold.Backoff(BP)), now + timedelta(seconds=1))
        assert held.blueprints == st.blueprints
        now = entry.backoff.next_attempt
    assert waits == [5, 10, 20, 20, 20]
    assert st.blueprints[0].backoff is not None and st.blueprints[0].backoff.failures == 5


def test_success_clears_the_backoff() -> None:
    st = MemberClusterStatus()
    for i in range(3):
        st = fold.fold_member(st, observed(failing()), at(i * 60), policy=NO_JITTER)
    ok = quiet(st, observed(fold.Applied(BP, "1.1.0", result("1.1.0"), attempt="a1")), at(600))
    assert ok.blueprints[0].state == "Ready" and ok.blueprints[0].backoff is None
    patch = fold.status_patch(stored(st), ok, fold.MEMBER_KEYS)
    assert patch is not None and "backoff" not in patch["blueprints"][0]
    again = fold.fold_member(ok, observed(failing()), at(700), policy=NO_JITTER)
    assert again.blueprints[0].backoff is not None and again.blueprints[0].backoff.failures == 1


def test_a_new_version_or_new_inputs_start_the_count_again() -> None:
    st = MemberClusterStatus()
    for i in range(4):
        st = fold.fold_member(st, observed(failing("1.1.0", "a1")), at(i * 60), policy=NO_JITTER)
    assert st.blueprints[0].backoff is not None and st.blueprints[0].backoff.failures == 4
    newer = fold.fold_member(st, observed(failing("1.2.0", "a2")), at(300), policy=NO_JITTER)
    assert newer.blueprints[0].backoff is not None
    assert (newer.blueprints[0].backoff.failures, newer.blueprints[0].backoff.next_attempt) == (1, at(305))
    render = fold.fold_member(newer, observed(fold.NotApplied(BP, "1.2.0", "bad", attempt="a3")), at(400))
    assert render.blueprints[0].backoff is not None and render.blueprints[0].backoff.failures == 1


def test_drifted_is_not_a_failure_and_clears_the_backoff() -> None:
    st = fold.fold_member(MemberClusterStatus(), observed(failing("1.0.0")), T0, policy=NO_JITTER)
    drifted = fold.fold_member(st, observed(fold.Applied(BP, "1.0.0", result(drifted=True, error="x"))), at(60))
    assert drifted.blueprints[0].state == "Drifted" and drifted.blueprints[0].backoff is None


def test_jitter_seeds_differ_per_member_and_blueprint() -> None:
    policy = BackoffPolicy(base_seconds=100, cap_seconds=100)
    entries = [
        fold.fold_member(MemberClusterStatus(), observed(failing()), T0, policy=policy, cluster=c).blueprints[0]
        for c in ("alpha", "beta", "gamma", "delta")
    ]
    times = {e.backoff.next_attempt for e in entries if e.backoff is not None}
    assert len(times) > 1 and all(t is not None and at(80) <= t <= at(100) for t in times)


def test_an_unreachable_member_backs_off_and_a_reachable_one_clears_it() -> None:
    ok = fold.fold_member(MemberClusterStatus(), observed(fold.Applied(BP, "1.0.0", result())), T0)
    st, now, waits = ok, at(10), []
    for _ in range(4):
        st = fold.fold_unreachable(
            MemberClusterStatus.model_validate(stored(st)), "Unreachable", "down", now, attempt="k1", policy=NO_JITTER
        )
        assert st.backoff is not None and st.backoff.next_attempt is not None
        waits.append((st.backoff.next_attempt - now).total_seconds())
        now = st.backoff.next_attempt
    assert waits == [5, 10, 20, 20] and st.backoff is not None and st.backoff.failures == 4
    assert cond(st, "Reachable").status == ConditionStatus.FALSE
    assert st.blueprints == ok.blueprints, "the inventories survive for pruning"
    fixed = fold.fold_unreachable(st, "ConnectFailed", "no secret", now, attempt="k2", policy=NO_JITTER)
    assert fixed.backoff is not None and fixed.backoff.failures == 1, "a changed kubeconfig reference starts over"
    back = quiet(st, observed(fold.Applied(BP, "1.0.0", result())), now)
    assert back.reachable and back.backoff is None
    patch = fold.status_patch(stored(st), back, fold.MEMBER_KEYS)
    assert patch is not None and patch["backoff"] is None, "the stored backoff is removed"
