"""Sharded operator replicas: heartbeat, leader contention and the member fence, wired.

The rules are ``blueprintd.shard.decide``'s; the Lease I/O is ``blueprintd.cluster.lease``.
This module keeps the last Lease view, renews this replica's Leases every duration/3 in
the background, and answers the controller's two questions: may this replica touch this
member now (claiming or handing it over in MemberCluster ``status.shard`` as needed), and
does it lead (Blueprint-level work). docs/ha.md describes the whole scheme.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from blueprintd.cluster.fence import FencedOut, WriteCheck
from blueprintd.cluster.lease import LeaseClient
from blueprintd.cluster.management import ManagementStore
from blueprintd.shard.decide import Fence, ReplicaLease, fence

log = logging.getLogger("blueprintd.shard")

Drop = Callable[[str], Awaitable[None]]


def utcnow() -> datetime:
    return datetime.now(UTC)


def recorded_owner(raw: dict[str, Any]) -> str:
    return str(((raw.get("status") or {}).get("shard") or {}).get("replica") or "")


class Sharding:
    """One replica's membership in the shard group."""

    def __init__(
        self,
        leases: LeaseClient,
        store: ManagementStore,
        clock: Callable[[], datetime] = utcnow,
        *,
        drop: Drop | None = None,
    ) -> None:
        """``drop``: stops all work on a member (drift watch, connection); called for every
        member this replica holds when it finds its own Lease lapsed (see ``beat``)."""
        self.leases = leases
        self.store = store
        self.drop = drop
        self.replica = leases.replica
        self.duration = float(leases.duration_seconds)
        self.margin = self.duration / 3
        self.clock = clock
        self._view: dict[str, ReplicaLease] = {}
        self._own_renewed: datetime | None = None
        self._leader_renewed: datetime | None = None
        self._held: set[str] = set()  # members this replica reconciles now
        self._task: asyncio.Task[None] | None = None
        self._watchdog: threading.Thread | None = None
        self._stopping = threading.Event()
        self.rescued = 0  # renewals the watchdog made because the loop's heartbeat was late

    # --- heartbeat ---------------------------------------------------------------------------

    async def beat(self) -> None:
        """Renew the heartbeat, contend for the leader Lease, list every heartbeat.

        A replica whose last renewal is no longer fresh (it was paused, starved or cut off
        from the management API past ``duration - margin``) may have been replaced: it lets
        go of every member it holds *before* it renews — synchronously, before the first
        await — so the write fence (``write_check``) fails for them from that moment on, in
        whichever order the resumed process runs its queued work. It claims them again
        through ``admit``, once their recorded owner handed them back."""
        started = self.clock()
        if self._held and not self._fresh(self._own_renewed):
            lapsed = sorted(self._held)
            self._held.clear()
            log.warning(
                "replica %s: own Lease not renewed since %s; letting go of %d member(s) before renewing",
                self.replica,
                self._own_renewed,
                len(lapsed),
            )
            if self.drop is not None:
                for name in lapsed:
                    await self.drop(name)
        if await self.leases.arenew_heartbeat(started):
            self._renewed(started)
        leading, action = await self.leases.acontend_leader(started)
        was = self.leading()
        self._leader_renewed = started if leading else None
        if self.leading() != was:
            log.info("replica %s %s the leader Lease (%s)", self.replica, "holds" if leading else "lost", action)
        await self.refresh()

    async def refresh(self) -> None:
        self._view = await self.leases.aheartbeats()

    async def start(self) -> None:
        """First heartbeat now (so the replica knows its peers before its first reconcile),
        then every duration/3 in the background."""
        try:
            await self.beat()
        except Exception:
            log.exception("replica %s: first heartbeat failed; retrying", self.replica)
        self._task = asyncio.get_running_loop().create_task(self._loop())
        self._stopping.clear()
        self._watchdog = threading.Thread(target=self._watch, name=f"heartbeat-{self.replica}", daemon=True)
        self._watchdog.start()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.duration / 3)
            try:
                await self.beat()
            except Exception as exc:  # the management API is down: stop acting when the Lease ages
                log.warning("replica %s: heartbeat failed: %s", self.replica, exc)

    # --- the watchdog -------------------------------------------------------------------------

    def rescue(self) -> bool:
        """Renew the own heartbeat from the watchdog thread when the event loop's heartbeat is
        late; True when it did.

        The heartbeat runs on the event loop, every duration/3. When the loop is busy (a long
        render, many members' JSON, a machine short of CPU: bench_scale at 50 members on two
        cores), the beat came 11 to 14 s apart and the replica let go of all its members for
        nothing, again and again. A thread is scheduled however busy the loop is (Python
        switches threads every few milliseconds), so it renews when the last renewal is older
        than duration/2. It never renews a lapsed Lease (older than duration - margin) while
        this replica still holds members: that is the case the loop's beat handles, letting
        go of them *before* it renews, the rule the write fence relies on after a pause."""
        renewed = self._own_renewed
        if renewed is None:
            return False  # not started, or stopped
        now = self.clock()
        age = (now - renewed).total_seconds()
        if age < self.duration / 2 or (self._held and not self._fresh(renewed)):
            return False
        if not self.leases.renew_heartbeat(now):
            return False
        if self._own_renewed is not None:  # (not stopped meanwhile)
            self._renewed(now)
        self.rescued += 1
        # The view the fence reads is as old as the late beat: peers' Leases too (a live peer
        # would look expired, its members claimable). Listed again here, rebound whole.
        self._view = self.leases.heartbeats()
        log.info("replica %s: heartbeat %.1f s old, renewed from its own thread (event loop busy)", self.replica, age)
        return True

    def _renewed(self, at: datetime) -> None:
        """Record a renewal that started at ``at``. The loop's beat and the watchdog renew
        independently; the later start wins, so a slow beat never makes the Lease look older."""
        if self._own_renewed is None or at > self._own_renewed:
            self._own_renewed = at

    def _watch(self) -> None:
        while not self._stopping.wait(self.duration / 12):
            try:
                self.rescue()
            except Exception as exc:  # the management API is down: the loop's beat says so
                log.debug("replica %s: watchdog renewal failed: %s", self.replica, exc)

    async def stop(self) -> None:
        """Graceful stop: no more heartbeats, and the Leases deleted so others take over now."""
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._own_renewed = self._leader_renewed = None
        await self.leases.arelease()
        log.info("replica %s: stopped; released its Leases", self.replica)

    # --- questions ---------------------------------------------------------------------------

    def _fresh(self, renewed: datetime | None) -> bool:
        return renewed is not None and (self.clock() - renewed).total_seconds() < self.duration - self.margin

    def leading(self) -> bool:
        """Rule 4: this replica holds the leader Lease and renewed it recently."""
        return self._fresh(self._leader_renewed)

    def verdict(self, member: str, recorded: str) -> Fence:
        return fence(self.replica, member, self._view, recorded, self.clock(), self._own_renewed, self.margin)

    def write_check(self, member: str) -> WriteCheck:
        """The fence every write to ``member`` passes right before it is sent (see
        ``blueprintd.cluster.fence``): this replica still holds the member, is its owner in the
        last view, and renewed its own Lease recently (rule 3a/3b, judged on this process's
        clock, with no I/O). Raises ``FencedOut`` otherwise."""

        def check() -> None:
            if member not in self._held:
                raise FencedOut(member, "let go of it")
            v = self.verdict(member, self.replica)
            if not v.allowed:
                raise FencedOut(member, v.reason)

        return check

    def live(self) -> list[str]:
        now = self.clock()
        return sorted(h for h, lease in self._view.items() if (e := lease.expires()) is not None and e > now)

    async def admit(self, raw: dict[str, Any], drop: Drop) -> bool:
        """May this replica reconcile the member ``raw`` now (rule 3)? Claims it first when it
        is newly this replica's; hands it over (after ``drop``: no more drift watching or member
        connection) when it no longer is."""
        name = raw["metadata"]["name"]
        recorded = recorded_owner(raw)
        v = self.verdict(name, recorded)
        if v.allowed and v.claim:
            # Judge the previous owner on a fresh read of the Leases, not one up to duration/3 old.
            await self.refresh()
            v = self.verdict(name, recorded)
        if not v.allowed:
            if name in self._held or v.release:
                self._held.discard(name)
                await drop(name)
                log.info("replica %s: stopped reconciling member %s (%s)", self.replica, name, v.reason)
            if v.release and await self.store.write_status_if_unchanged("MemberCluster", raw, {"shard": None}):
                log.info("replica %s: handed member %s over to %s", self.replica, name, v.owner)
            return False
        if v.claim:
            patch = {"shard": {"replica": self.replica, "since": utcnow().strftime("%Y-%m-%dT%H:%M:%SZ")}}
            if not await self.store.write_status_if_unchanged("MemberCluster", raw, patch):
                return False  # another replica wrote it first: judged again on the next resync
            log.info("replica %s: claimed member %s (was %s)", self.replica, name, recorded or "unowned")
        self._held.add(name)
        return True
