"""Sharded operator replicas end to end (issue 15): 3 replicas, one killed, members move, no double writes.

Five api-only members, three real ``blueprintd operator --shards`` processes with short
Leases. Every replica puts its id in the User-Agent of its calls to members, and the
members' API servers audit every write with its user agent and time, so the audit logs say
which replica wrote what, and when. The scenario: a Blueprint converges on every member;
each member's status names its owner, as rendezvous hashing over the three replicas says;
the replica owning most members is killed with SIGKILL; its members move to the two others
(the seconds are printed: docs/ha.md); a new version converges everywhere; and on no member
are the writes of two replicas interleaved.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml
from kubernetes import client

from blueprintd.devfleet.binaries import Binaries
from blueprintd.devfleet.chaos import AGENT, operator_writes, sharded_operator_argv, writer_blocks
from blueprintd.devfleet.demo import OPERATOR_USER, member_registration
from blueprintd.devfleet.fleet import Fleet
from blueprintd.devfleet.nodes import FleetFile, MemberSpec, NodeGroupSpec
from blueprintd.devfleet.testing import OperatorProcess, running_fleet, unique_suffix, wait_for
from blueprintd.shard.decide import assignment

pytestmark = pytest.mark.fleet

GROUP, VERSION = "blueprintd.io", "v1alpha1"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REPLICAS = ["r1", "r2", "r3"]
LEASE_SECONDS = 5
RESYNC_SECONDS = 2

SHARD_FLEET = FleetFile(
    members=[
        MemberSpec(
            name=f"shard-{i}",
            labels={"env": "test"},
            nodes=[NodeGroupSpec(profile="cpu", count=1)],
            control_plane="api-only",
        )
        for i in range(1, 6)
    ]
)


@dataclass
class Env:
    fleet: Fleet
    bins: Binaries
    ns: str
    app_ns: str
    operators: dict[str, OperatorProcess]


def kubectl(env: Env, *args: str, stdin: str | None = None) -> str:
    proc = subprocess.run(
        [str(env.bins.kubectl), "--kubeconfig", str(env.fleet.management.kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def members(env: Env) -> dict[str, dict[str, Any]]:
    api = client.CustomObjectsApi(env.fleet.management.api_client())
    items = api.list_namespaced_custom_object(GROUP, VERSION, env.ns, "memberclusters")["items"]
    return {m["metadata"]["name"]: dict(m.get("status") or {}) for m in items}


def owners(env: Env) -> dict[str, str]:
    return {name: (st.get("shard") or {}).get("replica", "") for name, st in members(env).items()}


def blueprint(env: Env, version: str) -> dict[str, Any]:
    return {
        "apiVersion": "blueprintd.io/v1alpha1",
        "kind": "Blueprint",
        "metadata": {"name": "sharded", "namespace": env.ns},
        "spec": {
            "version": version,
            "clusterSelector": {"matchLabels": {"env": "test"}},
            "rollout": {"maxUnavailable": "100%"},
            "addons": [
                {
                    "name": "app",
                    "namespace": env.app_ns,
                    "manifests": [
                        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app"}, "data": {"v": version}}
                    ],
                }
            ],
        },
    }


def converged(env: Env, version: str) -> bool:
    """Every member runs ``version`` and says so in its status, and the ConfigMap is there."""
    statuses = members(env)
    for m in env.fleet.members:
        st = statuses.get(m.name) or {}
        progress = {p["blueprint"]: p for p in st.get("blueprints") or []}
        entry = progress.get("sharded") or {}
        if entry.get("version") != version or entry.get("state") != "Ready":
            return False
        try:
            cm = client.CoreV1Api(m.api_client()).read_namespaced_config_map("app", env.app_ns)
        except client.ApiException:
            return False
        if (cm.data or {}).get("v") != version:
            return False
    return True


@pytest.fixture(scope="module")
def env(kube_binaries: Binaries, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    uid = unique_suffix()
    ns, app_ns = f"shard-{uid}", f"shard-app-{uid}"
    logs = tmp_path_factory.mktemp("shard-operators")
    with running_fleet(tmp_path_factory.mktemp("shard-fleet"), SHARD_FLEET, kube_binaries) as fleet:
        ops = {
            r: OperatorProcess(
                sharded_operator_argv(fleet, kube_binaries.helm, ns, r, LEASE_SECONDS, RESYNC_SECONDS),
                logs / f"{r}.log",
                env={"BLUEPRINTD_OPERATOR_USER": OPERATOR_USER},
            )
            for r in REPLICAS
        }
        e = Env(fleet, kube_binaries, ns, app_ns, ops)
        kubectl(e, "apply", "--server-side", "--force-conflicts", "-f", os.path.join(REPO, "crds"))
        kubectl(e, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        docs: list[dict[str, Any]] = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}]
        for m in fleet.members:
            docs += member_registration(fleet, m, ns)
        kubectl(e, "apply", "--server-side", "-f", "-", stdin=yaml.safe_dump_all(docs))
        for op in ops.values():
            op.start()
        try:
            yield e
        finally:
            for op in ops.values():
                op.kill()


def test_sharded_replicas_fail_over_without_double_writes(env: Env) -> None:
    names = sorted(m.name for m in env.fleet.members)

    # 1. Every member is owned by the replica rendezvous hashing names, spread over replicas.
    expected = assignment(names, REPLICAS)
    assert len(set(expected.values())) == 3  # the fleet's names spread over all three replicas
    wait_for(lambda: owners(env) == expected, timeout=180, interval=0.5, what=f"members owned as {expected}")

    # 2. A Blueprint converges on every member.
    kubectl(env, "apply", "-f", "-", stdin=yaml.safe_dump(blueprint(env, "1.0.0")))
    wait_for(lambda: converged(env, "1.0.0"), timeout=240, interval=0.5, what="1.0.0 on every member")
    assert owners(env) == expected  # nobody moved meanwhile

    # 3. SIGKILL the replica owning most members: they move to the others, and only they do.
    counts = {r: sum(1 for o in expected.values() if o == r) for r in REPLICAS}
    victim = max(REPLICAS, key=lambda r: (counts[r], r))
    survivors = [r for r in REPLICAS if r != victim]
    after = assignment(names, survivors)
    assert all(after[m] == expected[m] for m in names if expected[m] != victim)
    killed = time.monotonic()
    env.operators[victim].kill()
    moved_at: dict[str, float] = {}

    def taken_over() -> bool:
        now = owners(env)
        for m in names:
            if expected[m] == victim and now.get(m) == after[m]:
                moved_at.setdefault(m, time.monotonic() - killed)
        return now == after

    wait_for(taken_over, timeout=120, interval=0.25, what=f"{victim}'s members to move to {survivors}")
    figures = ", ".join(f"{m} {s:.1f} s" for m, s in sorted(moved_at.items()))
    print(f"\nfailover after SIGKILL of {victim} (lease {LEASE_SECONDS} s, resync {RESYNC_SECONDS} s): {figures}")

    # 4. A new version converges on every member, the moved ones included.
    kubectl(env, "apply", "-f", "-", stdin=yaml.safe_dump(blueprint(env, "1.1.0")))
    wait_for(lambda: converged(env, "1.1.0"), timeout=240, interval=0.5, what="1.1.0 on every member")
    for r in survivors:
        assert env.operators[r].alive(), env.operators[r].tail()

    # 5. The audit logs: every operator write names its replica; on each member the writes of
    #    two replicas never interleave, and the killed replica never wrote after the survivor.
    gaps: list[float] = []  # between the killed replica's last write and its successor's first
    for m in names:
        writes = operator_writes(env.fleet.cluster(m), OPERATOR_USER)
        assert writes, f"{m}: the operator never wrote"
        unattributed = [
            (w.verb, w.resource, w.name, w.user_agent) for w in writes if not w.user_agent.startswith(AGENT)
        ]
        assert unattributed == [], f"{m}: writes without a replica id: {unattributed}"
        blocks = writer_blocks(writes)  # (replica, first write, last write)
        order = [b[0] for b in blocks]
        assert len(order) == len(set(order)), f"{m}: writes of two replicas interleave: {order}"
        assert order[-1] == after[m], f"{m}: last writer {order[-1]}, owner {after[m]}"
        if expected[m] == victim:
            assert order[-2:] == [victim, after[m]], f"{m}: writers in turn {order}"
        gaps += [(b[1] - a[2]).total_seconds() for a, b in itertools.pairwise(blocks) if a[0] == victim]
    assert all(g > 0 for g in gaps), gaps
    print(f"member hand-overs after the kill in the audit logs: {len(gaps)}, smallest gap between the killed "
          f"replica's last write and its successor's first: {min(gaps, default=float('nan')):.2f} s")  # fmt: skip

    # 6. A graceful stop (SIGTERM) deletes the replica's Leases: the last replica takes over
    #    its members without waiting for the Lease to expire.
    leaving, last = survivors
    stopped = time.monotonic()
    env.operators[leaving].stop()
    wait_for(
        lambda: set(owners(env).values()) == {last},
        timeout=120,
        interval=0.25,
        what=f"{last} to own every member after {leaving} stopped",
    )
    print(f"hand-over after a graceful stop of {leaving}: {time.monotonic() - stopped:.1f} s (incl. its shutdown)")
    assert env.operators[last].alive(), env.operators[last].tail()
    assert "released its Leases" in env.operators[leaving].tail(20000)
