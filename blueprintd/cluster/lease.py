"""coordination.k8s.io/v1 Leases in the operator namespace: replica heartbeats and the leader.

The I/O half of sharding (the rules are in ``blueprintd.shard.decide``). Each replica keeps
one heartbeat Lease named after it, labelled ``blueprintd.io/lease=replica``, and competes for
one leader Lease. Every write is a create or a replace carrying the Lease's resourceVersion:
when two replicas race, the API server accepts one write and answers 409 to the other.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from blueprintd.errors import ClusterError
from blueprintd.shard.decide import LeaderAction, ReplicaLease, leader_action

LEASE_LABEL = "blueprintd.io/lease"
LEADER_LEASE = "blueprintd-leader"


def heartbeat_name(replica: str) -> str:
    """A valid object name for ``replica``'s heartbeat Lease (pod names already are; others get
    a readable prefix and a hash so two ids never collide)."""
    clean = re.sub(r"[^a-z0-9-]+", "-", replica.lower()).strip("-")[:40]
    if clean == replica:
        return f"blueprintd-replica-{clean}"
    return f"blueprintd-replica-{clean}-{hashlib.sha256(replica.encode()).hexdigest()[:8]}".replace("--", "-")


def _lease(obj: Any) -> ReplicaLease:
    spec = obj.spec
    return ReplicaLease(
        holder=spec.holder_identity or "",
        renew_time=spec.renew_time,
        duration_seconds=float(spec.lease_duration_seconds or 0),
    )


class LeaseClient:
    """Heartbeat and leader Leases of one replica."""

    def __init__(self, api_client: Any, namespace: str, replica: str, duration_seconds: int) -> None:
        from kubernetes import client

        self._api = client.CoordinationV1Api(api_client)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"lease-{replica}")
        self.namespace = namespace
        self.replica = replica
        self.duration_seconds = duration_seconds

    def _body(self, name: str, now: datetime, role: str, acquired: datetime, rv: str | None, transitions: int) -> Any:
        from kubernetes import client

        return client.V1Lease(
            metadata=client.V1ObjectMeta(name=name, labels={LEASE_LABEL: role}, resource_version=rv),
            spec=client.V1LeaseSpec(
                holder_identity=self.replica,
                lease_duration_seconds=self.duration_seconds,
                acquire_time=acquired,
                renew_time=now,
                lease_transitions=transitions,
            ),
        )

    def _read(self, name: str) -> Any | None:
        from kubernetes.client.rest import ApiException

        try:
            return self._api.read_namespaced_lease(name, self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise ClusterError(f"reading Lease {self.namespace}/{name}: {exc.reason}") from None

    def _write(self, name: str, role: str, now: datetime, current: Any | None, take_over: bool = False) -> bool:
        """Create, or replace with ``current``'s resourceVersion; False when another write won."""
        from kubernetes.client.rest import ApiException

        try:
            if current is None:
                self._api.create_namespaced_lease(self.namespace, self._body(name, now, role, now, None, 0))
            else:
                spec = current.spec
                acquired = now if take_over else (spec.acquire_time or now)
                transitions = (spec.lease_transitions or 0) + (1 if take_over else 0)
                body = self._body(name, now, role, acquired, current.metadata.resource_version, transitions)
                self._api.replace_namespaced_lease(name, self.namespace, body)
        except ApiException as exc:
            if exc.status == 409 or (exc.status == 404 and current is not None):
                return False
            raise ClusterError(f"writing Lease {self.namespace}/{name}: {exc.reason}") from None
        return True

    def renew_heartbeat(self, now: datetime) -> bool:
        """Create or renew this replica's heartbeat Lease; True when the renewal is stored."""
        name = heartbeat_name(self.replica)
        return self._write(name, "replica", now, self._read(name))

    def heartbeats(self) -> dict[str, ReplicaLease]:
        """Every replica's heartbeat Lease, by holder."""
        res = self._api.list_namespaced_lease(self.namespace, label_selector=f"{LEASE_LABEL}=replica")
        leases = [_lease(item) for item in res.items]
        return {lease.holder: lease for lease in leases if lease.holder}

    def contend_leader(self, now: datetime) -> tuple[bool, LeaderAction]:
        """Create, renew or take over the leader Lease as rule 4 says; (leading, what was done)."""
        current = self._read(LEADER_LEASE)
        action = leader_action(self.replica, None if current is None else _lease(current), now)
        if action == "follow":
            return False, action
        won = self._write(LEADER_LEASE, "leader", now, current, take_over=action == "take-over")
        return won, action

    def release(self) -> None:
        """Graceful stop: delete the heartbeat and give up the leader Lease if held, so the
        others take over now rather than after the Lease duration."""
        from kubernetes import client
        from kubernetes.client.rest import ApiException

        for name in (heartbeat_name(self.replica), LEADER_LEASE):
            try:
                current = self._read(name)
                if current is None or current.spec.holder_identity != self.replica:
                    continue
                # Only the version read: a leader Lease another replica just took stays.
                pre = client.V1Preconditions(resource_version=current.metadata.resource_version)
                self._api.delete_namespaced_lease(name, self.namespace, body=client.V1DeleteOptions(preconditions=pre))
            except (ApiException, ClusterError):
                continue  # best effort: the Lease expires anyway

    # The async forms run on a thread of their own, not the event loop's shared pool: with
    # many members the pool is busy with member I/O, and a renewal queued behind it arrived
    # seconds late (bench_scale, 50 members: replicas let go of their members for nothing).

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def arenew_heartbeat(self, now: datetime) -> bool:
        return bool(await self._run(self.renew_heartbeat, now))

    async def aheartbeats(self) -> dict[str, ReplicaLease]:
        out: dict[str, ReplicaLease] = await self._run(self.heartbeats)
        return out

    async def acontend_leader(self, now: datetime) -> tuple[bool, LeaderAction]:
        out: tuple[bool, LeaderAction] = await self._run(self.contend_leader, now)
        return out

    async def arelease(self) -> None:
        await self._run(self.release)
