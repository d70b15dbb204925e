"""The drift monitor: per member cluster, watches → checks → remediate / notify / block → DriftReport.

The operator owns one ``DriftMonitor`` and calls ``track`` after every successful reconcile
with the DesiredStates it just converged the cluster to. From then on the monitor keeps that
cluster under watch (``watch.MemberWatch``): every event on an owned object runs the pure
check of *that* target (``detect.DriftIndex``) against the object the event carried — no
read, no full resync — and acts on what it finds according to the add-on's mode:

* ``remediate``: restore at once (``respond.Responder``), then the restore's own watch event
  confirms it and resolves the entry;
* ``notify``: record and emit a Warning Event on the MemberCluster, never restore;
* ``block``: keep the ValidatingAdmissionPolicy and the labels that select the protected
  objects in place; a change that still got through (an exempt identity) is recorded open.

A periodic relist of every stream (``resync_seconds``, an operator setting) is the safety net for
anything a watch could have missed. All findings go to the cluster's DriftReport and the
MemberCluster's ``status.drift`` — written only when their content changes — so any operator
replica, and ``blueprintd drift``, sees the same state.

What is *not* drift: a field blueprintd itself owns with another value, a revision
blueprintd's helm installed, an object or label the reconcile just pruned. Those are the
operator converging to a new DesiredState it has not handed to ``track`` yet, and restoring
them would fight the upgrade.

The reconcile says what it does explicitly, never through shared state. The controller calls
``reconciling`` when a reconcile of the member begins, ``will_write`` with the ``Writes``
(objects deleted, node labels removed, releases changed) each plan is about to make, and
``track`` with the DesiredStates and the writes actually made when it ends. In between, a
finding the planned writes explain — a deleted object or label it prunes, anything about a
Helm release it changes or the objects that release rendered — is held, not recorded; anything
else is judged at once. At the hand-off each held finding is judged with the writes in hand:
one the reconcile made is checked again against the new DesiredState (the operator's own work
unless it still differs then); one it did not make after all is checked at once.

An object the reconcile applied, or a node it labelled, is judged only once the watch has
delivered that write (the ``resourceVersion`` in ``Writes.versions``), or ``CATCH_UP_LIMIT``
seconds after the hand-off: a watch event trails its write by milliseconds to seconds, and
checked against the cache before it, a ConfigMap the reconcile just created or a label it just
set looks deleted (a false "label-removed" found on a busy machine, then "restored").
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from blueprintd.api.driftreport import DriftEntry
from blueprintd.api.ref import ObjectRef
from blueprintd.cluster import helmrecords
from blueprintd.cluster.fence import FencedOut
from blueprintd.cluster.management import ManagementStore
from blueprintd.cluster.session import MemberSession
from blueprintd.cluster.writes import Writes
from blueprintd.drift import admission, report, retry
from blueprintd.drift.detect import Drift, DriftIndex, Target, node_target, release_target, rendered_objects
from blueprintd.drift.respond import GUARD_MANAGER, Responder
from blueprintd.drift.watch import ApiCounter, Changed, Lost, MemberWatch, StreamSpec, Synced
from blueprintd.errors import BlueprintdError
from blueprintd.operator import metrics
from blueprintd.plan.planner import apply_body
from blueprintd.render.desired import DesiredState

log = logging.getLogger("blueprintd.drift")

# Kinds of a release's rendered objects whose content is not compared: it is generated
# (Secrets a chart fills with random values) or churns by design. Everything else a release
# renders, namespaced or cluster-scoped (ClusterRoles, CRDs, custom resources), is. Secrets
# are still guarded: in block mode they carry the labels the admission policy selects.
UNWATCHED_KINDS = frozenset({"Secret", "Pod", "Event", "Lease", "Endpoints", "EndpointSlice"})
NODE_STREAM = StreamSpec("v1", "Node")
RENDERED_GRACE = 0.5  # seconds a deleted rendered object waits for its release's record to change
CATCH_UP_LIMIT = 10.0  # seconds a written object waits for its watch to deliver the write, then is judged


def utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@dataclass(frozen=True)
class DriftSignal:
    """What listeners (tests, the benchmark) hear, with a monotonic timestamp."""

    cluster: str
    target: str
    event: Literal["detected", "resolved", "remediated", "failed"]
    at: float
    drifts: tuple[Drift, ...] = ()
    message: str = ""


Listener = Callable[[DriftSignal], None]


@dataclass(frozen=True)
class _Recheck:
    target: Target


@dataclass(frozen=True)
class _RecheckAll:
    pass


@dataclass(frozen=True)
class _Resync:
    pass


@dataclass(frozen=True)
class _Flush:
    pass


@dataclass(frozen=True)
class _Done:
    target: Target
    ok: bool
    message: str
    started: datetime
    paths: tuple[str, ...] = ()
    manager: str = ""
    signature: retry.Signature = ()


@dataclass(frozen=True)
class _CaughtUp:
    """The wait for the watch to deliver a write to ``ref`` ran out: judge it as it is cached."""

    ref: ObjectRef


@dataclass(frozen=True)
class _Reprotect:
    """Label a release's storage Secret for block mode again (a previous try failed)."""

    release: str


def secret_stream(namespace: str) -> StreamSpec:
    return StreamSpec("v1", "Secret", namespace, helmrecords.LABEL_SELECTOR, helmrecords.FIELD_SELECTOR)


def is_record_stream(spec: StreamSpec) -> bool:
    """The stream of a namespace's Helm storage Secrets (the release records)."""
    return spec == secret_stream(spec.namespace)


def stream_of(target: Target) -> StreamSpec:
    if target.kind == "release":
        return secret_stream(target.ref.namespace)
    return object_stream(target.ref)  # a node's is NODE_STREAM


def object_stream(ref: ObjectRef) -> StreamSpec:
    """The stream that carries an object (or, for ``ObjectRef.node``, a node)."""
    return StreamSpec(ref.api_version, ref.kind, ref.namespace)


