"""The operator's work, independent of kopf: publish revisions, decide rollouts, reconcile members.

Each entry point reads the objects it needs from the management cluster, runs the per-member
pipeline (``pipeline.py``) and the pure cores (validation, render, plan, rollout decision), folds
the results into the typed status (``status.py``) and writes only what changed. kopf handlers
(``handlers.py``) only call these methods, which keeps the logic testable without kopf and
identical for every operator replica. docs/reconcile.md maps the whole path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from blueprintd.api.base import ApiModel
from blueprintd.api.blueprint import Blueprint, BlueprintStatus, RevisionSourceRef, UnselectAction
from blueprintd.api.common import ObjectMeta
from blueprintd.api.membercluster import AddonProgress, BlueprintProgress, MemberCluster, MemberClusterStatus
from blueprintd.api.params import shorthand_issues
from blueprintd.api.revision import BlueprintRevision, BlueprintRevisionSpec, revision_name
from blueprintd.cluster.fence import FencedOut, unfenced
from blueprintd.cluster.management import AlreadyExists, ManagementStore
from blueprintd.cluster.progress import StepWatch
from blueprintd.cluster.reconcile import reconcile
from blueprintd.cluster.session import MemberSession
from blueprintd.cluster.writes import Writes
from blueprintd.drift.monitor import DriftMonitor
from blueprintd.errors import BlueprintdError
from blueprintd.operator import metrics, quiet, status
from blueprintd.operator.backoff import attempt_key, due
from blueprintd.operator.pipeline import (
    ROLLBACK_ANNOTATION,
    PipelineError,
    Revisions,
    assigned_version,
    cluster_view,
    collect_facts,
    member_kubeconfig,
    prepare,
    restore_request,
    selects,
    target_version,
)
from blueprintd.operator.quiet import QuietMark
from blueprintd.operator.settings import OperatorSettings
from blueprintd.operator.sharding import Sharding
from blueprintd.plan.inventory import Inventory
from blueprintd.plan.ownership import BLUEPRINT_LABEL, label_value
from blueprintd.preflight import HelmPreflight
from blueprintd.preflight.run import Memo, refusal, render_states, run_preflight
from blueprintd.render import compile_blueprint
from blueprintd.render.desired import DesiredState
from blueprintd.rollout import decide

log = logging.getLogger("blueprintd.operator")

__all__ = ["PAUSE_ANNOTATION", "RESUME_ANNOTATION", "ROLLBACK_ANNOTATION", "Controller", "MemberReconcile"]

PAUSE_ANNOTATION = "blueprintd.io/rollout-paused"
RESUME_ANNOTATION = "blueprintd.io/rollout-resume"
PREFLIGHT_FAILED = "ChartPreflightFailed"


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _errors(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:10])


@dataclass(frozen=True)
class MemberReconcile:
    """What one reconcile of a member did, for whoever called it (the drift hand-off, tests).

    Each ``Applied`` outcome carries the ``ReconcileResult``: the plan it carried out and the
    writes it made on the member."""

    cluster: str
    outcomes: list[status.Outcome] = field(default_factory=list)
    status: MemberClusterStatus | None = None  # the folded status; None when paused
    patched: bool = False  # a status write happened

    @property
    def writes(self) -> int:
        return sum(o.result.writes for o in self.outcomes if isinstance(o, status.Applied))


def writes_of(outcomes: list[status.Outcome]) -> Writes:
    """What the reconcile's applies changed, for the drift hand-off."""
    made = Writes()
    for o in outcomes:
        if isinstance(o, status.Applied):
            made |= o.result.made
    return made


def _blueprint_status(bp: dict[str, Any]) -> BlueprintStatus:
    return BlueprintStatus.model_validate(bp.get("status") or {})


