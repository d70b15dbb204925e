"""Evidence for sharded-operator tests and the chaos suite: who wrote to a member, and when.

Every sharded replica sends ``blueprintd-operator/<replica id>`` as its User-Agent to members,
and each member API server audits every write with its user agent and time. From the audit
logs (the members' own ground truth) and a timeline of ``MemberCluster.status.shard`` owners,
these helpers tell whether a replica wrote to a member that another replica owned, and what
Helm left behind (pending or duplicated releases). The fleet test of sharding and
``benchmarks/chaos.py`` share them.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from bisect import bisect_left, bisect_right
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from blueprintd.devfleet.audit import AuditEvent
from blueprintd.devfleet.fleet import ClusterHandle, Fleet

AGENT = "blueprintd-operator/"
GROUP, VERSION = "blueprintd.io", "v1alpha1"


def sharded_operator_argv(
    fleet: Fleet, helm: Path, namespace: str, replica: str, lease_seconds: int, resync_seconds: float
) -> list[str]:
    """``blueprintd operator --shards`` for one replica of a local fleet (metrics on a free port)."""
    return [
        sys.executable,
        "-m",
        "blueprintd",
        "operator",
        "--kubeconfig",
        str(fleet.management.kubeconfig),
        "-n",
        namespace,
        "--helm",
        str(helm),
        "--metrics-port",
        "0",
        "--member-resync",
        str(resync_seconds),
        "--shards",
        "--replica-id",
        replica,
        "--shard-lease-seconds",
        str(lease_seconds),
    ]


def event_time(event: AuditEvent) -> datetime:
    return datetime.fromisoformat(event.time.replace("Z", "+00:00"))


def replica_of(event: AuditEvent) -> str:
    """The replica id in a write's User-Agent; empty when the write names none."""
    if not event.user_agent.startswith(AGENT):
        return ""
    rest = event.user_agent[len(AGENT) :].split()
    return rest[0] if rest else ""


def operator_writes(member: ClusterHandle, user: str) -> list[AuditEvent]:
    """The operator's writes to ``member``, oldest first (identity checks excluded)."""
    writes = [w for w in member.audit.writes(user=user) if w.resource != "selfsubjectreviews"]
    return sorted(writes, key=event_time)


def writer_blocks(writes: list[AuditEvent]) -> list[tuple[str, datetime, datetime]]:
    """Consecutive writes by the same replica folded into (replica, first write, last write)."""
    blocks: list[tuple[str, datetime, datetime]] = []
    for w in sorted(writes, key=event_time):
        replica, at = replica_of(w), event_time(w)
        if blocks and blocks[-1][0] == replica:
            blocks[-1] = (replica, blocks[-1][1], at)
        else:
            blocks.append((replica, at, at))
    return blocks


def writes_after_takeover(writes: list[AuditEvent], replica: str, since: datetime, window_s: float) -> list[AuditEvent]:
    """Writes by ``replica`` after another replica's first write since ``since``, within ``window_s``.

    With ``replica`` paused at ``since`` (SIGSTOP), another replica's first write is the
    take-over; a write by the paused one after it, inside one fencing window, is a write made
    after it lost the member.
    """
    later = [w for w in writes if event_time(w) >= since]
    takeover = next((event_time(w) for w in later if replica_of(w) not in ("", replica)), None)
    if takeover is None:
        return []
    return [
        w for w in later if replica_of(w) == replica and 0 <= (event_time(w) - takeover).total_seconds() <= window_s
    ]


@dataclass
class OwnershipTimeline:
    """``status.shard.replica`` of every MemberCluster, polled in a background thread.

    A write by replica A at time t is *unfenced* when the polls just before and just after t
    both name another replica B: A wrote while B held the member. A hand-over clears
    ``status.shard`` before the next owner claims it, so a correct hand-over never looks
    like this; polls that fail (management API server down) simply leave a gap.
    """

    fleet: Fleet
    namespace: str
    interval: float = 0.5
    samples: dict[str, list[tuple[datetime, str]]] = field(default_factory=lambda: defaultdict(list))
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> OwnershipTimeline:
        self._thread = threading.Thread(target=self._run, name="ownership-poll", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def owners(self) -> dict[str, str]:
        from kubernetes import client

        api_client = self.fleet.management.api_client()
        try:
            api = client.CustomObjectsApi(api_client)
            items = api.list_namespaced_custom_object(
                GROUP, VERSION, self.namespace, "memberclusters", _request_timeout=5
            )["items"]
        finally:
            api_client.close()
        return {m["metadata"]["name"]: ((m.get("status") or {}).get("shard") or {}).get("replica", "") for m in items}

    def _run(self) -> None:
        while not self._stop.is_set():
            before = datetime.now(UTC)
            with contextlib.suppress(Exception):  # the management API server may be down on purpose
                owners = self.owners()
                after = datetime.now(UTC)
                for member, owner in owners.items():
                    # A poll's answer holds somewhere between request and reply: record it at
                    # both ends, so a write is judged only against answers bracketing it.
                    self.samples[member] += [(before, owner), (after, owner)]
            self._stop.wait(self.interval)

    def unfenced(self, member: str, writes: list[AuditEvent]) -> list[tuple[AuditEvent, str]]:
        """Writes made while both surrounding polls named another owner: (write, that owner)."""
        samples = sorted(self.samples.get(member, []), key=lambda s: s[0])
        times = [s[0] for s in samples]
        out = []
        for w in writes:
            at, writer = event_time(w), replica_of(w)
            i, j = bisect_left(times, at) - 1, bisect_right(times, at)
            if i < 0 or j >= len(samples):
                continue
            a, b = samples[i][1], samples[j][1]
            if a and a == b and a != writer:
                out.append((w, a))
        return out


def helm_release_problems(member: ClusterHandle) -> list[str]:
    """Helm releases left pending (``pending-*`` as the latest revision) or installed twice.

    A release is stored as ``owner=helm`` Secrets, one per revision. Duplicated means the same
    release name installed in more than one namespace, or more than one ``deployed`` revision.
    """
    from kubernetes import client

    api_client = member.api_client()
    try:
        secrets = client.CoreV1Api(api_client).list_secret_for_all_namespaces(label_selector="owner=helm").items
    finally:
        api_client.close()
    latest: dict[tuple[str, str], tuple[int, str]] = {}
    deployed: dict[tuple[str, str], int] = defaultdict(int)
    namespaces: dict[str, set[str]] = defaultdict(set)
    for s in secrets:
        labels = s.metadata.labels or {}
        name, ns, status = labels.get("name", ""), s.metadata.namespace, labels.get("status", "")
        version = int(labels.get("version", "0") or 0)
        namespaces[name].add(ns)
        if status == "deployed":
            deployed[(ns, name)] += 1
        if (ns, name) not in latest or version > latest[(ns, name)][0]:
            latest[(ns, name)] = (version, status)
    problems = [
        f"{ns}/{name} revision {v} is {st}"
        for (ns, name), (v, st) in sorted(latest.items())
        if st.startswith("pending")
    ]
    problems += [f"{ns}/{name} has {n} deployed revisions" for (ns, name), n in sorted(deployed.items()) if n > 1]
    problems += [f"{name} is installed in {sorted(nss)}" for name, nss in sorted(namespaces.items()) if len(nss) > 1]
    return problems


def wait_until(predicate: Any, timeout: float, interval: float = 0.5) -> float | None:
    """Seconds until ``predicate()`` is truthy (exceptions count as not yet), or None on timeout."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        with contextlib.suppress(Exception):
            if predicate():
                return time.monotonic() - started
        time.sleep(interval)
    return None