def _fingerprint(desired: list[DesiredState]) -> str:
    h = hashlib.sha256()
    for d in sorted(desired, key=lambda d: d.blueprint):
        h.update(d.to_json().encode())
    return h.hexdigest()


class DriftMonitor:
    """Drift detection and response for every member cluster this operator replica reconciles."""

    def __init__(
        self,
        store: ManagementStore | None,
        operator_user: str = "",
        *,
        resync_seconds: float,
        listeners: Iterable[Listener] = (),
    ) -> None:
        """``store`` None keeps reports in memory only (benchmarks); ``operator_user`` empty:
        ask each member who the operator is (SelfSubjectReview) for the block policy."""
        self.store = store
        self.operator_user = operator_user
        self.resync_seconds = resync_seconds
        self.listeners: list[Listener] = list(listeners)
        self._clusters: dict[str, ClusterMonitor] = {}
        self._lock = asyncio.Lock()
        self._background: set[asyncio.Task[None]] = set()

    def cluster(self, name: str) -> ClusterMonitor | None:
        return self._clusters.get(name)

    def observed_changes(self, cluster_name: str) -> int | None:
        """How many changes the watches of ``cluster_name`` have seen, while they cover it
        (every stream synced, nothing in flight); None otherwise. A member resync skips its
        reconcile while this number stands still (``blueprintd.operator.quiet``)."""
        current = self._clusters.get(cluster_name)
        return current.observed_changes() if current is not None else None

    def reconciling(self, cluster_name: str) -> None:
        """A reconcile of ``cluster_name`` began (its hand-off is the next ``track``)."""
        current = self._clusters.get(cluster_name)
        if current is not None:
            current.reconciling()

    def will_write(self, cluster_name: str, planned: Writes) -> None:
        """The running reconcile of ``cluster_name`` is about to make ``planned``: findings
        those writes explain are held until ``track``."""
        current = self._clusters.get(cluster_name)
        if current is not None:
            current.will_write(planned)

    async def track(
        self,
        cluster_name: str,
        session: MemberSession,
        desired: list[DesiredState],
        membercluster: dict[str, Any],
        writes: Writes | None = None,
    ) -> None:
        """The hand-off at the end of a reconcile: (re)start watching ``cluster_name`` for drift
        from ``desired``, judging what was held meanwhile with the reconcile's ``writes``; cheap
        when nothing changed.

        Never raises: drift monitoring must not fail a reconcile."""
        try:
            async with self._lock:
                current = self._clusters.get(cluster_name)
                if current is not None and current.session is not session:
                    # A new connection (new credentials, or the member came back): rebind the
                    # watches to it, keeping what was found so far.
                    await current.stop()
                    carried: tuple[dict[report.Key, DriftEntry], dict[str, Any] | None] | None = (
                        current.entries,
                        current.written,
                    )
                    current = None
                else:
                    carried = None
                if current is None:
                    current = ClusterMonitor(self, cluster_name, session, membercluster)
                    self._clusters[cluster_name] = current
                    await current.start(carried)
            await current.update(desired, membercluster, writes or Writes())
        except Exception:
            log.exception("drift monitor: tracking %s failed", cluster_name)

    async def release_blueprint(self, cluster_name: str, session: MemberSession, blueprint: str) -> None:
        """A Blueprint stopped selecting ``cluster_name``: remove its block-mode admission
        policies there, so whatever it leaves behind is writable again. (Its targets leave the
        watch set on the next ``track``, which is given the remaining Blueprints only.)"""
        for suffix in ("", "nodes"):
            name = admission.policy_name(blueprint, suffix)
            for kind in ("ValidatingAdmissionPolicyBinding", "ValidatingAdmissionPolicy"):
                ref = ObjectRef(admission.API_VERSION, kind, "", name)
                if await asyncio.to_thread(session.objects.get, ref) is not None:
                    await asyncio.to_thread(session.objects.delete, ref)
        log.info("drift %s: Blueprint %s released", cluster_name, blueprint)

    async def forget(self, cluster_name: str) -> None:
        """Stop watching a cluster (its MemberCluster was deleted or moved to another replica)."""
        async with self._lock:
            m = self._clusters.pop(cluster_name, None)
        if m is not None:
            await m.stop()

    async def close(self) -> None:
        for name in list(self._clusters):
            await self.forget(name)

    def _forget_later(self, name: str) -> None:
        """``forget`` from inside the cluster's own tasks (which ``forget`` cancels)."""
        task = asyncio.get_running_loop().create_task(self.forget(name))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _signal(self, sig: DriftSignal) -> None:
        for listener in self.listeners:
            try:
                listener(sig)
            except Exception:
                log.exception("drift listener failed")


@dataclass
class _Release:
    records: dict[int, helmrecords.ReleaseRecord] = field(default_factory=dict)
    rendered_revision: int = -1

    def keep_current_content(self) -> None:
        """Drop the manifest and CRDs of every revision but the current one. Only the current
        revision's are ever read (its rendered objects are what drift checks), and Helm keeps
        up to ten revisions of a release, each with the whole chart's output: kept, they were
        most of the monitor's memory per member."""
        cur = helmrecords.current(self.records.values())
        for rev, rec in self.records.items():
            if rec is not cur and (rec.manifest or rec.crds):
                self.records[rev] = dataclasses.replace(rec, manifest="", crds="")


def _without_record(secret: dict[str, Any]) -> dict[str, Any]:
    """A Helm storage Secret as the cache keeps it: without ``data``, the whole release record
    (chart included) in base64. What is read of it is decoded once, into ``_Release``."""
    return {k: v for k, v in secret.items() if k != "data"}


