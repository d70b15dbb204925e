"""The operator's shard membership (operator/sharding.py): claim, hand-over, drop, leading.

The Lease client and the management store are small fakes here (their real halves are
exercised on real API servers by tests/operator/test_sharding_fleet.py); what is tested is
the order of the steps: a member is dropped (no drift watch, no connection) before it is
handed over, claimed before it is reconciled, and never claimed over a live owner.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from blueprintd.cluster.fence import FencedOut
from blueprintd.operator.sharding import Sharding
from blueprintd.shard.decide import LeaderAction, ReplicaLease, owner_of

NOW = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)


class FakeLeases:
    def __init__(self, replica: str, view: dict[str, ReplicaLease], *, renew_ok: bool = True) -> None:
        self.replica = replica
        self.duration_seconds = 6
        self.view = view
        self.renew_ok = renew_ok
        self.leader: str | None = None
        self.released = False
        self.renewals: list[datetime] = []

    def renew_heartbeat(self, now: datetime) -> bool:
        if self.renew_ok:
            self.view[self.replica] = ReplicaLease(self.replica, now, self.duration_seconds)
            self.renewals.append(now)
        return self.renew_ok

    async def arenew_heartbeat(self, now: datetime) -> bool:
        return self.renew_heartbeat(now)

    def heartbeats(self) -> dict[str, ReplicaLease]:
        return dict(self.view)

    async def aheartbeats(self) -> dict[str, ReplicaLease]:
        return self.heartbeats()

    async def acontend_leader(self, now: datetime) -> tuple[bool, LeaderAction]:
        if self.leader in (None, self.replica):
            self.leader = self.replica
            return True, "renew"
        return False, "follow"

    async def arelease(self) -> None:
        self.released = True


class FakeStore:
    def __init__(self, conflict: bool = False) -> None:
        self.writes: list[tuple[str, dict[str, Any]]] = []
        self.conflict = conflict

    async def write_status_if_unchanged(self, kind: str, obj: dict[str, Any], patch: dict[str, Any]) -> bool:
        if self.conflict:
            return False
        self.writes.append((obj["metadata"]["name"], patch))
        obj.setdefault("status", {}).update(patch)
        return True


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def member(name: str, owner: str = "") -> dict[str, Any]:
    return {"metadata": {"name": name}, "status": {"shard": {"replica": owner}} if owner else {}}


def name_owned_by(replica: str, replicas: list[str]) -> str:
    return next(f"m-{i}" for i in range(1000) if owner_of(f"m-{i}", replicas) == replica)


def setup(
    me: str, others: dict[str, float], *, renew_ok: bool = True, conflict: bool = False
) -> tuple[Sharding, FakeLeases, FakeStore, Clock, list[str]]:
    view = {r: ReplicaLease(r, NOW - timedelta(seconds=age), 6) for r, age in others.items()}
    leases, store, clock = FakeLeases(me, view, renew_ok=renew_ok), FakeStore(conflict), Clock()
    dropped: list[str] = []

    async def lapse_drop(name: str) -> None:
        dropped.append(f"lapsed:{name}")

    shard = Sharding(leases, store, clock, drop=lapse_drop)  # type: ignore[arg-type]
    asyncio.run(shard.beat())
    return shard, leases, store, clock, dropped


def admit(shard: Sharding, raw: dict[str, Any], dropped: list[str]) -> bool:
    async def drop(name: str) -> None:
        dropped.append(name)

    return asyncio.run(shard.admit(raw, drop))


def test_the_owner_claims_an_unowned_member_then_reconciles_it() -> None:
    shard, _, store, _, dropped = setup("a", {"b": 1})
    m = member(name_owned_by("a", ["a", "b"]))
    assert admit(shard, m, dropped)
    assert store.writes == [
        (m["metadata"]["name"], {"shard": {"replica": "a", "since": store.writes[0][1]["shard"]["since"]}})
    ]
    assert admit(shard, m, dropped) and len(store.writes) == 1  # claimed once, not on every resync


def test_a_lost_claim_race_means_no_reconcile() -> None:
    shard, _, _, _, dropped = setup("a", {"b": 1}, conflict=True)
    assert not admit(shard, member(name_owned_by("a", ["a", "b"])), dropped)


def test_a_replica_waits_for_a_live_previous_owner() -> None:
    shard, _, store, _, dropped = setup("a", {"b": 1})
    assert not admit(shard, member(name_owned_by("a", ["a", "b"]), owner="b"), dropped)
    assert store.writes == [] and dropped == []


def test_it_takes_over_from_an_expired_owner() -> None:
    shard, _, store, _, dropped = setup("a", {"b": 7})  # b's Lease (6 s) expired
    m = member(name_owned_by("a", ["a"]), owner="b")
    assert admit(shard, m, dropped)
    assert store.writes[0][1]["shard"]["replica"] == "a"


def test_a_member_that_moved_is_dropped_then_handed_over() -> None:
    shard, _, store, _, dropped = setup("a", {"b": 1})
    name = name_owned_by("b", ["a", "b"])
    assert not admit(shard, member(name, owner="a"), dropped)
    assert dropped == [name]
    assert store.writes == [(name, {"shard": None})]


def test_an_owner_that_cannot_renew_stops_and_drops_its_members() -> None:
    shard, leases, store, clock, dropped = setup("a", {})
    m = member(name_owned_by("a", ["a"]), owner="a")
    assert admit(shard, m, dropped)
    leases.renew_ok = False
    clock.now = NOW + timedelta(seconds=4.5)  # past duration - margin (6 - 2)
    asyncio.run(shard.beat())
    # dropped by the heartbeat that found the Lease lapsed, before the next admit
    assert dropped == [f"lapsed:{m['metadata']['name']}"]
    assert not admit(shard, m, dropped)
    assert dropped == [f"lapsed:{m['metadata']['name']}"] and store.writes == []


def test_leading_needs_a_fresh_leader_renewal() -> None:
    shard, leases, _, clock, _ = setup("a", {})
    assert shard.leading()
    clock.now = NOW + timedelta(seconds=5)
    assert not shard.leading()
    leases.leader = "b"
    asyncio.run(shard.beat())
    assert not shard.leading()


def test_stop_releases_the_leases() -> None:
    shard, leases, _, _, _ = setup("a", {})
    asyncio.run(shard.stop())
    assert leases.released and not shard.leading()


def test_writes_pass_the_fence_only_for_a_held_member_with_a_fresh_lease() -> None:
    shard, _, _, clock, dropped = setup("a", {"b": 1})
    mine, theirs = name_owned_by("a", ["a", "b"]), name_owned_by("b", ["a", "b"])
    with pytest.raises(FencedOut, match="let go of it"):
        shard.write_check(mine)()  # not admitted yet: nothing may be written
    assert admit(shard, member(mine), dropped)
    shard.write_check(mine)()  # held, owner, renewed 0 s ago
    with pytest.raises(FencedOut):
        shard.write_check(theirs)()
    clock.now = NOW + timedelta(seconds=4.5)  # no renewal for more than duration - margin
    with pytest.raises(FencedOut, match="own Lease not renewed recently"):
        shard.write_check(mine)()


def test_a_resumed_replica_lets_go_before_it_renews_so_queued_writes_stay_fenced() -> None:
    """SIGSTOP past the Lease, then SIGCONT: whichever runs first — a write queued before the
    pause or the heartbeat — the write is not sent. The heartbeat lets go of every held member
    before it renews, so a fresh renewal does not reopen the fence for them."""
    shard, _, store, clock, dropped = setup("a", {"b": 1})
    mine = name_owned_by("a", ["a", "b"])
    assert admit(shard, member(mine), dropped)
    queued = shard.write_check(mine)  # the check a pending restore holds
    clock.now = NOW + timedelta(seconds=12)  # paused for two Lease durations; b took over
    with pytest.raises(FencedOut):
        queued()  # the write runs before the heartbeat
    asyncio.run(shard.beat())  # the heartbeat runs: renews, and b's Lease looks expired (age 13 s)
    assert dropped == [f"lapsed:{mine}"]
    with pytest.raises(FencedOut, match="let go of it"):
        queued()  # the write runs after the heartbeat: still not sent
    # The member comes back only through admit, which respects a recorded live owner.
    shard.leases.view["b"] = ReplicaLease("b", clock.now, 6)  # type: ignore[attr-defined]
    asyncio.run(shard.refresh())
    assert not admit(shard, member(mine, owner="b"), dropped)
    assert store.writes == [(mine, store.writes[0][1])]  # only the first claim, long before the pause


def test_a_fresh_replica_keeps_its_members_across_heartbeats() -> None:
    shard, _, _, clock, dropped = setup("a", {})
    mine = name_owned_by("a", ["a"])
    assert admit(shard, member(mine), dropped)
    for step in range(1, 6):  # renewed every 2 s (duration/3): never stale
        clock.now = NOW + timedelta(seconds=2 * step)
        asyncio.run(shard.beat())
        shard.write_check(mine)()
    assert dropped == []


# --- the heartbeat watchdog (Lease 6 s: beats every 2 s, fresh below 4 s, rescued from 3 s) ---


def test_a_late_heartbeat_is_renewed_from_the_watchdog_thread_and_the_members_stay() -> None:
    """The event loop is busy past its beat: the thread renews, so the fence keeps passing and
    no member is let go of for nothing."""
    shard, leases, _, clock, dropped = setup("a", {})
    m = name_owned_by("a", ["a"])
    assert admit(shard, member(m), dropped)
    clock.now = NOW + timedelta(seconds=1)
    assert not shard.rescue(), "the loop's beat is on time: the thread writes nothing"
    clock.now = NOW + timedelta(seconds=3.5)
    assert shard.rescue() and leases.renewals[-1] == clock.now and shard.rescued == 1
    assert shard._view["a"].renew_time == clock.now, "the fence's view is listed again too"
    clock.now = NOW + timedelta(seconds=6)  # 6 s after the loop's last beat, 2.5 s after the rescue
    shard.write_check(m)()  # still fresh: not fenced
    asyncio.run(shard.beat())
    assert dropped == [], "nothing was let go of"


def test_a_lapsed_lease_is_never_renewed_by_the_watchdog_while_members_are_held() -> None:
    """After a pause past the fresh window, the loop's beat must let go of the members before
    anything renews (the write fence relies on it): the thread leaves the Lease alone."""
    shard, leases, _, clock, dropped = setup("a", {})
    m = name_owned_by("a", ["a"])
    assert admit(shard, member(m), dropped)
    before = len(leases.renewals)
    clock.now = NOW + timedelta(seconds=5)
    assert not shard.rescue() and len(leases.renewals) == before
    with pytest.raises(FencedOut):
        shard.write_check(m)()
    asyncio.run(shard.beat())
    assert dropped == [f"lapsed:{m}"], "the beat lets go first, then renews"
    clock.now = NOW + timedelta(seconds=8.5)  # lapsed again, but nothing is held now
    assert shard.rescue(), "with no member held, renewing late is harmless"


def test_the_watchdog_thread_runs_from_start_to_stop() -> None:
    async def scenario() -> None:
        leases = FakeLeases("a", {})
        shard = Sharding(leases, FakeStore())  # type: ignore[arg-type]
        await shard.start()
        assert shard._watchdog is not None and shard._watchdog.is_alive()
        await shard.stop()
        shard._watchdog.join(timeout=5)
        assert not shard._watchdog.is_alive() and leases.released

    asyncio.run(scenario())
