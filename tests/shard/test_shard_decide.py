"""The sharding rules (blueprintd.shard.decide): live set, rendezvous owners, fence, leader."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from blueprintd.shard.decide import (
    ReplicaLease,
    assignment,
    fence,
    is_live,
    leader_action,
    live_replicas,
    owner_of,
)

NOW = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)
MEMBERS = [f"member-{i:03d}" for i in range(300)]


def lease(holder: str, age: float, duration: float = 15.0) -> ReplicaLease:
    return ReplicaLease(holder, NOW - timedelta(seconds=age), duration)


def leases(*items: ReplicaLease) -> dict[str, ReplicaLease]:
    return {item.holder: item for item in items}


# --- rule 1: live set ----------------------------------------------------------------------


def test_a_lease_is_live_until_renew_plus_duration() -> None:
    assert is_live(lease("a", 14.9), NOW)
    assert not is_live(lease("a", 15.0), NOW)  # expires exactly at renew + duration
    assert not is_live(lease("a", 60), NOW)


def test_a_lease_without_renew_time_or_holder_is_not_live() -> None:
    assert not is_live(ReplicaLease("a", None, 15), NOW)
    assert not is_live(ReplicaLease("", NOW, 15), NOW)


def test_live_set_is_the_unexpired_holders() -> None:
    assert live_replicas([lease("a", 1), lease("b", 20), lease("c", 3, duration=4)], NOW) == {"a", "c"}


# --- rule 2: rendezvous owner ---------------------------------------------------------------


def test_no_live_replica_means_no_owner() -> None:
    assert owner_of("m", []) is None


def test_the_owner_is_one_of_the_live_replicas_and_does_not_depend_on_their_order() -> None:
    for m in MEMBERS[:50]:
        assert owner_of(m, ["a", "b", "c"]) == owner_of(m, ["c", "a", "b"]) in {"a", "b", "c"}


def test_members_spread_over_replicas() -> None:
    counts = Counter(assignment(MEMBERS, ["r1", "r2", "r3"]).values())
    assert set(counts) == {"r1", "r2", "r3"}
    assert min(counts.values()) > len(MEMBERS) / 3 * 0.7  # roughly a third each


def test_a_replica_leaving_moves_only_its_own_members() -> None:
    before = assignment(MEMBERS, ["r1", "r2", "r3"])
    after = assignment(MEMBERS, ["r1", "r3"])
    moved = {m for m in MEMBERS if before[m] != after[m]}
    assert moved == {m for m in MEMBERS if before[m] == "r2"}
    assert {after[m] for m in moved} == {"r1", "r3"}  # spread, not dumped on one replica


def test_a_replica_joining_takes_only_members_for_itself() -> None:
    before = assignment(MEMBERS, ["r1", "r2", "r3"])
    after = assignment(MEMBERS, ["r1", "r2", "r3", "r4"])
    moved = {m for m in MEMBERS if before[m] != after[m]}
    assert moved and all(after[m] == "r4" for m in moved)
    assert len(moved) < len(MEMBERS) / 2


# --- rule 3: fence --------------------------------------------------------------------------


def owned_by(replica: str, replicas: list[str]) -> str:
    return next(m for m in MEMBERS if owner_of(m, replicas) == replica)


def test_the_owner_with_a_fresh_lease_claims_an_unowned_member() -> None:
    m = owned_by("a", ["a", "b"])
    v = fence("a", m, leases(lease("a", 1), lease("b", 1)), "", NOW, NOW - timedelta(seconds=1), 5)
    assert v.allowed and v.claim and v.owner == "a"


def test_the_recorded_owner_goes_on_without_claiming_again() -> None:
    m = owned_by("a", ["a", "b"])
    v = fence("a", m, leases(lease("a", 1), lease("b", 1)), "a", NOW, NOW - timedelta(seconds=1), 5)
    assert v.allowed and not v.claim


def test_a_replica_that_is_not_the_owner_may_not_touch_the_member() -> None:
    m = owned_by("b", ["a", "b"])
    v = fence("a", m, leases(lease("a", 1), lease("b", 1)), "", NOW, NOW, 5)
    assert not v.allowed and not v.release and v.owner == "b"


def test_the_previous_owner_hands_over_when_it_is_no_longer_the_owner() -> None:
    m = owned_by("b", ["a", "b"])
    v = fence("a", m, leases(lease("a", 1), lease("b", 1)), "a", NOW, NOW, 5)
    assert not v.allowed and v.release


def test_the_new_owner_waits_while_the_recorded_owner_is_live() -> None:
    m = owned_by("b", ["a", "b"])
    v = fence("b", m, leases(lease("a", 1), lease("b", 1)), "a", NOW, NOW, 5)
    assert not v.allowed and "a still holds" in v.reason


def test_the_new_owner_takes_over_once_the_recorded_owner_expired() -> None:
    m = owned_by("b", ["b"])
    v = fence("b", m, leases(lease("a", 15.5), lease("b", 1)), "a", NOW, NOW - timedelta(seconds=1), 5)
    assert v.allowed and v.claim


def test_the_new_owner_takes_over_when_the_recorded_owner_has_no_lease() -> None:
    m = owned_by("b", ["b"])
    v = fence("b", m, leases(lease("b", 1)), "gone", NOW, NOW, 5)
    assert v.allowed and v.claim


@pytest.mark.parametrize("renewed_ago", [10.0, 12.0, None])
def test_an_owner_whose_own_renewal_is_old_stops_before_its_lease_expires(renewed_ago: float | None) -> None:
    m = owned_by("a", ["a"])
    renewed = None if renewed_ago is None else NOW - timedelta(seconds=renewed_ago)
    v = fence("a", m, leases(lease("a", renewed_ago or 0)), "a", NOW, renewed, 5)
    assert not v.allowed and "renewed" in v.reason


def test_the_fresh_margin_is_duration_minus_margin() -> None:
    m = owned_by("a", ["a"])
    view = leases(lease("a", 0))
    assert fence("a", m, view, "a", NOW, NOW - timedelta(seconds=9.9), 5).allowed
    assert not fence("a", m, view, "a", NOW, NOW - timedelta(seconds=10), 5).allowed


def test_at_most_one_replica_may_touch_a_member_in_any_shared_view() -> None:
    """Whatever the recorded owner, one view of the Leases lets at most one replica in."""
    view = leases(lease("a", 1), lease("b", 2), lease("c", 20))  # c expired
    for m in MEMBERS[:60]:
        for recorded in ("", "a", "b", "c"):
            allowed = [r for r in "abc" if fence(r, m, view, recorded, NOW, NOW, 5).allowed]
            assert len(allowed) <= 1, (m, recorded, allowed)
            if recorded != "" and recorded in "ab" and owner_of(m, ["a", "b"]) != recorded:
                assert allowed == []  # the live previous owner has not handed over yet


# --- rule 4: leader -------------------------------------------------------------------------


def test_leader_lease_actions() -> None:
    assert leader_action("a", None, NOW) == "create"
    assert leader_action("a", lease("a", 30), NOW) == "renew"  # its own, even if it lapsed
    assert leader_action("a", lease("b", 1), NOW) == "follow"
    assert leader_action("a", lease("b", 16), NOW) == "take-over"
    assert leader_action("a", ReplicaLease("", None, 15), NOW) == "take-over"
