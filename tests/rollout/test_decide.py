"""Behaviour of the rollout decision: canary and waves, health gate, pause, rollback, idempotence.

Every call goes through ``step``, which also checks the operator's contract on the result:
deciding again from the returned status (directly, and after a round trip through the wire
form the operator stores) changes nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import hypothesis
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from blueprintd.api.blueprint import Canary, Rollout
from blueprintd.api.common import LabelSelector
from blueprintd.errors import ValidationError
from blueprintd.rollout import ClusterState, ClusterView, RolloutStatus, batch_size, decide, plan_waves

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
OLD, NEW = "1.0.0", "1.1.0"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def view(
    name: str,
    applied: str | None = OLD,
    *,
    state: ClusterState = "Ready",
    version: str | None = None,
    since: datetime = T0,
    **kw: Any,
) -> ClusterView:
    """A cluster Ready at what it runs unless told otherwise."""
    return ClusterView(
        name=name,
        applied_version=applied,
        state=state,
        state_version=version if version is not None else applied,
        since=since,
        **kw,
    )


def fleet(n: int, applied: str | None = OLD) -> list[ClusterView]:
    return [view(f"member-{i}", applied) for i in range(1, n + 1)]


def ready(clusters: list[ClusterView], names: list[str], version: str = NEW, when: datetime = T0) -> list[ClusterView]:
    """The named clusters finished converging: they run ``version`` and are Ready."""
    return [
        c.model_copy(update={"applied_version": version, "state": "Ready", "state_version": version, "since": when})
        if c.name in names
        else c
        for c in clusters
    ]


def update(clusters: list[ClusterView], name: str, **changes: Any) -> list[ClusterView]:
    return [c.model_copy(update=changes) if c.name == name else c for c in clusters]


def step(
    strategy: Rollout,
    target: str,
    clusters: list[ClusterView],
    previous: RolloutStatus | None,
    now: datetime = T0,
    paused: bool = False,
    resume_token: str | None = None,
) -> RolloutStatus:
    """``decide`` plus the idempotence contract the operator relies on to skip writes."""
    status = decide(strategy, target, clusters, previous, now, paused, resume_token=resume_token)
    stored = RolloutStatus.model_validate(status.to_wire())
    assert stored == status, "the status must survive the wire round trip unchanged"
    again = decide(strategy, target, clusters, stored, now, paused, resume_token=resume_token)
    assert again == status, "deciding again from the returned status must change nothing"
    return status


def moving(status: RolloutStatus, version: str = NEW) -> list[str]:
    return sorted(n for n, v in status.assignments.items() if v == version)


CANARY_1_BY_2 = Rollout(canary=Canary(count=1), max_unavailable=2, health_timeout_seconds=600)


# --- waves -------------------------------------------------------------------------------


def test_canary_first_then_waves_of_max_unavailable() -> None:
    clusters = fleet(7)
    s = step(CANARY_1_BY_2, NEW, clusters, None)
    assert s.waves == [
        ["member-1"],
        ["member-2", "member-3"],
        ["member-4", "member-5"],
        ["member-6", "member-7"],
    ]
    assert (s.phase, s.wave, s.previous_version) == ("Progressing", 0, OLD)
    assert moving(s) == ["member-1"]
    assert all(s.assignments[f"member-{i}"] == OLD for i in range(2, 8))
    assert s.message == "wave 1/4: member-1 converging"

    clusters = ready(clusters, ["member-1"])
    s = step(CANARY_1_BY_2, NEW, clusters, s, at(60))
    assert (s.wave, moving(s)) == (1, ["member-1", "member-2", "member-3"])
    assert s.message == "wave 2/4: member-2, member-3 converging"

    clusters = ready(clusters, ["member-2", "member-3"])
    s = step(CANARY_1_BY_2, NEW, clusters, s, at(120))
    assert s.wave == 2 and moving(s) == ["member-1", "member-2", "member-3", "member-4", "member-5"]

    clusters = ready(clusters, ["member-4", "member-5"])
    s = step(CANARY_1_BY_2, NEW, clusters, s, at(180))
    clusters = ready(clusters, ["member-6", "member-7"])
    s = step(CANARY_1_BY_2, NEW, clusters, s, at(240))
    assert (s.phase, s.wave) == ("Complete", 4)
    assert set(s.assignments.values()) == {NEW}
    assert s.message == "complete: 1.1.0 on 7 clusters"


def test_canary_selector_picks_matching_clusters_first() -> None:
    clusters = [
        view("a", labels={"ring": "prod"}),
        view("b", labels={"ring": "canary"}),
        view("c"),
        view("d", labels={"ring": "canary"}),
    ]
    strategy = Rollout(canary=Canary(selector=LabelSelector(match_labels={"ring": "canary"})), max_unavailable=5)
    s = step(strategy, NEW, clusters, None)
    assert s.waves == [["b", "d"], ["a", "c"]]
    assert moving(s) == ["b", "d"]


def test_no_canary_means_batches_from_the_start() -> None:
    s = step(Rollout(max_unavailable=2), NEW, fleet(3), None)
    assert s.waves == [["member-1", "member-2"], ["member-3"]]


@pytest.mark.parametrize(
    ("max_unavailable", "total", "size"),
    [("25%", 8, 2), ("50%", 5, 2), ("10%", 5, 1), ("100%", 3, 3), (3, 10, 3), ("1%", 0, 1)],
)
def test_percent_max_unavailable_is_of_the_rolled_out_clusters_rounded_down_at_least_one(
    max_unavailable: int | str, total: int, size: int
) -> None:
    assert batch_size(max_unavailable, total) == size


def test_percent_max_unavailable_counts_only_clusters_that_take_part() -> None:
    # 8 clusters, 4 of them pinned: 50% of the 4 rolled-out clusters is 2 per wave.
    clusters = [view(f"m{i}", pinned_version=OLD if i >= 4 else None) for i in range(8)]
    s = step(Rollout(max_unavailable="50%"), NEW, clusters, None)
    assert s.waves == [["m0", "m1"], ["m2", "m3"]]


def test_invalid_max_unavailable_is_a_typed_error() -> None:
    with pytest.raises(ValidationError, match="maxUnavailable"):
        batch_size("abc", 4)
    with pytest.raises(ValidationError, match="maxUnavailable"):
        batch_size(0, 4)


def test_plan_waves_ignores_input_order() -> None:
    clusters = fleet(5)
    assert plan_waves(CANARY_1_BY_2, clusters) == plan_waves(CANARY_1_BY_2, list(reversed(clusters)))


def test_duplicate_cluster_names_are_rejected() -> None:
    with pytest.raises(ValidationError, match="listed twice"):
        decide(CANARY_1_BY_2, NEW, [view("a"), view("a")], None, T0)


def test_empty_fleet_completes_at_once() -> None:
    s = step(CANARY_1_BY_2, NEW, [], None)
    assert (s.phase, s.waves, s.assignments) == ("Complete", [], {})


# --- the health gate ---------------------------------------------------------------------


def test_no_advance_until_every_cluster_of_the_wave_is_ready_at_the_target() -> None:
    clusters = fleet(3)
    s = step(CANARY_1_BY_2, NEW, clusters, None)
    # Converging, then Ready at the old version (the member has not picked up the new one yet).
    for clusters_now in (
        update(clusters, "member-1", state="Progressing", state_version=NEW, since=at(10)),
        update(clusters, "member-1", state="Ready", state_version=OLD),
        update(ready(clusters, ["member-1"]), "member-1", reachable=False, last_contact=at(30)),
    ):
        s = step(CANARY_1_BY_2, NEW, clusters_now, s, at(60))
        assert (s.phase, s.wave, moving(s)) == ("Progressing", 0, ["member-1"])
    assert s.message == "wave 1/2: member-1 unreachable"


def test_earlier_waves_must_stay_ready() -> None:
    clusters = fleet(5)
    s = step(CANARY_1_BY_2, NEW, clusters, None)
    clusters = ready(clusters, ["member-1"])
    s = step(CANARY_1_BY_2, NEW, clusters, s, at(10))
    # The canary goes back to Progressing while wave 2 finishes: wave 3 must wait for it.
    clusters = ready(clusters, ["member-2", "member-3"])
    clusters = update(clusters, "member-1", state="Progressing", since=at(15))
    s = step(CANARY_1_BY_2, NEW, clusters, s, at(20))
    assert s.wave == 1
    assert "member-1" in s.message


def test_failure_pauses_after_the_canary_and_names_cluster_addon_and_message() -> None:
    clusters = fleet(4)
    s = step(CANARY_1_BY_2, NEW, clusters, None)
    clusters = update(
        clusters,
        "member-1",
        state="Failed",
        state_version=NEW,
        failed_addon="gpu-operator",
        message="helm upgrade: timed out waiting for the condition",
        since=at(30),
    )
    s = step(CANARY_1_BY_2, NEW, clusters, s, at(40))
    assert s.phase == "Paused" and not s.paused_by_user
    assert [(f.cluster, f.version, f.addon, f.reason, f.message) for f in s.failures] == [
        ("member-1", NEW, "gpu-operator", "Failed", "helm upgrade: timed out waiting for the condition")
    ]
    assert s.message == (
        "paused at wave 1/3: member-1 failed add-on gpu-operator: "
        "helm upgrade: timed out waiting for the condition; resume to retry"
    )
    assert moving(s) == ["member-1"], "the canary keeps the new version; nothing else moves"

    # Even if the canary recovers, a failure pause waits for a human.
    s = step(CANARY_1_BY_2, NEW, ready(clusters, ["member-1"]), s, at(100))
    assert (s.phase, s.wave, moving(s)) == ("Paused", 0, ["member-1"])


def test_rollback_policy_assigns_the_previous_version_to_the_failed_and_earlier_waves() -> None:
    strategy = CANARY_1_BY_2.model_copy(update={"failure_policy": "rollback"})
    clusters = fleet(6)
    s = step(strategy, NEW, clusters, None)
    clusters = ready(clusters, ["member-1"])
    s = step(strategy, NEW, clusters, s, at(10))
    assert s.wave == 1
    clusters = ready(clusters, ["member-2"])
    clusters = update(
        clusters,
        "member-3",
        state="Failed",
        state_version=NEW,
        failed_addon="network-operator",
        message="CrashLoopBackOff",
        since=at(20),
    )
    s = step(strategy, NEW, clusters, s, at(30))
    assert s.phase == "RolledBack"
    assert s.assignments == {f"member-{i}": OLD for i in range(1, 7)}
    assert s.failures[0].cluster == "member-3" and s.failures[0].addon == "network-operator"
    assert s.message == "rolled back to 1.0.0 at wave 2/4: member-3 failed add-on network-operator: CrashLoopBackOff"
    # It stays rolled back while the clusters converge back.
    s = step(strategy, NEW, ready(clusters, ["member-1", "member-2", "member-3"], OLD), s, at(60))
    assert s.phase == "RolledBack" and set(s.assignments.values()) == {OLD}


def test_rollback_without_an_earlier_version_stops_with_phase_failed() -> None:
    strategy = CANARY_1_BY_2.model_copy(update={"failure_policy": "rollback"})
    clusters = fleet(3, applied=None)
    s = step(strategy, NEW, clusters, None)
    assert s.previous_version is None
    assert s.assignments == {"member-1": NEW}, "clusters that run nothing and wait get nothing"
    clusters = update(clusters, "member-1", state="Failed", state_version=NEW, message="boom", since=at(5))
    s = step(strategy, NEW, clusters, s, at(10))
    assert s.phase == "Failed"
    assert s.assignments == {"member-1": NEW}
    assert "no earlier version to roll back to" in s.message


def test_health_timeout_fails_a_cluster_stuck_converging() -> None:
    clusters = fleet(3)
    s = step(CANARY_1_BY_2, NEW, clusters, None)
    clusters = update(
        clusters,
        "member-1",
        state="Progressing",
        state_version=NEW,
        since=at(5),
        failed_addon="gpu-operator",
        message="waiting for DaemonSet nvidia-driver-daemonset",
    )
    s = step(CANARY_1_BY_2, NEW, clusters, s, at(605))
    assert s.phase == "Progressing", "exactly the timeout is still in time"
    s = step(CANARY_1_BY_2, NEW, clusters, s, at(606))
    assert s.phase == "Paused"
    (failure,) = s.failures
    assert (failure.reason, failure.addon) == ("Timeout", "gpu-operator")
    assert failure.message == "not Ready within 600s (Progressing: waiting for DaemonSet nvidia-driver-daemonset)"


def test_health_timeout_also_covers_a_cluster_that_never_starts() -> None:
    clusters = fleet(3)
    s = step(CANARY_1_BY_2, NEW, clusters, None, at(0))
    s = step(CANARY_1_BY_2, NEW, clusters, s, at(601))
    assert s.phase == "Paused"
    assert s.failures[0].message == "not Ready within 600s (not started on 1.1.0)"


def test_health_clock_starts_with_the_wave_not_with_an_old_state() -> None:
    # member-2 has been Progressing at the target for an hour (from an earlier attempt): it gets
    # the full timeout once its wave starts, not an immediate failure.
    clusters = update(fleet(3), "member-2", state="Progressing", state_version=NEW, since=at(-3600))
    s = step(CANARY_1_BY_2, NEW, clusters, None, at(0))
    clusters = ready(clusters, ["member-1"])
    s = step(CANARY_1_BY_2, NEW, clusters, s, at(100))
    assert s.wave == 1 and s.wave_started_at == at(100)
    s = step(CANARY_1_BY_2, NEW, clusters, s, at(700))
    assert s.phase == "Progressing"
    s = step(CANARY_1_BY_2, NEW, clusters, s, at(701))
    assert s.phase == "Paused" and s.failures[0].cluster == "member-2"


def test_unreachable_cluster_blocks_but_fails_only_after_the_timeout() -> None:
    clusters = fleet(3)
    s = step(CANARY_1_BY_2, NEW, clusters, None, at(0))
    clusters = update(ready(clusters, ["member-1"]), "member-1", reachable=False, last_contact=at(50))
    s = step(CANARY_1_BY_2, NEW, clusters, s, at(640))
    assert (s.phase, s.wave) == ("Progressing", 0)
    assert s.message == "wave 1/2: member-1 unreachable"
    s = step(CANARY_1_BY_2, NEW, clusters, s, at(651))
    assert s.phase == "Paused"
    assert (s.failures[0].reason, s.failures[0].message) == ("Unreachable", "unreachable for more than 600s")


def test_long_helm_errors_are_clipped() -> None:
    clusters = update(fleet(2), "member-1", state="Failed", state_version=NEW, message="x" * 10_000, since=at(1))
    s = step(CANARY_1_BY_2, NEW, clusters, None, at(0))
    assert s.phase == "Paused"
    assert len(s.failures[0].message) <= 1024 and len(s.message) <= 1024


# --- pins --------------------------------------------------------------------------------


def test_pinned_cluster_keeps_its_pin_and_is_not_gated() -> None:
    clusters = fleet(4)
    clusters = update(
        clusters,
        "member-2",
        pinned_version="0.9.0",
        applied_version="0.9.0",
        state="Failed",
        state_version="0.9.0",
        message="broken",
    )
    s = step(CANARY_1_BY_2, NEW, clusters, None)
    assert s.assignments["member-2"] == "0.9.0"
    assert all("member-2" not in w for w in s.waves)
    clusters = ready(clusters, ["member-1", "member-3", "member-4"])
    s = step(CANARY_1_BY_2, NEW, clusters, s, at(10))
    assert s.phase == "Complete" and s.assignments["member-2"] == "0.9.0"
    assert s.message == "complete: 1.1.0 on 3 clusters, 1 pinned"


def test_pin_set_mid_rollout_wins_even_while_paused_and_unpinning_returns_the_cluster_to_its_wave() -> None:
    clusters = fleet(3)
    s = step(CANARY_1_BY_2, NEW, clusters, None)
    clusters = update(clusters, "member-1", pinned_version=OLD)
    s = step(CANARY_1_BY_2, NEW, clusters, s, at(10), paused=True)
    assert s.assignments["member-1"] == OLD
    s = step(CANARY_1_BY_2, NEW, clusters, s, at(20))
    # member-1 no longer gates the canary wave, which is now empty: wave 2 starts.
    assert s.wave == 1 and s.waves[0] == ["member-1"]
    assert moving(s) == ["member-2", "member-3"]
    clusters = update(clusters, "member-1", pinned_version=None)
    s = step(CANARY_1_BY_2, NEW, clusters, s, at(30))
    assert moving(s) == ["member-1", "member-2", "member-3"]


# --- pause and resume --------------------------------------------------------------------


def test_user_pause_freezes_and_resume_continues_from_the_same_wave() -> None:
    clusters = fleet(5)
    s = step(CANARY_1_BY_2, NEW, clusters, None)
    clusters = ready(clusters, ["member-1"])
    s = step(CANARY_1_BY_2, NEW, clusters, s, at(10), paused=True)
    assert (s.phase, s.paused_by_user, s.wave, moving(s)) == ("Paused", True, 0, ["member-1"])
    assert s.message == "paused by user at wave 1/3 of 1.1.0"
    # While paused nothing moves, however healthy the fleet is.
    s = step(CANARY_1_BY_2, NEW, clusters, s, at(5000), paused=True)
    assert (s.wave, moving(s)) == (0, ["member-1"])
    s = step(CANARY_1_BY_2, NEW, clusters, s, at(5010))
    assert (s.phase, s.paused_by_user, s.wave) == ("Progressing", False, 1)
    assert moving(s) == ["member-1", "member-2", "member-3"]


def test_resume_restarts_the_health_clock() -> None:
    clusters = fleet(3)
    s = step(CANARY_1_BY_2, NEW, clusters, None, at(0))
    s = step(CANARY_1_BY_2, NEW, clusters, s, at(100), paused=True)
    s = step(CANARY_1_BY_2, NEW, clusters, s, at(1000))
    assert s.phase == "Progressing" and s.wave_started_at == at(1000)


def test_a_new_version_published_while_paused_does_not_start() -> None:
    clusters = fleet(3)
    s = step(CANARY_1_BY_2, OLD, clusters, None)
    assert s.phase == "Complete"
    s = step(CANARY_1_BY_2, NEW, clusters, s, at(10), paused=True)
    assert (s.target_version, s.phase, moving(s)) == (NEW, "Paused", [])
    s = step(CANARY_1_BY_2, NEW, clusters, s, at(20))
    assert moving(s) == ["member-1"]


def test_resume_token_retries_after_a_failure_pause() -> None:
    clusters = fleet(3)
    s = step(CANARY_1_BY_2, NEW, clusters, None, at(0), resume_token="r0")
    failed = update(
        clusters,
        "member-1",
        state="Failed",
        state_version=NEW,
        failed_addon="gpu-operator",
        message="boom",
        since=at(10),
    )
    s = step(CANARY_1_BY_2, NEW, failed, s, at(20), resume_token="r0")
    assert s.phase == "Paused"

    s = step(CANARY_1_BY_2, NEW, failed, s, at(30), resume_token="r1")
    # The failure from before the resume is stale: the cluster gets a fresh health window.
    assert (s.phase, s.failures, s.wave, s.wave_started_at) == ("Progressing", [], 0, at(30))
    assert s.resume_token == "r1" and moving(s) == ["member-1"]
    # A failure reported after the resume pauses again.
    failed_again = update(failed, "member-1", since=at(40))
    s = step(CANARY_1_BY_2, NEW, failed_again, s, at(50), resume_token="r1")
    assert s.phase == "Paused" and s.failures[0].cluster == "member-1"
    # The same token again does nothing; the cluster recovering and a new token go on.
    s = step(CANARY_1_BY_2, NEW, ready(failed_again, ["member-1"]), s, at(60), resume_token="r1")
    assert s.phase == "Paused"
    s = step(CANARY_1_BY_2, NEW, ready(failed_again, ["member-1"]), s, at(70), resume_token="r2")
    assert (s.phase, s.wave) == ("Progressing", 1)


def test_pause_then_resume_after_a_failure_retries() -> None:
    clusters = fleet(3)
    s = step(CANARY_1_BY_2, NEW, clusters, None, at(0))
    failed = update(clusters, "member-1", state="Failed", state_version=NEW, message="boom", since=at(10))
    s = step(CANARY_1_BY_2, NEW, failed, s, at(20))
    s = step(CANARY_1_BY_2, NEW, failed, s, at(30), paused=True)
    assert s.phase == "Paused" and s.paused_by_user and s.failures
    assert s.message == "paused by user at wave 1/2 of 1.1.0 (member-1 failed: boom)"
    s = step(CANARY_1_BY_2, NEW, failed, s, at(40))
    assert (s.phase, s.failures, s.paused_by_user) == ("Progressing", [], False)


def test_retry_after_rollback_starts_again_with_the_canary_wave() -> None:
    strategy = CANARY_1_BY_2.model_copy(update={"failure_policy": "rollback"})
    clusters = fleet(5)
    s = step(strategy, NEW, clusters, None)
    clusters = ready(clusters, ["member-1"])
    s = step(strategy, NEW, clusters, s, at(10))
    clusters = update(clusters, "member-2", state="Failed", state_version=NEW, message="boom", since=at(15))
    s = step(strategy, NEW, clusters, s, at(20))
    assert s.phase == "RolledBack" and s.wave == 1
    clusters = ready(clusters, ["member-1", "member-2"], OLD, at(25))
    s = step(strategy, NEW, clusters, s, at(30), resume_token="retry-1")
    assert (s.phase, s.wave, moving(s)) == ("Progressing", 0, ["member-1"])


# --- the fleet changes during a rollout ---------------------------------------------------


def test_new_cluster_joining_mid_rollout_lands_in_the_last_wave() -> None:
    clusters = fleet(5)
    s = step(CANARY_1_BY_2, NEW, clusters, None)
    frozen = list(s.waves)
    clusters = [*clusters, view("member-0"), view("member-9", applied=None, state="Pending")]
    s = step(CANARY_1_BY_2, NEW, clusters, s, at(10))
    assert s.waves[:-1] == frozen[:-1]
    assert s.waves[-1] == ["member-0", "member-4", "member-5", "member-9"]
    assert s.assignments["member-0"] == OLD and "member-9" not in s.assignments


def test_cluster_unpinned_while_paused_moves_with_its_running_wave_on_resume() -> None:
    """A pause delays a late joiner of the running wave; it does not subject it to the gate again.

    member-9 is pinned when the rollout starts, so it is in no wave. It loses its pin while the
    last wave runs and the canary is unreachable (which holds the rollout, not the running wave).
    """
    clusters = [*fleet(5), view("member-9", pinned_version=OLD)]
    s = step(CANARY_1_BY_2, NEW, clusters, None)
    assert s.waves == [["member-1"], ["member-2", "member-3"], ["member-4", "member-5"]]
    clusters = ready(clusters, ["member-1"])
    s = step(CANARY_1_BY_2, NEW, clusters, s, at(10))
    clusters = ready(clusters, ["member-2", "member-3"])
    s = step(CANARY_1_BY_2, NEW, clusters, s, at(20))
    assert (s.wave, moving(s)) == (2, ["member-1", "member-2", "member-3", "member-4", "member-5"])
    clusters = update(clusters, "member-1", reachable=False, last_contact=at(25))
    held = step(CANARY_1_BY_2, NEW, clusters, s, at(30))
    assert (held.phase, held.wave) == ("Progressing", 2)

    clusters = update(clusters, "member-9", pinned_version=None)
    s = step(CANARY_1_BY_2, NEW, clusters, held, at(40), paused=True)
    assert s.waves[-1] == ["member-4", "member-5", "member-9"]
    assert s.assignments["member-9"] == OLD, "nothing starts moving while paused"
    s = step(CANARY_1_BY_2, NEW, clusters, s, at(50))
    # The same as losing the pin without the pause: member-9 moves with its wave at once.
    unpaused = step(CANARY_1_BY_2, NEW, clusters, held, at(50))
    assert s.assignments == unpaused.assignments
    assert (s.phase, s.wave, s.assignments["member-9"]) == ("Progressing", 2, NEW)
    assert s.message == "wave 3/3: member-4, member-5, member-9 converging; member-1 unreachable"


def test_removed_cluster_leaves_its_wave_without_reshuffling() -> None:
    clusters = fleet(5)
    s = step(CANARY_1_BY_2, NEW, clusters, None)
    clusters = [c for c in clusters if c.name != "member-3"]
    s = step(CANARY_1_BY_2, NEW, clusters, s, at(10))
    assert s.waves == [["member-1"], ["member-2"], ["member-4", "member-5"]]
    assert "member-3" not in s.assignments


def test_cluster_joining_a_completed_rollout_gets_the_target_directly() -> None:
    clusters = fleet(2)
    s = step(CANARY_1_BY_2, NEW, ready(clusters, ["member-1", "member-2"]), None)
    assert s.phase == "Complete"
    clusters = [*ready(clusters, ["member-1", "member-2"]), view("member-3", applied=None, state="Pending")]
    s = step(CANARY_1_BY_2, NEW, clusters, s, at(10))
    assert s.phase == "Complete" and s.assignments["member-3"] == NEW


def test_completed_rollout_is_not_rolled_back_when_a_cluster_breaks_later() -> None:
    strategy = CANARY_1_BY_2.model_copy(update={"failure_policy": "rollback"})
    clusters = ready(fleet(3), ["member-1", "member-2", "member-3"])
    s = step(strategy, NEW, clusters, RolloutStatus(target_version=OLD))
    assert s.phase == "Complete"
    clusters = update(clusters, "member-2", state="Failed", message="node lost", since=at(3600))
    s = step(strategy, NEW, clusters, s, at(3700))
    assert s.phase == "Complete" and set(s.assignments.values()) == {NEW}


def test_new_version_mid_rollout_keeps_waiting_clusters_on_what_they_were_told() -> None:
    clusters = fleet(5)
    s = step(CANARY_1_BY_2, NEW, clusters, None)
    clusters = ready(clusters, ["member-1"])
    s = step(CANARY_1_BY_2, NEW, clusters, s, at(10))
    assert moving(s) == ["member-1", "member-2", "member-3"]
    # member-2 is still converging to 1.1.0 when 1.2.0 is published.
    clusters = update(clusters, "member-2", state="Progressing", state_version=NEW, since=at(12))
    s = step(CANARY_1_BY_2, "1.2.0", clusters, s, at(20))
    assert (s.target_version, s.wave, s.previous_version) == ("1.2.0", 0, OLD)
    assert s.assignments == {
        "member-1": "1.2.0",
        "member-2": NEW,
        "member-3": NEW,
        "member-4": OLD,
        "member-5": OLD,
    }


# --- rolling back to an earlier version -----------------------------------------------------


def test_rollback_to_an_earlier_version_is_a_new_target_with_the_same_waves() -> None:
    clusters = ready(fleet(5), [f"member-{i}" for i in range(1, 6)])
    s = step(CANARY_1_BY_2, NEW, clusters, RolloutStatus(target_version=OLD))
    assert s.phase == "Complete"
    s = step(CANARY_1_BY_2, OLD, clusters, s, at(100))
    assert (s.target_version, s.previous_version) == (OLD, NEW)
    assert s.waves == [["member-1"], ["member-2", "member-3"], ["member-4", "member-5"]]
    assert moving(s, OLD) == ["member-1"]
    clusters = ready(clusters, ["member-1"], OLD)
    s = step(CANARY_1_BY_2, OLD, clusters, s, at(200))
    assert moving(s, OLD) == ["member-1", "member-2", "member-3"]


def test_reverting_a_bad_canary_passes_the_waves_already_on_the_old_version_at_once() -> None:
    clusters = fleet(6)
    s = step(CANARY_1_BY_2, NEW, clusters, None)
    clusters = ready(clusters, ["member-1"])
    s = step(CANARY_1_BY_2, NEW, clusters, s, at(10))
    # 1.1.0 turns out bad on member-2; git revert puts 1.0.0 back. member-1 (canary) goes back
    # first; once it is Ready at 1.0.0 every other wave is already there except member-2's.
    clusters = update(clusters, "member-2", state="Progressing", state_version=NEW, applied_version=NEW)
    s = step(CANARY_1_BY_2, OLD, clusters, s, at(20))
    assert (s.wave, s.assignments["member-1"]) == (0, OLD)
    clusters = ready(clusters, ["member-1"], OLD)
    s = step(CANARY_1_BY_2, OLD, clusters, s, at(30))
    assert (s.phase, s.wave) == ("Progressing", 1)
    assert s.message == "wave 2/4: member-2 converging"
    clusters = ready(clusters, ["member-2"], OLD)
    s = step(CANARY_1_BY_2, OLD, clusters, s, at(40))
    assert s.phase == "Complete" and set(s.assignments.values()) == {OLD}


# --- properties ----------------------------------------------------------------------------

VERSIONS = ["1.0.0", "1.1.0", "2.0.0"]
NAMES = [f"c{i}" for i in range(10)]
TIMEOUT = 300


@hs.composite
def strategies(draw: hs.DrawFn) -> Rollout:
    canary = draw(
        hs.one_of(
            hs.none(),
            hs.builds(Canary, count=hs.integers(1, 3)),
            hs.just(Canary(selector=LabelSelector(match_labels={"ring": "canary"}))),
        )
    )
    return Rollout(
        canary=canary,
        max_unavailable=draw(hs.one_of(hs.integers(1, 4), hs.sampled_from(["1%", "25%", "50%", "100%"]))),
        failure_policy=draw(hs.sampled_from(["pause", "rollback"])),
        health_timeout_seconds=TIMEOUT,
    )


def new_cluster(data: hs.DataObject, name: str, now: datetime) -> ClusterView:
    applied = data.draw(hs.sampled_from([None, *VERSIONS]))
    return ClusterView(
        name=name,
        labels=data.draw(hs.sampled_from([{}, {"ring": "canary"}])),
        pinned_version=data.draw(hs.sampled_from([None, None, None, *VERSIONS])),
        applied_version=applied,
        state=data.draw(hs.sampled_from(["Pending", "Progressing", "Ready", "Failed"])),
        state_version=applied,
        since=now - timedelta(seconds=data.draw(hs.integers(0, 2 * TIMEOUT))),
    )


def healthy(c: ClusterView, target: str) -> bool:
    return c.reachable and c.state == "Ready" and c.state_version == target and c.applied_version == target


def check_invariants(
    status: RolloutStatus,
    target: str,
    clusters: dict[str, ClusterView],
    previous: RolloutStatus | None,
    previous_clusters: dict[str, ClusterView],
    paused: bool,
    late: set[str],
) -> None:
    # Pinned clusters always get their pin; nothing is assigned to clusters that are gone.
    for c in clusters.values():
        if c.pinned_version is not None:
            assert status.assignments[c.name] == c.pinned_version
    assert set(status.assignments) <= set(clusters)
    assert status.to_wire() == RolloutStatus.model_validate(status.to_wire()).to_wire()

    # At most one wave beyond the fully-Ready waves is newly given the target: a cluster only
    # starts moving to the target when every earlier wave is healthy at it in this very call.
    # The one exception is a late joiner (see ``late_joiners``) of a wave that is running: it
    # moves with that wave, however healthy the earlier waves are now.
    prefix = 0
    for names in status.waves:
        if all(healthy(clusters[n], target) for n in names if clusters[n].pinned_version is None):
            prefix += 1
        else:
            break
    same = previous is not None and previous.target_version == target
    for name, version in status.assignments.items():
        c = clusters[name]
        if c.pinned_version is not None or version != target:
            continue
        before = previous.assignments.get(name, c.applied_version) if previous else c.applied_version
        if before == target:
            continue
        wave = status.wave_of(name)
        assert wave is not None, f"{name} moves to the target without being in a wave"
        if name in late and previous is not None and wave <= min(previous.wave, status.wave):
            continue
        assert wave <= prefix, f"{name} (wave {wave}) moves while only {prefix} waves are Ready: {status}"
        assert not paused, "nothing starts moving while paused"

    # Nothing moves while paused or stopped on a failure.
    resumed = (
        not paused
        and previous is not None
        and (previous.paused_by_user or status.resume_token != previous.resume_token)
    )
    frozen = previous is not None and previous.phase in ("Paused", "Failed", "RolledBack")
    if previous is not None and (paused or (same and frozen)) and not resumed:
        for name, version in previous.assignments.items():
            if name in clusters and clusters[name].pinned_version is None:
                assert status.assignments.get(name) == version
    if status.phase == "Complete":
        assert status.wave == len(status.waves)
        for c in clusters.values():
            if c.pinned_version is None:
                assert status.assignments[c.name] == target
    if status.phase == "Progressing":
        assert status.wave < len(status.waves)


def late_joiners(
    status: RolloutStatus,
    clusters: dict[str, ClusterView],
    previous: RolloutStatus | None,
    previous_clusters: dict[str, ClusterView],
    late: set[str],
) -> set[str]:
    """Clusters that joined a wave after it had started (appeared, or lost their pin, mid-rollout).

    decide.py lets such a cluster move with its running wave without gating it again: at once,
    or, when it joined while the rollout was paused or stopped, when the rollout resumes. It
    stays a late joiner until it has been given the target, the target changes, it leaves or
    it is pinned again.
    """
    if previous is None or previous.target_version != status.target_version:
        return set()
    out: set[str] = set()
    for name, c in clusters.items():
        wave = status.wave_of(name)
        if c.pinned_version is not None or wave is None:
            continue
        joined = name not in previous_clusters or previous_clusters[name].pinned_version is not None
        waiting = previous.assignments.get(name) != status.target_version
        if (name in late and waiting) or (joined and wave <= previous.wave):
            out.add(name)
    return out


def evolve(
    data: hs.DataObject,
    clusters: dict[str, ClusterView],
    target: str,
    previous: RolloutStatus | None,
    now: datetime,
) -> str:
    """One random change to the fleet (or the target) between two decisions; returns the target."""
    event = data.draw(
        hs.sampled_from(["converge"] * 3 + ["state"] * 2 + ["fail", "add", "remove", "pin", "target", "none"]),
        label="event",
    )
    if event == "target":
        return data.draw(hs.sampled_from(VERSIONS))
    if event == "add":
        name = data.draw(hs.sampled_from(NAMES))
        if name not in clusters:
            clusters[name] = new_cluster(data, name, now)
        return target
    if event == "converge" and previous is not None:
        # The members do what they were told and become healthy.
        for name, c in clusters.items():
            if (want := previous.assignments.get(name)) is not None:
                clusters[name] = c.model_copy(
                    update={"applied_version": want, "state_version": want, "state": "Ready", "reachable": True}
                )
        return target
    if not clusters or event not in ("remove", "pin", "state", "fail"):
        return target
    name = data.draw(hs.sampled_from(sorted(clusters)))
    c = clusters[name]
    if event == "remove":
        del clusters[name]
    elif event == "pin":
        clusters[name] = c.model_copy(update={"pinned_version": data.draw(hs.sampled_from([None, *VERSIONS]))})
    elif event == "fail":
        clusters[name] = c.model_copy(
            update={"state": "Failed", "state_version": target, "since": now, "failed_addon": "gpu-operator"}
        )
    else:
        state = data.draw(hs.sampled_from(["Pending", "Progressing", "Ready", "Failed"]))
        version = data.draw(hs.sampled_from([target, *VERSIONS]))
        reachable = data.draw(hs.booleans())
        lost = None if reachable else now - timedelta(seconds=data.draw(hs.integers(0, 400)))
        clusters[name] = c.model_copy(
            update={
                "state": state,
                "state_version": version,
                "applied_version": version if state == "Ready" else c.applied_version,
                "since": now - timedelta(seconds=data.draw(hs.integers(0, TIMEOUT * 2))),
                "reachable": reachable,
                "last_contact": lost,
                "failed_addon": "gpu-operator" if state == "Failed" else None,
            }
        )
    return target


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=hs.data())
def test_property_random_fleets_and_state_sequences(data: hs.DataObject) -> None:
    """Pins always win, no wave starts before the earlier ones are Ready, decide is idempotent."""
    strategy = data.draw(strategies(), label="strategy")
    now = T0
    target = data.draw(hs.sampled_from(VERSIONS), label="target")
    names = data.draw(hs.lists(hs.sampled_from(NAMES), unique=True, max_size=8), label="names")
    clusters = {n: new_cluster(data, n, now) for n in names}
    previous: RolloutStatus | None = None
    previous_clusters: dict[str, ClusterView] = {}
    late: set[str] = set()
    token = 0
    for _ in range(data.draw(hs.integers(1, 20), label="steps")):
        now += timedelta(seconds=data.draw(hs.integers(0, TIMEOUT + 60)))
        target = evolve(data, clusters, target, previous, now)
        paused = data.draw(hs.sampled_from([False, False, False, True]), label="paused")
        token += data.draw(hs.sampled_from([0, 0, 0, 1]), label="resume")
        status = step(strategy, target, list(clusters.values()), previous, now, paused, resume_token=f"t{token}")
        late = late_joiners(status, clusters, previous, previous_clusters, late)
        check_invariants(status, target, clusters, previous, previous_clusters, paused, late)
        hypothesis.event(f"phase {status.phase}")
        if status.wave > 1 and status.phase != "Complete":
            hypothesis.event("wave 3+ reached")
        previous, previous_clusters = status, dict(clusters)


@settings(max_examples=150, deadline=None)
@given(data=hs.data())
def test_property_a_cooperative_fleet_completes_wave_by_wave(data: hs.DataObject) -> None:
    """When every cluster converges to what it is told, each call advances one wave until Complete."""
    strategy = data.draw(strategies())
    names = data.draw(hs.lists(hs.sampled_from(NAMES), unique=True, max_size=10))
    clusters = {n: new_cluster(data, n, T0) for n in names}
    clusters = {
        n: c.model_copy(update={"state": "Ready", "state_version": c.applied_version}) for n, c in clusters.items()
    }
    target = "3.0.0"
    status = step(strategy, target, list(clusters.values()), None)
    for i in range(len(status.waves) + 1):
        if status.phase == "Complete":
            break
        assert status.phase == "Progressing" and status.wave == i
        for name, want in status.assignments.items():
            clusters[name] = clusters[name].model_copy(
                update={"applied_version": want, "state_version": want, "state": "Ready"}
            )
        status = step(strategy, target, list(clusters.values()), status, T0 + timedelta(seconds=10 * (i + 1)))
    assert status.phase == "Complete"
    for c in clusters.values():
        assert status.assignments[c.name] == (c.pinned_version or target)
