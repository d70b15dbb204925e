"""Lease adapter (cluster/lease.py) on a real API server: heartbeats, the leader Lease, races.

The rules it feeds (blueprintd.shard.decide) are tested without a server; here the point is
that the API server's optimistic concurrency really gives one winner, and that the Leases
say what the rules read.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kubernetes import client

from blueprintd.cluster.lease import LEADER_LEASE, LeaseClient, heartbeat_name
from blueprintd.cluster.management import ManagementStore
from blueprintd.devfleet.binaries import Binaries
from blueprintd.devfleet.fleet import ClusterHandle
from blueprintd.devfleet.testing import temp_namespace
from blueprintd.shard.decide import live_replicas

pytestmark = pytest.mark.fleet
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def ns(management: ClusterHandle) -> Iterator[str]:
    with temp_namespace(management, "lease") as name:
        yield name


def now() -> datetime:
    return datetime.now(UTC)


def test_heartbeats_are_created_renewed_listed_and_released(management: ClusterHandle, ns: str) -> None:
    api = management.api_client()
    a, b = LeaseClient(api, ns, "a", 4), LeaseClient(api, ns, "pod/B_1", 4)
    first = now()
    assert a.renew_heartbeat(first) and b.renew_heartbeat(first)
    assert a.renew_heartbeat(first + timedelta(seconds=1))
    view = a.heartbeats()
    assert set(view) == {"a", "pod/B_1"}
    assert view["a"].duration_seconds == 4
    assert view["a"].renew_time is not None and abs((view["a"].renew_time - first).total_seconds() - 1) < 0.01
    assert live_replicas(view.values(), first + timedelta(seconds=3)) == {"a", "pod/B_1"}
    assert heartbeat_name("pod/B_1").startswith("blueprintd-replica-pod-b-1-")  # a valid, distinct name
    b.release()
    assert set(a.heartbeats()) == {"a"}


def test_one_leader_at_a_time_and_take_over_after_expiry(management: ClusterHandle, ns: str) -> None:
    api = management.api_client()
    a, b = LeaseClient(api, ns, "a", 3), LeaseClient(api, ns, "b", 3)
    assert a.contend_leader(now()) == (True, "create")
    assert b.contend_leader(now()) == (False, "follow")
    assert a.contend_leader(now()) == (True, "renew")
    time.sleep(3.2)  # a stops renewing: its Lease expires
    assert b.contend_leader(now()) == (True, "take-over")
    assert a.contend_leader(now()) == (False, "follow")
    lease = client.CoordinationV1Api(api).read_namespaced_lease(LEADER_LEASE, ns)
    assert (lease.spec.holder_identity, lease.spec.lease_transitions) == ("b", 1)
    a.release()  # not a's any more: stays
    assert client.CoordinationV1Api(api).read_namespaced_lease(LEADER_LEASE, ns).spec.holder_identity == "b"


def test_of_two_writes_from_the_same_read_only_one_wins(management: ClusterHandle, ns: str) -> None:
    api = management.api_client()
    a, b = LeaseClient(api, ns, "a", 3), LeaseClient(api, ns, "b", 3)
    assert a.contend_leader(now() - timedelta(seconds=10))  # created, already expired
    seen = a._read(LEADER_LEASE)
    results = [c._write(LEADER_LEASE, "leader", now(), seen, take_over=True) for c in (b, a)]
    assert results == [True, False]  # a's write carries the old resourceVersion: 409


def test_a_status_write_from_a_stale_read_is_refused(
    management: ClusterHandle, kube_binaries: Binaries, ns: str
) -> None:
    """The member claim of the sharding fence: of two replicas that read the same
    MemberCluster, only the first conditional status write lands."""
    crd = REPO / "crds" / "memberclusters.blueprintd.io.yaml"
    kubectl = [str(kube_binaries.kubectl), "--kubeconfig", str(management.kubeconfig)]
    for args in (
        ["apply", "--server-side", "--force-conflicts", "-f", str(crd)],
        ["wait", "--for=condition=Established", "crd/memberclusters.blueprintd.io", "--timeout=60s"],
    ):
        out = subprocess.run([*kubectl, *args], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
    store = ManagementStore(management.api_client(), ns)
    body = {"apiVersion": "blueprintd.io/v1alpha1", "kind": "MemberCluster", "metadata": {"name": "m"},
            "spec": {"kubeconfigSecretRef": {"name": "m-kubeconfig"}}}  # fmt: skip
    asyncio.run(store.create("MemberCluster", body))
    first, second = (asyncio.run(store.get("MemberCluster", "m")) for _ in range(2))
    assert first is not None and second is not None
    claim_a, claim_b = ({"shard": {"replica": r, "since": "2026-11-30T12:00:00Z"}} for r in ("a", "b"))
    assert asyncio.run(store.write_status_if_unchanged("MemberCluster", first, claim_a))
    assert not asyncio.run(store.write_status_if_unchanged("MemberCluster", second, claim_b))
    stored = asyncio.run(store.get("MemberCluster", "m"))
    assert stored is not None and stored["status"]["shard"]["replica"] == "a"
    # The winner's copy follows the server: its next conditional write (a hand-over) lands.
    assert asyncio.run(store.write_status_if_unchanged("MemberCluster", first, {"shard": None}))
    stored = asyncio.run(store.get("MemberCluster", "m"))
    assert stored is not None and "shard" not in (stored.get("status") or {})
