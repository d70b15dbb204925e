"""The chaos driver (``make chaos``) end to end with tiny parameters, so CI proves it works.

Three api-only members, three sharded replicas, two SIGKILLs, a management API server and
etcd restart, a 10 s member outage, a 5 s network cut through the TCP proxy and a SIGSTOP
past the Lease, during a rollout per fault. Every goal of the full run must hold here too.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from benchmarks.chaos import Config, report, run
from blueprintd.devfleet.audit import AuditEvent
from blueprintd.devfleet.chaos import replica_of, writer_blocks, writes_after_takeover


def _write(replica: str, second: float) -> AuditEvent:
    at = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=second)
    return AuditEvent(
        user="op",
        verb="patch",
        resource="configmaps",
        namespace="n",
        name="x",
        subresource="",
        code=200,
        uri="/",
        user_agent=f"blueprintd-operator/{replica} (linux)" if replica else "kubectl/v1",
        time=at.isoformat().replace("+00:00", "Z"),
    )


def test_writes_are_attributed_and_folded_per_replica() -> None:
    writes = [_write("r1", 0), _write("r1", 1), _write("r2", 5), _write("r1", 6), _write("", 7)]
    assert [replica_of(w) for w in writes] == ["r1", "r1", "r2", "r1", ""]
    assert [b[0] for b in writer_blocks(writes)] == ["r1", "r2", "r1", ""]


def test_a_write_after_the_takeover_within_the_window_is_found() -> None:
    since = datetime(2026, 1, 1, tzinfo=UTC)
    writes = [_write("r1", 1), _write("r2", 5), _write("r1", 6), _write("r1", 20)]
    late = writes_after_takeover(writes, "r1", since, window_s=5)
    assert [w.time for w in late] == [writes[2].time]  # 1 s after r2's first write; 20 s is outside
    assert writes_after_takeover(writes[:1], "r1", since, window_s=5) == []  # nobody took over


@pytest.mark.fleet
@pytest.mark.timeout(600)  # seven rollouts with faults: about 3 min alone, more on a busy 2-core machine
def test_chaos_driver_meets_its_goals_on_a_tiny_fleet(tmp_path: Path) -> None:
    cfg = Config(members=3, kills=2, seed=7, member_outage_s=10, net_cut_s=5, converge_timeout_s=180, out=None,
                 logs=tmp_path / "replicas")
    result = run(cfg)
    text = report(result) + _complaints(cfg.logs)
    print(text)
    faults = [p.fault for p in result.phases]
    assert {"kill 1", "kill 2", "management restart", "member down", "network cut", "sigstop"} <= set(faults)
    assert result.attributed_writes > 0
    assert result.drift_expected, "no drift was made before a kill"
    # Includes the SIGSTOP goal: the resumed replica sends no write to a member it lost
    # (blueprintd/cluster/fence.py).
    assert result.failures() == [], text
    assert result.paused_late_writes == [], text


def _complaints(logs: Path | None, last: int = 40) -> str:
    """The replicas' last warnings and errors: what a failed goal's cause is usually in."""
    lines = [
        f"{log.stem}: {line}"
        for log in sorted(logs.glob("*.log")) if logs
        for line in log.read_text(errors="replace").splitlines()
        if " WARNING " in line or " ERROR " in line
    ]
    return f"\n## Replica warnings and errors (last {last})\n\n" + "\n".join(lines[-last:]) if lines else ""


def test_every_goal_that_fails_is_listed() -> None:
    from benchmarks.chaos import Phase, Result

    result = Result(Config(out=None), phases=[Phase("kill 1", "1.1.0", converge_s=None,
                                                    lagging=["m1 (r2): 1.0.0 Failed: boom"])])
    result.paused_late_writes = ["m1: patch configmaps/x by r3 at t"]
    result.unfenced = ["m2: patch by r1 while r2 owned it"]
    assert result.failures() == [
        "kill 1 1.1.0: not converged (m1 (r2): 1.0.0 Failed: boom)",
        "unfenced write: m2: patch by r1 while r2 owned it",
        "write after losing the Lease: m1: patch configmaps/x by r3 at t",
    ]