class ClusterMonitor:
    """Drift state of one member cluster. Watch threads only enqueue; all state changes happen
    on the event loop (the consumer task, and ``update`` which never awaits mid-change)."""

    def __init__(self, parent: DriftMonitor, name: str, session: MemberSession, mc: dict[str, Any]) -> None:
        self.parent = parent
        self.name = name
        self.session = session
        self.mc = mc
        self.paused = bool((mc.get("spec") or {}).get("paused"))
        self.index = DriftIndex.build([])
        self.fingerprint = ""
        self.in_flight = False  # a reconcile of this cluster is running (``reconciling`` … ``update``)
        self.planned = Writes()  # what it is about to write (``will_write``)
        self.pending: dict[Target, list[Drift]] = {}  # findings held while it runs, judged at the hand-off
        self.writes_lost = False  # a reconcile ended without a hand-off (it raised): its writes are unknown
        self.delivered: dict[ObjectRef, set[str]] = {}  # resourceVersions the watches delivered while it runs
        self.catching_up: dict[ObjectRef, tuple[str, float]] = {}  # written, not delivered yet: version, deadline
        self.counter = ApiCounter()
        self.responder = Responder(session, self.counter)
        self.cache: dict[StreamSpec, dict[tuple[str, str], dict[str, Any]]] = {}
        self.synced: set[StreamSpec] = set()
        self.releases: dict[str, _Release] = {}  # release target id -> records
        self.entries: dict[report.Key, DriftEntry] = {}
        self.protected: set[ObjectRef] = set()
        self.users: list[str] = [parent.operator_user] if parent.operator_user else []
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.loop = asyncio.get_running_loop()
        self.watch = MemberWatch(
            name, session.api_client.configuration, self._deliver, counter=self.counter, discovery=session.discovery
        )
        self.tasks: list[asyncio.Task[None]] = []
        self.busy: dict[str, asyncio.Task[None]] = {}
        self.held: set[Target] = set()  # checks deferred while the reconcile works on them
        self.scopes: dict[tuple[str, str], str] = {}  # (apiVersion, kind) -> namespaced | cluster
        self.deferred: dict[str, float] = {}  # rendered objects seen deleted, and since when
        self.backoff = retry.RestoreBackoff()  # restores that failed or did not take effect
        self.guard_backoff = retry.RestoreBackoff()  # block labels that could not be set
        self.later: dict[str, asyncio.TimerHandle] = {}  # one pending recheck per target
        self.side_tasks: set[asyncio.Task[None]] = set()
        self.written: dict[str, Any] | None = None
        self.dirty = True  # the first flush creates the report
        self.stopped = False
        self.changes = 0  # watch events that may change what a reconcile reads (observed_changes)

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self, carried: tuple[dict[report.Key, DriftEntry], dict[str, Any] | None] | None = None) -> None:
        """Begin with what a previous monitor of this cluster found, else with the stored report."""
        if carried is not None:
            self.entries, self.written = carried
        elif self.parent.store is not None:
            try:
                existing = await self.parent.store.get("DriftReport", self.name)
            except Exception as exc:
                existing = None
                log.warning("drift %s: cannot read the DriftReport: %s", self.name, exc)
            if existing is not None:
                st = existing.get("status") or {}
                self.entries = report.load(st.get("entries") or [])
                self.written = st
        self.tasks = [
            asyncio.create_task(self._consume(), name=f"drift-{self.name}"),
            asyncio.create_task(self._resync_loop(), name=f"drift-resync-{self.name}"),
        ]
        log.info("drift %s: monitoring (full resync every %.0fs)", self.name, self.parent.resync_seconds)

    async def stop(self) -> None:
        self.stopped = True
        self.watch.close()
        for t in [*self.tasks, *self.busy.values(), *self.side_tasks]:
            t.cancel()
        for t in [*self.tasks, *self.busy.values(), *self.side_tasks]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self.tasks.clear()

    def observed_changes(self) -> int | None:
        """The change count while the watches cover the member: every stream listed and
        synced, and no reconcile, restore, held finding or recheck in flight."""
        if self.stopped or self.in_flight or self.busy or self.held or self.pending or self.catching_up:
            return None
        now = self.loop.time()
        if any(not h.cancelled() and h.when() > now for h in self.later.values()):
            return None
        if not self.watch.specs <= self.synced:
            return None
        return self.changes

    def reconciling(self) -> None:
        if self.in_flight:  # the previous reconcile raised before its hand-off
            self.writes_lost = True
        self.in_flight = True

    def will_write(self, planned: Writes) -> None:
        self.in_flight = True
        self.planned |= planned

    async def update(self, desired: list[DesiredState], mc: dict[str, Any], writes: Writes | None = None) -> None:
        """Track a new set of DesiredStates (a no-op when they did not change): the hand-off of
        the reconcile that made ``writes``."""
        self.mc = mc
        self.paused = bool((mc.get("spec") or {}).get("paused"))
        self._hand_off(writes or Writes(), {d.blueprint for d in desired})
        fp = _fingerprint(desired)
        if fp == self.fingerprint:
            for t in self.held:
                self.queue.put_nowait(_Recheck(t))
            self.held.clear()
            return
        self.fingerprint = fp
        self.held.clear()
        self.index = DriftIndex.build(desired)
        self.releases = {rid: rel for rid, rel in self.releases.items() if rid in self.index.releases}
        for rel in self.releases.values():
            rel.rendered_revision = -1  # re-derive the rendered targets for the new index
        for rid in self.index.releases:
            self._index_rendered(rid)
        self._set_streams()
        refs = {t.ref for t in self.index.targets()}
        helm_addons = {(r.desired.blueprint, r.step.addon) for r in self.index.releases.values()}
        if report.forget_except(self.entries, refs, {d.blueprint for d in desired}, helm_addons):
            self.dirty = True
        still = {r for r in self.protected if r in refs}  # an untracked Blueprint protects nothing
        if still != self.protected:
            self.protected = still
            self.dirty = True
        for rid in self.index.releases:  # their records, when still in block mode
            self._protect_release(rid)
        self.queue.put_nowait(_RecheckAll())
        self._spawn(self._ensure_policies())

    def _hand_off(self, writes: Writes, blueprints: set[str]) -> None:
        """The reconcile has finished. Findings held while it ran that it made (by ``writes``)
        are the operator's own: checked again once the new DesiredStates are in place. The
        others are checked now, against the DesiredStates they were seen with, as if no
        reconcile had been running; those of Blueprints no longer tracked are dropped. When an
        earlier reconcile raised before its hand-off, what it wrote is unknown: every held
        finding is then checked again against the new DesiredStates."""
        self.in_flight = False
        self.planned = Writes()
        delivered, self.delivered = self.delivered, {}
        self._catch_up(writes, delivered)
        pending, self.pending = self.pending, {}
        lost, self.writes_lost = self.writes_lost, False
        for target, found in sorted(pending.items(), key=lambda kv: kv[0]):
            if lost or any(self._made_by(d, writes) for d in found):
                self.held.add(target)
            elif any(d.blueprint in blueprints for d in found):
                self._check(target)

    def _catch_up(self, writes: Writes, delivered: dict[ObjectRef, set[str]]) -> None:
        """Hold the checks of what ``writes`` applied or labelled until the watch delivers it:
        judged earlier, against the version cached before the write, the reconcile's own new
        object or node label looks deleted. Nothing is held when the cache already holds the
        written version, or the watch delivered it during the reconcile (then anything cached
        now came after it), or its stream starts with this hand-off (listed after the write:
        a ConstraintTemplate whose kind the reconcile just installed, updated since by its
        controller, would wait out the whole limit for a version no list returns)."""
        deadline = self.loop.time() + CATCH_UP_LIMIT
        for w in writes.versions:
            if object_stream(w.ref) not in self.watch.specs:
                continue  # a kind first watched from this hand-off on: its first list comes after the write
            if w.resource_version == _version(self._cached(w.ref)) or w.resource_version in delivered.get(w.ref, ()):
                continue
            self.catching_up[w.ref] = (w.resource_version, deadline)
            self.loop.call_later(CATCH_UP_LIMIT + 0.01, self._deliver, _CaughtUp(w.ref))

    def _cached(self, ref: ObjectRef) -> dict[str, Any] | None:
        return self.cache.get(object_stream(ref), {}).get((ref.namespace, ref.name))

    def _seen(self, spec: StreamSpec, obj: dict[str, Any], deleted: bool = False) -> None:
        """The watch delivered ``obj``: what the reconcile in flight may have written, or the
        write a check waits for (then the check can go ahead)."""
        ns, name = _nsname(obj)
        ref = ObjectRef(spec.api_version, spec.kind, ns, name)
        version = _version(obj)
        if self.in_flight:
            self.delivered.setdefault(ref, set()).add(version)
        waiting = self.catching_up.get(ref)
        if waiting is not None and (deleted or waiting[0] == version):
            del self.catching_up[ref]

    def _targets_of(self, ref: ObjectRef) -> list[Target]:
        """The targets an object's (or node's) event may change."""
        if object_stream(ref) == NODE_STREAM:
            return [node_target(ref.name)] if ref.name in self.index.nodes else []
        return [t for kind in ("object", "rendered", "guarded") if (t := Target(kind, ref)).id in self.index.objects]

    def _waits_for_watch(self, ref: ObjectRef) -> bool:
        """Is a write to ``ref`` still on its way through the watch (and not past the limit)?"""
        waiting = self.catching_up.get(ref)
        if waiting is None:
            return False
        if self.loop.time() < waiting[1]:
            return True
        del self.catching_up[ref]
        log.info("drift %s: the watch did not deliver the write to %s within %.0fs; judged as cached",
                 self.name, ref, CATCH_UP_LIMIT)
        return False

    def _set_streams(self) -> None:
        # Nodes always: a reconcile's facts (GPU Feature Discovery labels, capacity) come from
        # them, so a quiet resync may only be skipped while their changes are seen.
        specs = {stream_of(t) for t in self.index.targets()} | {NODE_STREAM}
        for gone in set(self.cache) - specs:
            self.cache.pop(gone, None)
            self.synced.discard(gone)
        self.watch.set_streams(specs)

    def _deliver(self, msg: Any) -> None:
        if self.stopped:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closing
            self.loop.call_soon_threadsafe(self.queue.put_nowait, msg)

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self.side_tasks.add(task)
        task.add_done_callback(self.side_tasks.discard)

    # --- the consumer -----------------------------------------------------------------------

    async def _consume(self) -> None:
        while True:
            batch = [await self.queue.get()]
            while not self.queue.empty():
                batch.append(self.queue.get_nowait())
            for msg in batch:
                try:
                    await self._handle(msg)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("drift %s: handling %s failed", self.name, type(msg).__name__)
            if self.dirty:
                await self._flush()

    async def _handle(self, msg: Any) -> None:
        if isinstance(msg, Synced):
            self._synced(msg)
        elif isinstance(msg, Changed):
            self._changed(msg)
        elif isinstance(msg, Lost):
            self.synced.discard(msg.spec)
        elif isinstance(msg, _Recheck):
            self._check(msg.target)
        elif isinstance(msg, _RecheckAll):
            for t in self.index.targets():
                self._check(t)
        elif isinstance(msg, _Done):
            self._done(msg)
        elif isinstance(msg, _Reprotect):
            self._protect_release(msg.release)
        elif isinstance(msg, _CaughtUp):
            if msg.ref in self.catching_up and not self._waits_for_watch(msg.ref):
                for t in self._targets_of(msg.ref):
                    self._check(t)
        elif isinstance(msg, _Resync):
            report.touch(self.entries, utcnow())
            self.dirty = True
            self.watch.relist()
            self._spawn(self._ensure_policies())
            self._spawn(self._still_wanted())
        elif isinstance(msg, _Flush):
            self.dirty = True

    def _synced(self, msg: Synced) -> None:
        spec = msg.spec
        if spec not in self.watch.specs:
            return
        before = self.cache.get(spec)
        records = is_record_stream(spec)
        self.cache[spec] = {_nsname(o): _without_record(o) if records else o for o in msg.items}
        self.synced.add(spec)
        if self.in_flight or self.catching_up:
            for o in msg.items:
                self._seen(spec, o)
        if before is None or _essence(spec, before) != _essence(spec, self.cache[spec]):
            self.changes += 1  # a first list, or a relist that found something different
        if records:
            for rid, tracked in self.index.releases.items():
                if tracked.target.ref.namespace != spec.namespace:
                    continue
                rel = self.releases.setdefault(rid, _Release())
                name = tracked.target.ref.name
                rel.records = {}
                for item in msg.items:
                    if helmrecords.release_name(item) == name and (rec := helmrecords.decode(item)) is not None:
                        rel.records[rec.revision] = rec
                rel.keep_current_content()
                self._release_changed(rid)
            return
        for t in self.index.targets():
            if stream_of(t) == spec:
                self._check(t)

    def _changed(self, msg: Changed) -> None:
        spec, obj = msg.spec, msg.obj
        if spec not in self.cache:
            return
        key = _nsname(obj)
        if spec != NODE_STREAM or msg.type == "DELETED" or _node_facts(self.cache[spec].get(key)) != _node_facts(obj):
            self.changes += 1  # a node's heartbeat (status conditions) changes no fact: not counted
        records = is_record_stream(spec)
        self._seen(spec, obj, deleted=msg.type == "DELETED")
        if msg.type == "DELETED":
            self.cache[spec].pop(key, None)
        else:
            self.cache[spec][key] = _without_record(obj) if records else obj
        if records:
            rid = release_target(spec.namespace, helmrecords.release_name(obj)).id
            if rid not in self.index.releases:
                return
            rel = self.releases.setdefault(rid, _Release())
            rec = helmrecords.decode(obj)
            if rec is None:
                return
            if msg.type == "DELETED":
                was_current = bool(rel.records) and rec.revision == max(rel.records)
                rel.records.pop(rec.revision, None)
                if was_current and rel.records:
                    # Only the current revision's manifest is kept: the one now current
                    # (someone deleted the newest record) is read again by a relist.
                    self.watch.relist(spec)
            else:
                rel.records[rec.revision] = rec
                rel.keep_current_content()
            self._release_changed(rid)
            return
        ref = ObjectRef.node(key[1]) if spec == NODE_STREAM else ObjectRef.of(obj)
        for t in self._targets_of(ref):
            self._check(t)

    def _release_changed(self, rid: str) -> None:
        if self._index_rendered(rid):
            self._set_streams()
        for oid in self.index.rendered.get(rid, []):
            self._check(self.index.objects[oid].target)
        self._check(self.index.releases[rid].target)
        self._protect_release(rid)

    def _protect_release(self, rid: str) -> None:
        """In block mode, label the release's current storage Secret too: ``helm uninstall``
        and ``helm rollback`` by a person start by updating it, so the policy refuses them
        before they touch anything. (Helm rewrites the Secret's labels on every revision the
        operator makes; the next event puts the block labels back.)"""
        tracked = self.index.releases.get(rid)
        rel = self.releases.get(rid)
        cur = helmrecords.current(rel.records.values()) if rel else None
        if tracked is None or cur is None or tracked.step.drift.mode != "block":
            return
        ns = tracked.target.ref.namespace
        secret = self.cache.get(secret_stream(ns), {}).get((ns, helmrecords.secret_name(cur.name, cur.revision)))
        if secret is None:
            return
        want = admission.block_labels(tracked.desired.blueprint)
        labels = (secret.get("metadata") or {}).get("labels") or {}
        key = f"guard:Secret {ns}/{secret['metadata']['name']}"
        ref = ObjectRef("v1", "Secret", ns, secret["metadata"]["name"])
        if all(labels.get(k) == v for k, v in want.items()):
            # Listed as protected: this revision's record, not the ones it superseded.
            prefix = helmrecords.secret_name(cur.name, 0)[:-1]
            old = {r for r in self.protected if r.kind == "Secret" and r.namespace == ns and r.name.startswith(prefix)}
            if old != {ref}:
                self.protected = (self.protected - old) | {ref}
                self.dirty = True
            return
        if key in self.busy:
            return
        obj = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": secret["metadata"]["name"], "namespace": ns}}
        self._guard_later(key, obj, want, _Reprotect(rid))

    def _scope(self, api_version: str, kind: str) -> str:
        """ "namespaced", "cluster", or "" when the member does not serve the kind.

        Asked once per kind and kept: the first question about a group version costs one
        discovery GET on the consumer's thread (the reconcile has usually loaded it already)."""
        key = (api_version, kind)
        if key not in self.scopes:
            try:
                self.scopes[key] = "namespaced" if self.session.objects.namespaced(api_version, kind) else "cluster"
            except Exception:  # not served (yet); asked again after the next release change
                return ""
        return self.scopes[key]

    def _index_rendered(self, rid: str) -> bool:
        """Derive the rendered targets from the release's current revision; True if they changed."""
        rel = self.releases.get(rid)
        tracked = self.index.releases.get(rid)
        if rel is None or tracked is None:
            return False
        cur = helmrecords.current(rel.records.values())
        if cur is None or cur.revision == rel.rendered_revision or not cur.manifest or cur.status != "deployed":
            return False
        served = [
            d
            for d in helmrecords.manifest_objects(cur.manifest)
            if self._scope(str(d.get("apiVersion", "")), str(d.get("kind", "")))
        ]
        docs = [d for d in served if d.get("kind") not in UNWATCHED_KINDS]
        # Only protected (block mode), never compared: Secrets a chart fills with generated
        # values, and the CRDs of its crds/ directory.
        guarded = [d for d in served if d.get("kind") == "Secret"] + [
            d for d in helmrecords.manifest_objects(cur.crds) if d.get("kind") == "CustomResourceDefinition"
        ]
        namespaced = lambda v, k: self._scope(v, k) == "namespaced"  # noqa: E731
        objs = rendered_objects(tracked.step, docs, namespaced)
        before = set(self.index.rendered.get(rid, []))
        after = set(self.index.set_rendered(rid, objs, rendered_objects(tracked.step, guarded, namespaced)))
        rel.rendered_revision = cur.revision
        return before != after

    # --- checks -------------------------------------------------------------------------------

    def _live(self, target: Target) -> Any:
        if target.kind == "release":
            rel = self.releases.get(target.id)
            cur = helmrecords.current(rel.records.values()) if rel else None
            return cur.state() if cur else None
        return self.cache.get(stream_of(target), {}).get((target.ref.namespace, target.ref.name))

    def _check(self, target: Target) -> None:
        if self.stopped or stream_of(target) not in self.synced:
            return  # not listed yet: absent from the cache does not mean deleted
        if target.kind != "release" and self._waits_for_watch(target.ref):
            return  # the reconcile wrote it: judged when its event arrives (_seen, _changed)
        live = self._live(target)
        found = self.index.check(target, live)
        if found is None:
            # Not judged (a Helm release mid-operation, e.g. a reinstall waiting on its
            # pre-install hook Job): "no drift" would resolve the open entry before the release
            # is back. The event that ends the operation is checked.
            return
        if target.kind == "rendered" and live is None and found:
            if self._defer(target):
                return
        else:
            self.deferred.pop(target.id, None)
        drifts = [d for d in found if not self._operator_made(d)]
        if self.in_flight and any(self._made_by(d, self.planned) for d in drifts):
            # Judged at the hand-off, with the reconcile's writes (the entries stay as they are).
            self.pending[target] = drifts
            return
        self.pending.pop(target, None)
        if len(drifts) != len(found):
            self.held.add(target)
        self._record(target, drifts, live)

    def _defer(self, target: Target) -> bool:
        """Hold a vanished rendered object for ``RENDERED_GRACE`` seconds: ``helm uninstall``
        deletes a release's objects before its record, and the release (reinstalled as a
        whole) is the drift to report then, not each object it took with it."""
        now = time.monotonic()
        since = self.deferred.setdefault(target.id, now)
        if now - since >= RENDERED_GRACE:
            del self.deferred[target.id]
            return False
        self.loop.call_later(RENDERED_GRACE - (now - since) + 0.01, self._deliver, _Recheck(target))
        return True

    def _made_by(self, d: Drift, writes: Writes) -> bool:
        """Did the reconcile that made ``writes`` cause this finding (its prune or helm work)?"""
        ref = d.target.ref
        if d.reason == "deleted" and ref in writes.deleted:
            return True
        if d.reason == "label-removed" and ObjectRef.node(ref.name) in writes.unlabelled:
            return True
        release = self._release_of(d.target)
        return release is not None and release.ref in writes.releases

    def _operator_made(self, d: Drift) -> bool:
        """The operator's own doing (see the module docstring): a field blueprintd owns, or a
        rendered object of a release helm is still working on (or that is gone as a whole)."""
        if d.own:
            return True
        release = self._release_of(d.target)
        if release is None:
            return False
        if d.target.kind == "rendered":
            # helm is mid-operation (objects change before the record says what it installed),
            # or the release is gone: then the release is the drift, reinstalled as a whole.
            live = self._live(release)
            return live is None or live.pending or live.status == "uninstalled"
        return False

    def _release_of(self, target: Target) -> Target | None:
        if target.kind == "release":
            return target
        tracked = self.index.objects.get(target.id)
        if target.kind == "rendered" and tracked is not None and tracked.step.helm is not None:
            return release_target(tracked.step.helm.namespace, tracked.step.helm.release_name)
        return None

    def _record(self, target: Target, drifts: list[Drift], live: Any) -> None:
        now = utcnow()
        had_open = any(k[1] == target.ref and e.resolved_at is None for k, e in self.entries.items())
        new = report.update_target(self.entries, target.ref, drifts, now)
        if new or had_open or drifts:
            self.dirty = True
        if new:
            self.parent._signal(DriftSignal(self.name, target.id, "detected", time.monotonic(), tuple(drifts)))
        elif had_open and not drifts:
            self.parent._signal(DriftSignal(self.name, target.id, "resolved", time.monotonic()))
        self._protect(target, live)
        if not drifts:
            tries = self.backoff.failures(target.id)
            if tries:  # restored by a retry: the report says so once, now that it holds
                report.mark(self.entries, target.ref, "remediated", f"restored after {tries + 1} attempts", now)
            self.backoff.resolved(target.id)
            return
        mode = drifts[0].mode
        paths = tuple(d.path for d in drifts)
        manager = next((d.manager for d in drifts if d.manager), "")
        by = f" by {manager}" if manager else ""
        if mode == "remediate" and not self.paused:
            if target.id not in self.busy:
                self._restore(target, drifts, now, paths, manager)
            return
        if not new:
            return
        if mode == "remediate":  # paused cluster
            report.mark(self.entries, target.ref, "open", "the MemberCluster is paused: not restored", now)
            self._event("DriftDetected", f"{target.ref}: {_paths(paths)} changed{by}; cluster paused, not restored")
        elif mode == "notify":
            self._event("DriftDetected", f"{target.ref}: {_paths(paths)} changed{by} (drift mode notify: not restored)")
        else:
            msg = f"changed despite drift mode block{by}: the identity is exempt from, or not covered by, the policy"
            report.mark(self.entries, target.ref, "open", msg, now)
            self._event("DriftBypassedBlock", f"{target.ref}: {_paths(paths)} {msg}")

    def _restore(
        self, target: Target, drifts: list[Drift], now: datetime, paths: tuple[str, ...], manager: str
    ) -> None:
        """Restore now, or once the backoff of a failed restore of the same drift elapsed
        (``retry.RestoreBackoff``: a failure is reported once, not on every retry)."""
        sig = retry.signature(drifts)
        wait, failure = self.backoff.decide(target.id, sig, time.monotonic())
        if failure:
            self._failed(target, failure, now, manager)
        if wait > 0:
            self._recheck_later(target, wait)
            return
        if self.backoff.first_attempt(target.id):
            report.mark(self.entries, target.ref, "remediated", "restoring", now)
        self.busy[target.id] = asyncio.create_task(self._remediate(target, drifts, now, paths, manager, sig))

    def _recheck_later(self, target: Target, delay: float) -> None:
        """Check ``target`` again after ``delay`` seconds (one pending recheck per target)."""
        old = self.later.pop(target.id, None)
        if old is not None:
            old.cancel()
        self.later[target.id] = self.loop.call_later(delay + 0.01, self._deliver, _Recheck(target))

    def _failed(self, target: Target, message: str, since: datetime, manager: str = "") -> None:
        by = f" (changed by {manager})" if manager else ""
        report.mark(self.entries, target.ref, "open", message, since)
        self.dirty = True
        self.parent._signal(DriftSignal(self.name, target.id, "failed", time.monotonic(), (), message))
        self._event("DriftRemediationFailed", f"{target.ref}: {message}{by}")

    async def _remediate(
        self,
        target: Target,
        drifts: list[Drift],
        started: datetime,
        paths: tuple[str, ...],
        manager: str,
        sig: retry.Signature = (),
    ) -> None:
        try:
            if target.kind in ("object", "rendered"):
                tracked = self.index.objects[target.id]
                msg = await self.responder.restore_object(apply_body(tracked.step, tracked.obj, self._live(target)))
            elif target.kind == "release":
                msg = await self.responder.restore_release(self.index.releases[target.id].step)
            else:
                wanted = self.index.nodes.get(target.ref.name, {})
                keys = [d.path.removeprefix("metadata.labels.") for d in drifts]
                msg = await self.responder.restore_labels(
                    target.ref.name, {k: wanted[k].value for k in keys if k in wanted}
                )
            done = _Done(target, True, msg, started, paths, manager, sig)
        except asyncio.CancelledError:
            raise
        except FencedOut as exc:  # the member has (or is about to get) another owner: not a failure
            log.info("drift %s: restore of %s not sent: %s", self.name, target.ref, exc.reason)
            self.busy.pop(target.id, None)
            return
        except Exception as exc:
            if not isinstance(exc, BlueprintdError):
                log.exception("drift %s: restoring %s", self.name, target.ref)
            done = _Done(target, False, restore_failure(target, exc)[:2000], started, paths, manager, sig)
        self.queue.put_nowait(done)

    def _done(self, msg: _Done) -> None:
        self.busy.pop(msg.target.id, None)
        text = str(msg.target.ref)
        by = f" (changed by {msg.manager})" if msg.manager else ""
        now = time.monotonic()
        if msg.ok:
            self.parent._signal(DriftSignal(self.name, msg.target.id, "remediated", now, (), msg.message))
            if not self.backoff.failures(msg.target.id):  # a retry is reported when it holds
                report.mark(self.entries, msg.target.ref, "remediated", msg.message, msg.started)
                self._event("DriftRemediated", f"{text}: {_paths(msg.paths)} {msg.message}{by}", "Normal")
                self.dirty = True
            # Confirm from the cache once the restore's own events had time to arrive.
            delay = self.backoff.succeeded(msg.target.id, msg.signature, now)
        else:
            delay, failure = self.backoff.failed(msg.target.id, msg.signature, msg.message, now)
            if failure:  # reported once per drift; the same failure again is only retried
                self._failed(msg.target, failure, msg.started, msg.manager)
        self._recheck_later(msg.target, delay)

    # --- block mode -------------------------------------------------------------------------

    def _protect(self, target: Target, live: Any) -> None:
        """Keep the block labels on protected objects (and off objects that left block mode)."""
        if target.kind not in ("object", "rendered", "guarded") or not isinstance(live, dict):
            return
        tracked = self.index.objects.get(target.id)
        if tracked is None:
            return
        labels = (live.get("metadata") or {}).get("labels") or {}
        want = admission.block_labels(tracked.desired.blueprint)
        has = all(labels.get(k) == v for k, v in want.items())
        key = "guard:" + target.id
        if tracked.step.drift.mode == "block":
            if has:
                if target.ref not in self.protected:
                    self.protected.add(target.ref)
                    self.dirty = True
            elif key not in self.busy:
                self._guard_later(key, tracked.obj, want, _Recheck(target))
            return
        if target.ref in self.protected:
            self.protected.discard(target.ref)
            self.dirty = True
        guarded = any(
            e.get("manager") == GUARD_MANAGER for e in (live.get("metadata") or {}).get("managedFields") or []
        )
        if guarded and admission.MODE_LABEL in labels and key not in self.busy:
            self._guard_later(key, tracked.obj, {}, _Recheck(target))

    def _guard_later(self, key: str, obj: dict[str, Any], labels: dict[str, str], again: Any) -> None:
        """Set (or remove) the block labels of one object, unless a failed try of the same
        still waits out its backoff; ``again`` is the message that re-runs the check."""
        sig: retry.Signature = tuple((k, v, "") for k, v in sorted(labels.items()))
        wait, _ = self.guard_backoff.decide(key, sig, time.monotonic())
        if wait > 0:
            self.loop.call_later(wait + 0.01, self._deliver, again)
            return
        self.busy[key] = asyncio.create_task(self._guard(key, obj, labels, sig, again))

    async def _guard(
        self, key: str, obj: dict[str, Any], labels: dict[str, str], sig: retry.Signature, again: Any
    ) -> None:
        """An object of a ``block`` add-on without its labels is not protected: a failure is
        retried with backoff (not left for the next full resync) and logged once."""
        try:
            await self.responder.guard_labels(obj, labels)
            self.guard_backoff.resolved(key)
        except asyncio.CancelledError:
            raise
        except FencedOut as exc:  # the member's new owner labels it
            log.info("drift %s: block labels of %s not sent: %s", self.name, key, exc.reason)
        except Exception as exc:
            delay, first = self.guard_backoff.failed(key, sig, restore_failure(None, exc), time.monotonic())
            if first:
                log.warning("drift %s: labelling %s for block mode (retrying): %s", self.name, key, first)
            self.loop.call_later(delay + 0.01, self._deliver, again)
        finally:
            self.busy.pop(key, None)

    async def _ensure_policies(self) -> None:
        """Install the block policies of tracked Blueprints that need one; remove those of
        tracked Blueprints that no longer do (untracked Blueprints keep theirs)."""
        try:
            if not self.users:
                user = await asyncio.to_thread(self.responder.whoami)
                if not user:
                    return  # never install a policy that could lock the operator out
                self.users = [user]
            for bp, objs in admission.policies(self.index.desired, self.users).items():
                names = {o["metadata"]["name"] for o in objs}
                for obj in objs:
                    if await self.responder.ensure(obj):
                        log.info("drift %s: applied %s %s", self.name, obj["kind"], obj["metadata"]["name"])
                for name in (admission.policy_name(bp), admission.policy_name(bp, "nodes")):
                    if name in names:
                        continue
                    for kind in ("ValidatingAdmissionPolicyBinding", "ValidatingAdmissionPolicy"):
                        ref = {"apiVersion": admission.API_VERSION, "kind": kind, "metadata": {"name": name}}
                        if await self._exists(ref):
                            await self.responder.remove(admission.API_VERSION, kind, name)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("drift %s: admission policies: %s", self.name, exc)

    async def _exists(self, ref: dict[str, Any]) -> bool:
        self.counter.add("get")
        return await asyncio.to_thread(self.responder.objects.get, ObjectRef.of(ref)) is not None

    # --- report -----------------------------------------------------------------------------

    async def _resync_loop(self) -> None:
        while True:
            await asyncio.sleep(self.parent.resync_seconds * random.uniform(0.9, 1.1))
            self.queue.put_nowait(_Resync())

    async def _flush(self) -> None:
        self.dirty = False
        now = utcnow()
        report.prune(self.entries, now)
        st = report.status(self.entries, self.protected, now)
        metrics.DRIFT_OPEN.labels(cluster=self.name).set(st["summary"].get("open", 0))
        if report.same_content(self.written, st):
            return
        store = self.parent.store
        if store is None:
            self.written = st
            return
        try:
            # A replica that lost the member must not write its (older) view over the report
            # the new owner keeps: the same fence as a write to the member.
            self.session.fence()
            mc = await store.get("MemberCluster", self.name)
            if mc is None:
                log.info("drift %s: MemberCluster is gone; no longer monitoring", self.name)
                self.parent._forget_later(self.name)
                return
            self.mc = mc
            self.paused = bool((mc.get("spec") or {}).get("paused"))
            rep = await store.get("DriftReport", self.name)
            if rep is None:
                rep = await store.create("DriftReport", self._report_object(mc))
            await store.patch_status("DriftReport", rep, st)
            counts = report.counts(self.entries.values(), len(self.protected))
            await store.patch_status("MemberCluster", mc, {"drift": report.summary(counts).to_wire()})
            self.written = st
        except asyncio.CancelledError:
            raise
        except FencedOut as exc:
            log.info("drift %s: DriftReport not written: %s", self.name, exc.reason)
        except Exception as exc:
            log.warning("drift %s: writing the DriftReport failed (retrying): %s", self.name, exc)
            self.loop.call_later(5.0, self._deliver, _Flush())

    async def _still_wanted(self) -> None:
        """Stop when the MemberCluster is gone (its report goes with it, by owner reference)."""
        store = self.parent.store
        if store is None:
            return
        try:
            gone = await store.get("MemberCluster", self.name) is None
        except Exception:
            return  # the management cluster is unreachable: keep going, ask again next resync
        if gone:
            log.info("drift %s: MemberCluster is gone; no longer monitoring", self.name)
            self.parent._forget_later(self.name)

    def _report_object(self, mc: dict[str, Any]) -> dict[str, Any]:
        meta = mc["metadata"]
        return {
            "apiVersion": "blueprintd.io/v1alpha1",
            "kind": "DriftReport",
            "metadata": {
                "name": self.name,
                "labels": {"blueprintd.io/cluster": self.name},
                "ownerReferences": [
                    {
                        "apiVersion": "blueprintd.io/v1alpha1",
                        "kind": "MemberCluster",
                        "name": meta["name"],
                        "uid": meta.get("uid", ""),
                    }
                ],
            },
            "spec": {"cluster": self.name},
        }

    def _event(self, reason: str, message: str, type_: str = "Warning") -> None:
        store = self.parent.store
        if store is None or not self.mc.get("metadata", {}).get("uid"):
            return
        log.info("drift %s: %s: %s", self.name, reason, message)
        self._spawn(store.event(self.mc, reason, message, type_))


