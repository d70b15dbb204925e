"""Restore retries (pure): backoff per drift, one report per failure, no write loop."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from blueprintd.drift.retry import INEFFECTIVE, RestoreBackoff, signature


@dataclass
class D:
    path: str
    expected: Any
    actual: Any


def backoff() -> RestoreBackoff:
    return RestoreBackoff(base=5.0, cap=300.0, confirm=1.0, jitter=lambda _lo, _hi: 1.0)


SIG = signature([D("spec.cdi.default", None, False)])
OTHER = signature([D("spec.cdi.default", None, True)])


def test_a_new_drift_is_restored_at_once() -> None:
    b = backoff()
    assert b.decide("t", SIG, 0.0) == (0.0, "")
    assert b.first_attempt("t")


def test_a_failing_restore_backs_off_exponentially_and_is_reported_once() -> None:
    b = backoff()
    b.decide("t", SIG, 0.0)
    delays, reports = [], []
    now = 0.0
    for _ in range(9):
        delay, report = b.failed("t", SIG, "HTTP 422: spec.devicePlugin.config.default must be of type string", now)
        delays.append(delay)
        reports.append(report)
        assert b.decide("t", SIG, now + delay / 2)[0] > 0, "not retried before the backoff elapsed"
        now += delay
        assert b.decide("t", SIG, now) == (0.0, "")
    assert delays == [5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 300.0, 300.0, 300.0]
    assert reports[0].startswith("HTTP 422") and reports[1:] == [""] * 8
    assert not b.first_attempt("t")
    # Six failed writes in 30 s were the loop of issue 18; now there are at most three.
    assert sum(1 for t in _attempt_times(delays) if t <= 30.0) <= 3


def _attempt_times(delays: list[float]) -> list[float]:
    out, t = [0.0], 0.0
    for d in delays:
        t += d
        out.append(t)
    return out


def test_a_changed_failure_message_is_reported_again() -> None:
    b = backoff()
    b.decide("t", SIG, 0.0)
    assert b.failed("t", SIG, "a", 0.0)[1] == "a"
    assert b.failed("t", SIG, "a", 5.0)[1] == ""
    assert b.failed("t", SIG, "b", 15.0)[1] == "b"


def test_another_change_starts_afresh_and_resolution_forgets() -> None:
    b = backoff()
    b.decide("t", SIG, 0.0)
    b.failed("t", SIG, "x", 0.0)
    assert b.decide("t", OTHER, 1.0) == (0.0, ""), "a new change is restored at once"
    b.failed("t", OTHER, "x", 1.0)
    b.resolved("t")
    assert b.decide("t", OTHER, 2.0) == (0.0, "") and b.failures("t") == 0


def test_a_restore_that_does_not_take_effect_counts_as_a_failure() -> None:
    """The restore "succeeded", yet the same drift is still there after the confirmation
    window: another writer sets it. Reported once, then retried with backoff, not in a loop."""
    b = backoff()
    b.decide("t", SIG, 0.0)
    assert b.succeeded("t", SIG, 0.0) == 1.0
    assert b.decide("t", SIG, 0.5) == (0.5, ""), "the restore's own watch event may still come"
    wait, report = b.decide("t", SIG, 1.2)
    assert (wait, report) == (5.0, INEFFECTIVE)
    assert b.decide("t", SIG, 6.2) == (0.0, "")
    b.succeeded("t", SIG, 6.25)
    wait, report = b.decide("t", SIG, 7.5)
    assert (wait, report) == (10.0, ""), "the same failure is not reported twice"


def test_a_failure_message_says_what_failed_and_why() -> None:
    from blueprintd.api.ref import ObjectRef
    from blueprintd.cluster.objects import ApplyError
    from blueprintd.drift.detect import Target, release_target
    from blueprintd.drift.monitor import restore_failure

    ds = Target("rendered", ObjectRef("apps/v1", "DaemonSet", "gpu-operator", "nfd-worker"))
    msg = restore_failure(ds, KeyError("resources"))
    assert msg.startswith("restoring DaemonSet gpu-operator/nfd-worker failed: unexpected KeyError")
    assert msg != "restore failed: 'resources'" and "operator log" in msg
    refused = ApplyError('applying ClusterPolicy cluster-policy: ... must be of type string')
    assert restore_failure(Target("rendered", ObjectRef("nvidia.com/v1", "ClusterPolicy", "", "cluster-policy")),
                           refused) == f"restoring ClusterPolicy cluster-policy failed: {refused}"
    assert restore_failure(release_target("kai", "kai"), refused).startswith("restoring Helm release kai/kai failed")
