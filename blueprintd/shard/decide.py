"""Which replica reconciles which member, and who leads: pure rules over Lease snapshots.

Every replica holds a heartbeat Lease (``holderIdentity`` = its replica id, ``renewTime``,
``leaseDurationSeconds``) in the operator namespace and renews it every duration/3. From the
Leases any replica computes, with no further coordination:

1. **Live set.** A replica is live at ``now`` when ``renewTime + leaseDurationSeconds > now``.
   A Lease without a renew time or holder is not live.
2. **Owner.** A member's owner is the live replica with the highest rendezvous weight
   ``sha256(replica + "\\0" + member)`` (highest-random-weight hashing; ties broken by the
   replica id). A replica joining takes only the members for which it now has the highest
   weight; a replica leaving gives only its own members away, spread over the others. No
   member moves between two replicas that both stay.
3. **Fencing.** Replica ``me`` may touch (reconcile, drift-watch, write to) a member only when
   all of these hold:

   a. ``me`` is the member's owner in its own view (rule 2);
   b. its own Lease was renewed, by itself, less than ``duration - margin`` ago (a replica
      that was paused or cut off from the management API stops before others may consider
      it expired: they wait the full ``duration``);
   c. the owner recorded in the MemberCluster's status (``status.shard.replica``) is ``me``,
      or empty, or a replica that is not live (its Lease expired or was deleted).

   So the previous owner stops before the next one starts: a replica that sees it is no
   longer the owner stops drift-watching the member and clears the recorded owner (hands
   over); a replica that died is replaced once its Lease expired. The claim itself
   (writing ``status.shard.replica = me``) carries the MemberCluster's resourceVersion, so
   of two replicas whose views briefly differ only one claim succeeds.
4. **Leader.** Blueprint-level work (capturing revisions, rollout decisions, GitSource
   syncs) is done by the holder of one leader Lease. Deriving the leader by hashing a fixed
   key over the live set would be simpler, but two replicas with briefly different views
   would both lead; a single Lease object, taken over only when expired and only with an
   update that carries its resourceVersion, has at most one holder at a time — the API
   server's optimistic concurrency decides. The holder renews it with its heartbeat and
   acts only while its renewal is fresh (as rule 3b).

Clocks: expiry compares a Lease's ``renewTime`` (written by its holder) with the reader's
clock, as client-go's leader election does; replicas are assumed to have clocks within a
small fraction of the Lease duration of each other.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

__all__ = [
    "Fence",
    "LeaderAction",
    "ReplicaLease",
    "assignment",
    "fence",
    "is_live",
    "leader_action",
    "live_replicas",
    "owner_of",
    "weight",
]


@dataclass(frozen=True)
class ReplicaLease:
    """The fields of a coordination.k8s.io/v1 Lease that the rules read."""

    holder: str
    renew_time: datetime | None
    duration_seconds: float

    def expires(self) -> datetime | None:
        if self.renew_time is None:
            return None
        return self.renew_time + timedelta(seconds=self.duration_seconds)


def is_live(lease: ReplicaLease, now: datetime) -> bool:
    """Rule 1."""
    expires = lease.expires()
    return bool(lease.holder) and expires is not None and expires > now


def live_replicas(leases: Iterable[ReplicaLease], now: datetime) -> frozenset[str]:
    """Rule 1 over every heartbeat Lease."""
    return frozenset(lease.holder for lease in leases if is_live(lease, now))


def weight(replica: str, member: str) -> int:
    """Rendezvous weight of ``replica`` for ``member``: stable across processes and versions."""
    digest = hashlib.sha256(f"{replica}\0{member}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def owner_of(member: str, replicas: Iterable[str]) -> str | None:
    """Rule 2: the live replica that owns ``member``; None when no replica is live."""
    best: tuple[int, str] | None = None
    for replica in replicas:
        key = (weight(replica, member), replica)
        if best is None or key > best:
            best = key
    return None if best is None else best[1]


def assignment(members: Iterable[str], replicas: Iterable[str]) -> dict[str, str | None]:
    """Rule 2 for many members at once (for status views and tests)."""
    live = list(replicas)
    return {m: owner_of(m, live) for m in members}


@dataclass(frozen=True)
class Fence:
    """Rule 3's verdict for one member, with the reason a log line or test can show."""

    allowed: bool
    owner: str | None  # the owner in this replica's view
    claim: bool = False  # allowed, and the recorded owner is not yet this replica: write it first
    release: bool = False  # not the owner, but still recorded as owner: hand the member over
    reason: str = ""


def fence(
    me: str,
    member: str,
    leases: Mapping[str, ReplicaLease],
    recorded_owner: str,
    now: datetime,
    own_renewed: datetime | None,
    margin_seconds: float,
) -> Fence:
    """Rule 3: may ``me`` touch ``member`` now?

    ``leases``: the heartbeat Leases by holder, as last listed; ``recorded_owner``: the
    MemberCluster's ``status.shard.replica``; ``own_renewed``: when this replica's own renewal
    last succeeded (its clock); ``margin_seconds``: how long before its Lease's expiry a
    replica stops."""
    live = live_replicas(leases.values(), now)
    owner = owner_of(member, live)
    if owner != me:
        return Fence(
            False,
            owner,
            release=recorded_owner == me,
            reason=f"owned by {owner}" if owner else "no live replica",
        )
    own = leases.get(me)
    duration = own.duration_seconds if own is not None else 0.0
    fresh = own_renewed is not None and (now - own_renewed).total_seconds() < duration - margin_seconds
    if not fresh:
        return Fence(False, owner, reason="own Lease not renewed recently")
    if recorded_owner and recorded_owner != me and recorded_owner in live:
        return Fence(False, owner, reason=f"{recorded_owner} still holds it (its Lease is live)")
    return Fence(True, owner, claim=recorded_owner != me, reason="owner")


LeaderAction = Literal["create", "renew", "take-over", "follow"]


def leader_action(me: str, lease: ReplicaLease | None, now: datetime) -> LeaderAction:
    """Rule 4: what ``me`` does with the leader Lease (``None``: it does not exist yet).

    The write that follows carries the Lease's resourceVersion (or is a create): when it
    conflicts, another replica won and ``me`` follows."""
    if lease is None:
        return "create"
    if lease.holder == me:
        return "renew"
    if not is_live(lease, now):
        return "take-over"
    return "follow"