def restore_failure(target: Target | None, exc: BaseException) -> str:
    """What failed and why, for a report entry or an Event: blueprintd's own errors carry a
    message written for people; anything else is named with its type (never a bare
    ``'resources'``) and logged with its traceback."""
    if target is None:
        what = "the write"
    elif target.kind == "node":
        what = f"restoring the labels of node {target.ref.name}"
    elif target.kind == "release":
        what = f"restoring Helm release {target.ref.namespace}/{target.ref.name}"
    else:
        what = f"restoring {target.ref}"
    if isinstance(exc, BlueprintdError):
        return f"{what} failed: {exc}"
    detail = str(exc)
    return (
        f"{what} failed: unexpected {type(exc).__name__}"
        + (f" ({detail})" if detail else "")
        + (" in blueprintd; the operator log has the traceback")
    )


def _node_facts(node: dict[str, Any] | None) -> Any:
    """What the facts collector reads from a Node: its labels, capacity and allocatable."""
    if node is None:
        return None
    st = node.get("status") or {}
    return ((node.get("metadata") or {}).get("labels"), st.get("capacity"), st.get("allocatable"))


def _essence(spec: StreamSpec, items: dict[tuple[str, str], dict[str, Any]]) -> dict[tuple[str, str], Any]:
    """What a relist compares with the cache: nodes by their facts, the rest by resourceVersion."""
    if spec == NODE_STREAM:
        return {k: _node_facts(o) for k, o in items.items()}
    return {k: _version(o) for k, o in items.items()}


def _version(obj: dict[str, Any] | None) -> str:
    return str(((obj or {}).get("metadata") or {}).get("resourceVersion") or "")


def _nsname(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))


def _paths(paths: Iterable[str]) -> str:
    ps = list(paths)
    text = ", ".join(ps[:5]) + (f" and {len(ps) - 5} more" if len(ps) > 5 else "")
    return "the object" if ps == ["."] else text