class Controller:
    def __init__(self, store: ManagementStore, settings: OperatorSettings) -> None:
        self.store = store
        self.settings = settings
        self.revisions = Revisions(store, settings.blueprint_limits)
        self._sessions: dict[str, tuple[str, MemberSession]] = {}
        self.drift = DriftMonitor(
            store, operator_user=settings.operator_user, resync_seconds=settings.drift_resync_seconds
        )
        self._rendered: dict[tuple[str, str], DesiredState] = {}  # (cluster, blueprint), for drift
        self._preflight_memo: Memo = {}  # chart verdicts by (chart, values): each is templated once
        # The MemberCluster being reconciled, as stored: progress writes mid-reconcile patch it,
        # so the final status write diffs against what the server really holds.
        self._stored: dict[str, dict[str, Any]] = {}
        self.shard: Sharding | None = None  # sharded replicas (docs/ha.md); None: this one does all
        self._publishing: dict[str, asyncio.Lock] = {}  # one publish per Blueprint at a time
        self._quiet: dict[str, QuietMark] = {}  # members left converged by their last full reconcile

    async def _write(self, kind: str, obj: dict[str, Any], new: ApiModel, keys: tuple[str, ...]) -> bool:
        """Patch what changed of ``keys`` (nothing at all when nothing did); True when written."""
        patch = status.status_patch(obj.get("status"), new, keys)
        if patch is None:
            return False
        await self.store.write_status(kind, obj, patch)
        return True

    def leads(self) -> bool:
        """Blueprint-level work (revisions, rollouts, GitSources) is the leader's alone."""
        return self.shard is None or self.shard.leading()

    async def _write_member(self, name: str, raw: dict[str, Any], new: ApiModel, keys: tuple[str, ...]) -> bool:
        """``_write`` of a MemberCluster's status, behind the member's fence (raises FencedOut).

        A replica resumed after losing the member (paused past its Lease) must not write its
        older view over the status the new owner keeps: that owner's quiet resync would trust
        the stale status and skip the member until its full resync (``operator.quiet``)."""
        if self.shard is not None:
            self.shard.write_check(name)()
        return await self._write("MemberCluster", raw, new, keys)

    # --- Blueprint → BlueprintRevision ----------------------------------------------------

    async def publish(self, bp: dict[str, Any]) -> None:
        """Validate a Blueprint and capture its version as an immutable BlueprintRevision.

        The Blueprint's events and the rollout timer (which publishes what another replica's
        leadership left unpublished) may both ask at once: one publish per Blueprint at a time."""
        lock = self._publishing.setdefault(bp["metadata"]["name"], asyncio.Lock())
        async with lock:
            await self._publish(bp)

    async def _publish(self, bp: dict[str, Any]) -> None:
        name = bp["metadata"]["name"]
        try:
            model = Blueprint.model_validate(bp)
            compile_blueprint(model, self.settings.blueprint_limits)
        except ValidationError as exc:
            await self._invalid(bp, "Invalid", _errors(exc))
            return
        except BlueprintdError as exc:
            await self._invalid(bp, "Invalid", str(exc))
            return
        digest = model.content_hash()
        version = model.spec.version
        rev_name = revision_name(name, version)
        existing = await self.store.get("BlueprintRevision", rev_name)
        untyped = shorthand_issues(model.spec.parameters, ("spec", "parameters"))
        if existing is None and untyped:  # a new version declares its parameters; published ones keep reading
            await self._invalid(bp, "Invalid", "; ".join(f"{i.field}: {i.message}" for i in untyped))
            return
        if existing is None:
            refused = await self._chart_preflight(model)
            if refused:
                message = f"chart pre-flight failed for version {version}:\n{refused}"
                await self._invalid(bp, PREFLIGHT_FAILED, message)
                return
            annotations = (bp.get("metadata") or {}).get("annotations") or {}
            revision = BlueprintRevision(
                metadata=ObjectMeta(
                    name=rev_name,
                    labels={BLUEPRINT_LABEL: label_value(name)},
                    annotations={k: v for k, v in annotations.items() if k.startswith("blueprintd.io/git-")},
                ),
                spec=BlueprintRevisionSpec(
                    blueprint=name, version=version, content_hash=digest, spec=model.spec, source=_source_of(bp)
                ),
            )
            try:
                await self.store.create("BlueprintRevision", revision.to_wire())
                await self.store.event(bp, "RevisionCreated", f"captured version {version} as {rev_name}")
            except AlreadyExists:  # another replica (a previous leader) captured it meanwhile
                existing = await self.store.get("BlueprintRevision", rev_name)
        if existing is not None and BlueprintRevision.model_validate(existing).spec.content_hash != digest:
            await self._invalid(
                bp,
                "VersionReused",
                f"version {version} was already published with different content ({rev_name}); "
                "bump spec.version (semver) to publish new content, or restore the published content",
            )
            return
        new = status.fold_published(
            _blueprint_status(bp), bp["metadata"].get("generation"), rev_name, digest, version, now()
        )
        await self._write("Blueprint", bp, new, status.PUBLISH_KEYS)
        metrics.BLUEPRINT_VALID.labels(blueprint=bp["metadata"]["name"]).set(1)

    async def _chart_preflight(self, model: Blueprint) -> str:
        """Template the version's charts with the values rendered for every selected, reachable
        member (``blueprintd.preflight``); why it must not roll out, or "" when it may."""
        if not self.settings.chart_preflight:
            return ""
        clusters: list[tuple[Any, dict[str, Any]]] = []
        for raw in await self.store.list("MemberCluster"):
            mc = MemberCluster.model_validate(raw)
            if not selects(model, mc):
                continue
            try:
                facts = await collect_facts(await self._session(mc), mc)
            except Exception as exc:  # an unreachable member is checked by its own reconcile
                log.info("chart pre-flight: member %s skipped: %s", mc.metadata.name, exc)
                continue
            clusters.append((facts, mc.spec.parameters))
        try:
            states = await asyncio.to_thread(
                render_states,
                model,
                clusters,
                self.settings.chart_mirrors,
                self.settings.blueprint_limits,
                self.settings.cel_budget,
            )
        except BlueprintdError as exc:  # a render error is reported by the member's reconcile
            log.info("chart pre-flight: render failed: %s", exc)
            return ""
        helm = HelmPreflight(self.settings.helm, self.settings.workdir / "charts")
        report = await asyncio.to_thread(run_preflight, states, helm, self._preflight_memo)
        return refusal(report)

    async def _invalid(self, bp: dict[str, Any], reason: str, message: str) -> None:
        metrics.BLUEPRINT_VALID.labels(blueprint=bp["metadata"]["name"]).set(0)
        new = status.fold_invalid(_blueprint_status(bp), bp["metadata"].get("generation"), reason, message, now())
        if await self._write("Blueprint", bp, new, status.INVALID_KEYS):
            await self.store.event(bp, reason, message, "Warning")

    # --- rollout ---------------------------------------------------------------------------

    async def rollout(self, bp: dict[str, Any]) -> None:
        """Decide which version each selected cluster should run now; record it in status."""
        previous_status = _blueprint_status(bp)
        if not previous_status.revision:
            return  # not published (invalid or not seen yet)
        refused = any(c.type == "Valid" and c.reason == PREFLIGHT_FAILED for c in previous_status.conditions)
        model = Blueprint.model_validate(bp)
        target = target_version(model)
        if refused and target == model.spec.version:
            return  # the new version's charts refuse its values: nothing moves, the reason stays
        name = model.metadata.name
        if await self.store.get("BlueprintRevision", revision_name(name, target)) is None:
            await self._invalid(bp, "UnknownVersion", f"no BlueprintRevision for version {target}")
            return
        members = [MemberCluster.model_validate(m) for m in await self.store.list("MemberCluster")]
        views = [cluster_view(name, m) for m in members if selects(model, m)]
        previous = previous_status.rollout
        annotations = model.metadata.annotations
        decision = decide(
            model.spec.rollout,
            target,
            views,
            previous,
            now(),
            paused=annotations.get(PAUSE_ANNOTATION) == "true",
            resume_token=annotations.get(RESUME_ANNOTATION),
        )
        new = status.fold_rollout(previous_status, decision, views, target, now())
        if not self.leads():
            # Lost the leader Lease since the handler began (paused, starved): the decision was
            # made from reads the new leader has moved past; its own next decision stands.
            log.info("rollout of %s: not written, this replica no longer leads", name)
            return
        changed = await self._write("Blueprint", bp, new, status.ROLLOUT_KEYS)
        if changed and previous is not None and previous.phase != decision.phase:
            kind = "Warning" if decision.phase in ("Paused", "Failed", "RolledBack") else "Normal"
            await self.store.event(bp, f"Rollout{decision.phase}", decision.message, kind)
        metrics.ROLLOUT_PHASE.labels(blueprint=name).set(
            ["Progressing", "Paused", "Complete", "Failed", "RolledBack"].index(str(decision.phase))
        )

    # --- member clusters -----------------------------------------------------------------------

    async def _session(self, mc: MemberCluster) -> MemberSession:
        from blueprintd.cluster.kubeconfig import server_of

        raw, cfg = await member_kubeconfig(self.store, mc)
        name = mc.metadata.name
        fingerprint = str(hash(raw))
        cached = self._sessions.get(name)
        if cached and cached[0] == fingerprint:
            return cached[1]
        if cached:
            cached[1].close()
        agent = f"blueprintd-operator/{self.settings.replica_id}" if self.settings.replica_id else ""
        fence = self.shard.write_check(name) if self.shard is not None else unfenced
        session = MemberSession.open(
            name, cfg, self.settings.helm, self.settings.workdir, user_agent=agent, fence=fence
        )
        self._sessions[name] = (fingerprint, session)
        log.info("connected to member %s at %s", name, server_of(cfg))
        return session

    def forget(self, name: str) -> None:
        self._quiet.pop(name, None)
        cached = self._sessions.pop(name, None)
        if cached:
            cached[1].close()

    async def let_go(self, name: str) -> None:
        """This member moved to another replica: stop drift-watching it and close its connection."""
        await self.drift.forget(name)
        self.forget(name)

    async def reconcile_member(self, raw: dict[str, Any]) -> MemberReconcile:
        """Bring one member cluster to the versions its Blueprints assign it.

        read → per-Blueprint pipeline and apply → fold → patch → hand the applied desired states
        to the drift monitor. A write this replica may no longer make, to the member or to its
        status (it lost the member mid-reconcile: ``blueprintd.cluster.fence``), ends the
        reconcile there: the write was not sent, and the new owner reconciles and reports, so
        nothing here is a failure."""
        try:
            return await self._reconcile_member(raw)
        except FencedOut as exc:
            log.warning("%s", exc)
            await self.let_go(exc.member)
            return MemberReconcile(exc.member)

    async def _reconcile_member(self, raw: dict[str, Any]) -> MemberReconcile:
        mc = MemberCluster.model_validate(raw)
        name = mc.metadata.name
        previous = mc.status or MemberClusterStatus()
        started = time.monotonic()
        if self.shard is not None and not await self.shard.admit(raw, self.let_go):
            return MemberReconcile(name)  # another replica's member (blueprintd.shard.decide, rule 3)
        if mc.spec.paused:
            return MemberReconcile(name)
        # What a connection attempt tries: a changed spec (a fixed kubeconfig reference) is a
        # new attempt and is tried at once; the same one waits for status.backoff.nextAttempt.
        connect = attempt_key(mc.metadata.generation, mc.spec.kubeconfig_secret_ref.to_wire())
        if not previous.reachable and not due(previous.backoff, connect, now()):
            return MemberReconcile(name, status=previous)  # backing off: no connection, no write
        blueprints = await self._blueprints()
        key = quiet.inputs_key(mc, [bp if bp is not None else (n, g) for n, g, bp in blueprints])
        changes = self.drift.observed_changes(name)
        skip, _ = quiet.decide(
            self._quiet.get(name), key, changes, started, self.settings.member_full_resync_seconds
        )
        if skip:  # nothing it would read changed: no member I/O, no render, no write
            metrics.RECONCILES.labels(kind="MemberCluster", result="quiet").inc()
            return MemberReconcile(name, status=previous)
        self._quiet.pop(name, None)
        try:
            session = await self._session(mc)
            k8s_version = await session.version()
            facts = await collect_facts(session, mc)
        except Exception as exc:  # a refused kubeconfig, or the member is down or refusing us
            metrics.RECONCILES.labels(kind="MemberCluster", result="unreachable").inc()
            metrics.CLUSTER_REACHABLE.labels(cluster=name).set(0)
            self.forget(name)
            if isinstance(exc, BlueprintdError):
                reason, message = "ConnectFailed", str(exc)
            else:  # urllib3/kubernetes errors
                reason, message = "Unreachable", f"member API server unreachable: {type(exc).__name__}"
            down = status.fold_unreachable(
                previous, reason, message, now(), attempt=connect, policy=self.settings.backoff, cluster=name
            )
            patched = await self._write_member(name, raw, down, status.UNREACHABLE_KEYS)
            return MemberReconcile(name, status=down, patched=patched)

        # `blueprintd drift restore` sets the annotation; a value not carried out yet makes this
        # reconcile also apply the drift that notify/block modes otherwise leave alone.
        request, restore = restore_request(mc)
        self._stored[name] = raw
        self.drift.reconciling(name)  # until track, drift holds what the plans announce (on_plan)
        try:
            outcomes = await self._outcomes(session, mc, previous, facts, restore, blueprints)
        finally:
            self._stored.pop(name, None)
        observed = status.MemberObservation(
            kubernetes_version=k8s_version,
            pools=status.pool_summaries(facts.pools),
            outcomes=outcomes,
            restore_request=request,
            restore=restore,
        )
        new = status.fold_member(previous, observed, now(), policy=self.settings.backoff, cluster=name)
        patched = await self._write_member(name, raw, new, status.MEMBER_KEYS)
        if quiet.converged(mc, new):
            self._quiet[name] = quiet.QuietMark(key, changes, started)
        states = {p.blueprint: p.state for p in new.blueprints}
        ready = [d for (c, b), d in self._rendered.items() if c == name and states.get(b) in ("Ready", "Drifted")]
        await self.drift.track(name, session, ready, raw, writes_of(outcomes))
        all_ready = any(c.type == "Ready" and c.status == "True" for c in new.conditions)
        metrics.CLUSTER_REACHABLE.labels(cluster=name).set(1)
        metrics.CLUSTER_READY.labels(cluster=name).set(1 if all_ready and not new.last_error else 0)
        metrics.RECONCILES.labels(kind="MemberCluster", result="ok" if not new.last_error else "failed").inc()
        metrics.RECONCILE_SECONDS.labels(kind="MemberCluster").observe(time.monotonic() - started)
        return MemberReconcile(name, outcomes, new, patched)

    async def _blueprints(self) -> list[tuple[str, int, Blueprint | None]]:
        """Every Blueprint by name (name, generation, the model; None when it fails validation)."""
        out: list[tuple[str, int, Blueprint | None]] = []
        for raw_bp in sorted(await self.store.list("Blueprint"), key=lambda b: b["metadata"]["name"]):
            meta = raw_bp["metadata"]
            try:
                out.append((meta["name"], int(meta.get("generation") or 0), Blueprint.model_validate(raw_bp)))
            except ValidationError:
                out.append((meta["name"], int(meta.get("generation") or 0), None))
        return out

    async def _outcomes(
        self,
        session: MemberSession,
        mc: MemberCluster,
        previous: MemberClusterStatus,
        facts: Any,
        restore: bool,
        blueprints: list[tuple[str, int, Blueprint | None]],
    ) -> list[status.Outcome]:
        """Run the pipeline and apply for every Blueprint that selects ``mc``; release the ones
        that stopped selecting it. One typed outcome each, for the fold."""
        progress = {p.blueprint: p for p in previous.blueprints}
        # The inputs of a render besides the (immutable) revision: a change in any of them is a
        # new attempt, retried at once rather than after the previous failure's backoff.
        member_inputs = (
            mc.metadata.labels,
            mc.spec.to_wire().get("parameters", {}),
            [p.to_wire() for p in status.pool_summaries(facts.pools)],
        )
        outcomes: list[status.Outcome] = []
        selecting: set[str] = set()  # Blueprints that (still) select this cluster, or cannot be read
        on_unselect: dict[str, UnselectAction] = {}
        for bp_name, _, bp in blueprints:
            if bp is None:
                selecting.add(bp_name)  # never prune on a Blueprint we cannot read
                continue
            if bp.status is None or not bp.status.revision:
                continue  # not published (invalid or not seen yet)
            on_unselect[bp_name] = bp.spec.on_unselect
            if not selects(bp, mc):
                continue
            selecting.add(bp_name)
            version = assigned_version(bp, mc).version
            if version is None:
                continue
            prev = progress.get(bp_name)
            attempt = attempt_key(version, *member_inputs)
            if prev is not None and prev.state == "Failed" and not due(prev.backoff, attempt, now()):
                outcomes.append(status.Backoff(bp_name))  # no render, no helm, no write until nextAttempt
                continue
            outcomes.append(
                await self._apply(session, mc, bp_name, version, bp.spec.on_unselect, facts, restore, attempt)
            )
        for bp_name in sorted(set(progress) - selecting):
            entry = progress[bp_name]
            action = on_unselect.get(bp_name) or entry.on_unselect or "Orphan"
            outcomes.append(status.Unselected(bp_name, await self._unselect(session, mc, bp_name, entry, action)))
        return outcomes

    async def _apply(
        self,
        session: MemberSession,
        mc: MemberCluster,
        bp_name: str,
        version: str,
        on_unselect: UnselectAction,
        facts: Any,
        restore: bool,
        attempt: str = "",
    ) -> status.Applied | status.NotApplied:
        name = mc.metadata.name
        try:
            prepared = await prepare(
                self.revisions, bp_name, version, facts, mc, self.settings.chart_mirrors, self.settings.cel_budget
            )
        except PipelineError as exc:
            return status.NotApplied(bp_name, version, str(exc), on_unselect, attempt)
        self._rendered[(name, bp_name)] = prepared.desired
        watch = self._watch(session, name, bp_name, version)
        result = await reconcile(
            session,
            prepared.desired,
            prepared.inventory,
            restore_drift=restore,
            watch=watch,
            on_plan=self._will_write(name),
        )
        if result.writes:
            metrics.MEMBER_WRITES.labels(cluster=name).inc(result.writes)
            log.info(
                "member %s: %s@%s: %d writes, %s",
                name,
                bp_name,
                version,
                result.writes,
                "ready" if result.ready else f"failed: {result.error}",
            )
        return status.Applied(bp_name, version, result, on_unselect, prepared.revision.content_hash, attempt)

    def _watch(self, session: MemberSession, name: str, bp_name: str, version: str) -> StepWatch | None:
        """Reports each running add-on step of ``bp_name`` into the member's status (only changes)."""
        raw = self._stored.get(name)
        if raw is None:
            return None

        async def publish(current: AddonProgress | None) -> None:
            previous = MemberClusterStatus.model_validate(raw.get("status") or {})
            new = status.fold_in_progress(previous, bp_name, version, current, now())
            await self._write_member(name, raw, new, status.PROGRESS_KEYS)

        return StepWatch(session, version, publish, self.settings.progress_interval_seconds)

    def _will_write(self, cluster: str) -> Callable[[Writes], None]:
        return lambda planned: self.drift.will_write(cluster, planned)

    async def _unselect(
        self, session: MemberSession, mc: MemberCluster, bp_name: str, entry: BlueprintProgress, action: str
    ) -> str:
        """A Blueprint no longer selects this cluster: stop managing what it installed, and with
        ``onUnselect: Prune`` remove it (reverse install order, node labels included). Returns
        an error message, or "" when done."""
        name = mc.metadata.name
        self._rendered.pop((name, bp_name), None)  # the drift monitor stops watching it on track()
        inventory: Inventory = entry.inventory if entry.inventory.blueprint else Inventory(blueprint=bp_name)
        if action == "Prune":
            empty = DesiredState(blueprint=bp_name, version=str(entry.version), revision="", cluster=name, steps=[])
            result = await reconcile(session, empty, inventory, on_plan=self._will_write(name))
            if result.error:
                return f"pruning {bp_name}, which no longer selects this cluster: {result.error}"
            metrics.MEMBER_WRITES.labels(cluster=name).inc(result.writes)
        try:
            await self.drift.release_blueprint(name, session, bp_name)
        except Exception as exc:  # the member went away mid-way: retried on the next reconcile
            return f"removing the drift policies of {bp_name}: {type(exc).__name__}: {exc}"
        what = (
            "removed everything it had installed"
            if action == "Prune"
            else "left its add-ons in place, no longer managed (onUnselect: Orphan)"
        )
        log.info("member %s: Blueprint %s no longer selects it: %s", name, bp_name, what)
        await self.store.event(
            mc.to_wire(),
            "BlueprintUnselected",
            f"Blueprint {bp_name} no longer selects this cluster: {what}",
        )
        return ""


def _source_of(bp: dict[str, Any]) -> RevisionSourceRef:
    """Where a Blueprint's content came from: the GitSource annotations, else ``kubectl``."""
    ann = (bp.get("metadata") or {}).get("annotations") or {}
    if ann.get("blueprintd.io/git-commit"):
        return RevisionSourceRef(
            kind="git",
            repo=ann.get("blueprintd.io/git-repo", ""),
            commit=ann["blueprintd.io/git-commit"],
            path=ann.get("blueprintd.io/git-path", ""),
        )
    return RevisionSourceRef(kind="kubectl")

