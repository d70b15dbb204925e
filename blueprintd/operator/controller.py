"""The operator's work, independent of kopf: publish revisions, decide rollouts, reconcile members.

Each entry point reads the objects it needs from the management cluster, calls the pure core
(validation, render, plan, rollout decision) and the member-cluster adapters, and writes the
outcome back as status. kopf handlers (``handlers.py``) only call these functions, which keeps
the logic testable without kopf and identical for every operator replica.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from blueprintd.api import membercluster
from blueprintd.api.blueprint import Blueprint
from blueprintd.api.common import matches
from blueprintd.api.params import shorthand_issues
from blueprintd.api.revision import revision_name
from blueprintd.cluster.kubeconfig import check_kubeconfig, parse_kubeconfig, server_of
from blueprintd.cluster.management import ManagementStore
from blueprintd.cluster.reconcile import ReconcileResult, reconcile
from blueprintd.cluster.session import MemberSession
from blueprintd.drift.monitor import DriftMonitor
from blueprintd.errors import BlueprintdError
from blueprintd.operator import metrics
from blueprintd.operator.settings import OperatorSettings
from blueprintd.plan.inventory import Inventory
from blueprintd.render import RenderOptions, compile_blueprint, render
from blueprintd.render.desired import DesiredState
from blueprintd.rollout import ClusterView, RolloutStatus, decide

log = logging.getLogger("blueprintd.operator")

ROLLBACK_ANNOTATION = "blueprintd.io/rollback-to"  # "<version>@<spec.version it was set at>"
PAUSE_ANNOTATION = "blueprintd.io/rollout-paused"
RESTORE_ANNOTATION = membercluster.RESTORE_ANNOTATION
RESUME_ANNOTATION = "blueprintd.io/rollout-resume"


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def condition(type_: str, ok: bool, reason: str, message: str, previous: list[dict[str, Any]]) -> dict[str, Any]:
    """A Kubernetes condition that keeps lastTransitionTime when the status did not flip."""
    status = "True" if ok else "False"
    old = next((c for c in previous if c.get("type") == type_), None)
    since = old["lastTransitionTime"] if old and old.get("status") == status else iso(now())
    return {"type": type_, "status": status, "reason": reason, "message": message[:2048], "lastTransitionTime": since}


def _errors(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:10])


def target_version(bp: dict[str, Any]) -> str:
    """spec.version, unless `blueprintd rollback` set an earlier version for this spec.version."""
    spec_version = str((bp.get("spec") or {}).get("version", ""))
    note = str(((bp.get("metadata") or {}).get("annotations") or {}).get(ROLLBACK_ANNOTATION, ""))
    if "@" in note:
        wanted, at = note.split("@", 1)
        if at == spec_version:
            return str(wanted)
    return spec_version


class Controller:
    def __init__(self, store: ManagementStore, settings: OperatorSettings) -> None:
        self.store = store
        self.settings = settings
        self._compiled: dict[str, Any] = {}
        self._sessions: dict[str, tuple[str, MemberSession]] = {}
        self.drift = DriftMonitor.from_env(store)
        self._rendered: dict[tuple[str, str], Any] = {}  # (cluster, blueprint) -> DesiredState, for drift

    # --- Blueprint → BlueprintRevision ----------------------------------------------------

    async def publish(self, bp: dict[str, Any]) -> None:
        """Validate a Blueprint and capture its version as an immutable BlueprintRevision."""
        name = bp["metadata"]["name"]
        conds = list((bp.get("status") or {}).get("conditions") or [])
        try:
            model = Blueprint.model_validate(bp)
            compile_blueprint(model, self.settings.blueprint_limits)
        except ValidationError as exc:
            await self._invalid(bp, "Invalid", _errors(exc), conds)
            return
        except BlueprintdError as exc:
            await self._invalid(bp, "Invalid", str(exc), conds)
            return
        digest = model.content_hash()
        version = model.spec.version
        rev_name = revision_name(name, version)
        existing = await self.store.get("BlueprintRevision", rev_name)
        untyped = shorthand_issues(model.spec.parameters, ("spec", "parameters"))
        if existing is None and untyped:  # a new version declares its parameters; published ones keep reading
            await self._invalid(bp, "Invalid", "; ".join(f"{i.field}: {i.message}" for i in untyped), conds)
            return
        if existing is None:
            source = (bp.get("metadata") or {}).get("annotations") or {}
            await self.store.create(
                "BlueprintRevision",
                {
                    "apiVersion": "blueprintd.io/v1alpha1",
                    "kind": "BlueprintRevision",
                    "metadata": {
                        "name": rev_name,
                        "labels": {"blueprintd.io/blueprint": name},
                        "annotations": {k: v for k, v in source.items() if k.startswith("blueprintd.io/git-")},
                    },
                    "spec": {
                        "blueprint": name,
                        "version": version,
                        "contentHash": digest,
                        "spec": model.spec.to_wire(),
                        "source": _source_of(bp),
                    },
                },
            )
            await self.store.event(bp, "RevisionCreated", f"captured version {version} as {rev_name}")
        elif existing["spec"].get("contentHash") != digest:
            await self._invalid(
                bp,
                "VersionReused",
                f"version {version} was already published with different content ({rev_name}); "
                "bump spec.version (semver) to publish new content, or restore the published content",
                conds,
            )
            return
        await self.store.patch_status(
            "Blueprint",
            bp,
            {
                "observedGeneration": bp["metadata"].get("generation"),
                "revision": rev_name,
                "contentHash": digest,
                "conditions": [condition("Valid", True, "Published", f"version {version} is {rev_name}", conds)]
                + [c for c in conds if c.get("type") not in ("Valid",)],
            },
        )

    async def _invalid(self, bp: dict[str, Any], reason: str, message: str, conds: list[dict[str, Any]]) -> None:
        changed = await self.store.patch_status(
            "Blueprint",
            bp,
            {
                "observedGeneration": bp["metadata"].get("generation"),
                "conditions": [condition("Valid", False, reason, message, conds)]
                + [c for c in conds if c.get("type") != "Valid"],
            },
        )
        if changed:
            await self.store.event(bp, reason, message, "Warning")

    # --- rollout ---------------------------------------------------------------------------

    async def rollout(self, bp: dict[str, Any]) -> None:
        """Decide which version each selected cluster should run now; record it in status."""
        status = bp.get("status") or {}
        if not status.get("revision"):
            return  # not published (invalid or not seen yet)
        model = Blueprint.model_validate(bp)
        name = model.metadata.name
        target = target_version(bp)
        if await self.store.get("BlueprintRevision", revision_name(name, target)) is None:
            await self._invalid(
                bp, "UnknownVersion", f"no BlueprintRevision for version {target}", list(status.get("conditions") or [])
            )
            return
        members = await self.store.list("MemberCluster")
        views = [
            self._view(name, m)
            for m in members
            if matches(model.spec.cluster_selector, (m["metadata"].get("labels") or {}))
        ]
        previous = RolloutStatus.model_validate(status["rollout"]) if status.get("rollout") else None
        annotations = bp["metadata"].get("annotations") or {}
        decision = decide(
            model.spec.rollout,
            target,
            views,
            previous,
            now(),
            paused=annotations.get(PAUSE_ANNOTATION) == "true",
            resume_token=annotations.get(RESUME_ANNOTATION),
        )
        ready = sum(1 for v in views if v.applied_version == target and v.state == "Ready")
        conds = list(status.get("conditions") or [])
        rolling = decision.phase not in ("Complete",)
        new_status = {
            "rollout": decision.to_wire(),
            "matchedClusters": len(views),
            "readyClusters": ready,
            "conditions": [c for c in conds if c.get("type") not in ("RollingOut", "Ready")]
            + [
                condition("RollingOut", rolling, str(decision.phase), decision.message, conds),
                condition(
                    "Ready",
                    decision.phase == "Complete" and ready == len(views),
                    str(decision.phase),
                    f"{ready}/{len(views)} clusters ready at {target}",
                    conds,
                ),
            ],
        }
        changed = await self.store.patch_status("Blueprint", bp, new_status)
        if changed and previous is not None and previous.phase != decision.phase:
            kind = "Warning" if decision.phase in ("Paused", "Failed", "RolledBack") else "Normal"
            await self.store.event(bp, f"Rollout{decision.phase}", decision.message, kind)
        metrics.ROLLOUT_PHASE.labels(blueprint=name).set(
            ["Progressing", "Paused", "Complete", "Failed", "RolledBack"].index(str(decision.phase))
        )

    def _view(self, blueprint: str, mc: dict[str, Any]) -> ClusterView:
        spec = mc.get("spec") or {}
        st = mc.get("status") or {}
        pin = next((p["version"] for p in spec.get("versionPins") or [] if p.get("blueprint") == blueprint), None)
        applied = next(
            (a["version"] for a in st.get("appliedRevisions") or [] if a.get("blueprint") == blueprint), None
        )
        prog: dict[str, Any] = next((p for p in st.get("blueprints") or [] if p.get("blueprint") == blueprint), {})
        since = prog.get("since")
        return ClusterView(
            name=mc["metadata"]["name"],
            labels=mc["metadata"].get("labels") or {},
            pinned_version=pin,
            applied_version=applied,
            state=prog.get("state", "Pending"),
            state_version=prog.get("version"),
            failed_addon=prog.get("failedAddon") or None,
            message=prog.get("message", ""),
            since=datetime.fromisoformat(since.replace("Z", "+00:00")) if since else None,
            reachable=bool(st.get("reachable", False)),
        )

    # --- member clusters -----------------------------------------------------------------------

    async def _session(self, mc: dict[str, Any]) -> MemberSession:
        spec = mc.get("spec") or {}
        ref = spec.get("kubeconfigSecretRef") or {}
        raw = await self.store.secret_value(ref.get("name", ""), ref.get("key", "kubeconfig"), ref.get("namespace"))
        cfg = parse_kubeconfig(raw)
        check_kubeconfig(
            cfg, allow_exec=bool(spec.get("allowExecAuth")), allow_local_files=bool(spec.get("allowLocalFiles"))
        )
        name = mc["metadata"]["name"]
        fingerprint = str(hash(raw))
        cached = self._sessions.get(name)
        if cached and cached[0] == fingerprint:
            return cached[1]
        if cached:
            cached[1].close()
        session = MemberSession.open(name, cfg, self.settings.helm, self.settings.workdir)
        self._sessions[name] = (fingerprint, session)
        log.info("connected to member %s at %s", name, server_of(cfg))
        return session

    def forget(self, name: str) -> None:
        cached = self._sessions.pop(name, None)
        if cached:
            cached[1].close()

    async def reconcile_member(self, mc: dict[str, Any]) -> None:
        """Bring one member cluster to the versions its Blueprints assign it."""
        from blueprintd.facts.collect.live import collect_cluster_facts

        name = mc["metadata"]["name"]
        spec = mc.get("spec") or {}
        st = dict(mc.get("status") or {})
        conds = list(st.get("conditions") or [])
        started = time.monotonic()
        if spec.get("paused"):
            return
        try:
            session = await self._session(mc)
            k8s_version = await session.version()
            facts = await asyncio.to_thread(
                collect_cluster_facts, session.api_client, name, cluster_labels=mc["metadata"].get("labels") or {}
            )
        except BlueprintdError as exc:
            metrics.RECONCILES.labels(kind="MemberCluster", result="unreachable").inc()
            self.forget(name)
            await self.store.patch_status(
                "MemberCluster",
                mc,
                {
                    "reachable": False,
                    "lastError": str(exc)[:4096],
                    "conditions": _merge_conds(conds, condition("Reachable", False, "ConnectFailed", str(exc), conds)),
                },
            )
            return
        except Exception as exc:  # urllib3/kubernetes errors: the member is down or refusing us
            metrics.RECONCILES.labels(kind="MemberCluster", result="unreachable").inc()
            self.forget(name)
            msg = f"member API server unreachable: {type(exc).__name__}"
            await self.store.patch_status(
                "MemberCluster",
                mc,
                {
                    "reachable": False,
                    "lastError": msg,
                    "conditions": _merge_conds(conds, condition("Reachable", False, "Unreachable", msg, conds)),
                },
            )
            return

        # `blueprintd drift restore` sets the annotation; a value not carried out yet makes this
        # reconcile also apply the drift that notify/block modes otherwise leave alone.
        restore_request = ((mc["metadata"].get("annotations") or {}).get(RESTORE_ANNOTATION) or "").strip()
        restore = bool(restore_request) and restore_request != st.get("driftRestored", "")
        blueprints = [b for b in await self.store.list("Blueprint") if (b.get("status") or {}).get("revision")]
        progress = {p["blueprint"]: p for p in st.get("blueprints") or []}
        applied = {a["blueprint"]: a for a in st.get("appliedRevisions") or []}
        addons: list[dict[str, Any]] = []
        last_error = ""
        selecting: set[str] = set()  # Blueprints that (still) select this cluster, or cannot be read
        on_unselect: dict[str, str] = {}
        for bp in sorted(blueprints, key=lambda b: b["metadata"]["name"]):
            bp_name = bp["metadata"]["name"]
            try:
                model = Blueprint.model_validate(bp)
            except ValidationError:
                selecting.add(bp_name)  # never prune on a Blueprint we cannot read
                continue
            on_unselect[bp_name] = model.spec.on_unselect
            if not matches(model.spec.cluster_selector, mc["metadata"].get("labels") or {}):
                continue
            selecting.add(bp_name)
            version = self._assigned_version(bp, mc)
            if version is None:
                continue
            prev = progress.get(bp_name, {})
            if (
                prev.get("state") == "Failed"
                and prev.get("version") == version
                and _age(prev.get("lastAttempt")) < self.settings.failure_retry_seconds
            ):
                addons += [a for a in st.get("addons") or [] if a.get("blueprint") == bp_name]
                last_error = prev.get("message", "")
                continue
            result, err = await self._reconcile_blueprint(session, bp_name, version, facts, mc, prev, restore)
            if result is not None and result.writes:
                metrics.MEMBER_WRITES.labels(cluster=name).inc(result.writes)
            entry = _progress_entry(bp_name, version, result, err, prev)
            entry["onUnselect"] = model.spec.on_unselect
            progress[bp_name] = entry
            if result is not None:
                addons += [
                    {
                        "name": a.name,
                        "blueprint": bp_name,
                        "state": a.state,
                        "message": a.message[:4096],
                        "revision": version,
                    }
                    for a in result.addons
                ]
                if result.ready and applied.get(bp_name, {}).get("version") != version:
                    applied[bp_name] = {
                        "blueprint": bp_name,
                        "version": version,
                        "revision": revision_name(bp_name, version),
                        "contentHash": result.content_hash,
                        "appliedAt": iso(now()),
                    }
            if entry["state"] == "Failed":
                last_error = entry["message"]
        for bp_name in sorted(set(progress) - selecting):
            entry = progress[bp_name]
            action = on_unselect.get(bp_name) or entry.get("onUnselect") or "Orphan"
            err = await self._unselect(session, mc, bp_name, entry, action)
            if err:
                progress[bp_name] = {**entry, "state": "Failed", "message": err[:4096], "lastAttempt": iso(now())}
                last_error = err
                continue
            del progress[bp_name]
            applied.pop(bp_name, None)
        pools = [
            {
                "pool": p.name,
                "product": p.gpu_product,
                "nodes": len(p.nodes),
                "gpus": p.gpu_total,
                "mig": p.mig_enabled,
                "sandbox": p.sandbox,
            }
            for p in facts.pools
        ]
        all_ready = all(p.get("state") == "Ready" for p in progress.values()) and bool(progress)
        drifted = "; ".join(p.get("message", "") for p in progress.values() if p.get("state") == "Drifted")
        summary = ", ".join(f"{a['blueprint']}@{a['version']}" for a in applied.values())
        new_status = {
            "reachable": True,
            "kubernetesVersion": k8s_version,
            "factsSummary": pools,
            "blueprints": sorted(progress.values(), key=lambda p: p["blueprint"]),
            "appliedRevisions": sorted(applied.values(), key=lambda a: a["blueprint"]),
            "revisionSummary": summary,
            "addons": addons,
            "lastError": last_error[:4096],
            "driftRestored": restore_request if restore and not last_error else st.get("driftRestored", ""),
            "conditions": _merge_conds(
                conds,
                condition("Reachable", True, "Connected", f"Kubernetes {k8s_version}", conds),
                condition(
                    "Ready",
                    all_ready,
                    "Converged" if all_ready else ("DriftHeld" if drifted and not last_error else "NotConverged"),
                    last_error or drifted or ("all blueprints applied" if all_ready else "converging"),
                    conds,
                ),
            ),
        }
        await self.store.patch_status("MemberCluster", mc, new_status)
        ready = [
            d
            for (c, b), d in self._rendered.items()
            if c == name and progress.get(b, {}).get("state") in ("Ready", "Drifted")
        ]
        await self.drift.track(name, session, ready, mc)
        metrics.CLUSTER_READY.labels(cluster=name).set(1 if all_ready and not last_error else 0)
        metrics.RECONCILES.labels(kind="MemberCluster", result="ok" if not last_error else "failed").inc()
        metrics.RECONCILE_SECONDS.labels(kind="MemberCluster").observe(time.monotonic() - started)

    async def _unselect(
        self, session: MemberSession, mc: dict[str, Any], bp_name: str, entry: dict[str, Any], action: str
    ) -> str:
        """A Blueprint no longer selects this cluster: stop managing what it installed, and with
        ``onUnselect: Prune`` remove it (reverse install order, node labels included). Returns
        an error message, or "" when done."""
        name = mc["metadata"]["name"]
        self._rendered.pop((name, bp_name), None)  # the drift monitor stops watching it on track()
        inventory = Inventory.model_validate(entry.get("inventory") or {"blueprint": bp_name})
        if action == "Prune":
            empty = DesiredState(
                blueprint=bp_name, version=str(entry.get("version", "")), revision="", cluster=name, steps=[]
            )
            result = await reconcile(session, empty, inventory)
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
        await self.store.event(mc, "BlueprintUnselected", f"Blueprint {bp_name} no longer selects this cluster: {what}")
        return ""

    def _assigned_version(self, bp: dict[str, Any], mc: dict[str, Any]) -> str | None:
        name = mc["metadata"]["name"]
        for pin in (mc.get("spec") or {}).get("versionPins") or []:
            if pin.get("blueprint") == bp["metadata"]["name"]:
                return str(pin["version"])
        rollout = (bp.get("status") or {}).get("rollout") or {}
        got = (rollout.get("assignments") or {}).get(name)
        return str(got) if got else None

    async def _reconcile_blueprint(
        self,
        session: MemberSession,
        bp_name: str,
        version: str,
        facts: Any,
        mc: dict[str, Any],
        prev: dict[str, Any],
        restore: bool = False,
    ) -> tuple[ReconcileResult | None, str]:
        rev = await self.store.get("BlueprintRevision", revision_name(bp_name, version))
        if rev is None:
            return None, f"BlueprintRevision {revision_name(bp_name, version)} not found"
        key = f"{rev['metadata']['name']}:{rev['spec'].get('contentHash')}"
        compiled = self._compiled.get(key)
        try:
            if compiled is None:
                model = Blueprint.model_validate(
                    {
                        "apiVersion": "blueprintd.io/v1alpha1",
                        "kind": "Blueprint",
                        "metadata": {"name": bp_name},
                        "spec": rev["spec"]["spec"],
                    }
                )
                compiled = self._compiled[key] = compile_blueprint(model, self.settings.blueprint_limits)
            # In a worker thread: a render runs CEL from the Blueprint for up to the CEL deadline,
            # and the event loop keeps serving every other member and Blueprint meanwhile.
            desired = await asyncio.to_thread(
                render,
                compiled,
                facts,
                RenderOptions(
                    chart_mirrors=self.settings.chart_mirrors,
                    parameters=(mc.get("spec") or {}).get("parameters") or {},
                    cel_budget=self.settings.cel_budget,
                ),
            )
        except (ValidationError, BlueprintdError) as exc:
            return None, f"render failed: {exc}"
        self._rendered[(mc["metadata"]["name"], bp_name)] = desired
        inventory = Inventory.model_validate(prev.get("inventory") or {"blueprint": bp_name})
        result = await reconcile(session, desired, inventory, restore_drift=restore)
        result.content_hash = str(rev["spec"].get("contentHash", ""))
        if result.writes:
            log.info(
                "member %s: %s@%s: %d writes, %s",
                mc["metadata"]["name"],
                bp_name,
                version,
                result.writes,
                "ready" if result.ready else f"failed: {result.error}",
            )
        return result, result.error


def _source_of(bp: dict[str, Any]) -> dict[str, Any]:
    ann = (bp.get("metadata") or {}).get("annotations") or {}
    if ann.get("blueprintd.io/git-commit"):
        return {
            "kind": "git",
            "repo": ann.get("blueprintd.io/git-repo", ""),
            "commit": ann["blueprintd.io/git-commit"],
            "path": ann.get("blueprintd.io/git-path", ""),
        }
    return {"kind": "kubectl"}


def _age(ts: str | None) -> float:
    if not ts:
        return float("inf")
    return (now() - datetime.fromisoformat(ts.replace("Z", "+00:00"))).total_seconds()


def _progress_entry(
    bp: str, version: str, result: ReconcileResult | None, err: str, prev: dict[str, Any]
) -> dict[str, Any]:
    if result is None:
        state, addon = "Failed", ""
    elif result.ready:
        state, addon = "Ready", ""
    elif result.drifted and not result.failed_addon:
        state, addon = "Drifted", ""
        err = "; ".join(f"{a.name}: {a.message}" for a in result.addons if a.state == "Drifted")
    else:
        state, addon = "Failed", result.failed_addon
    same = prev.get("version") == version and prev.get("state") == state
    entry: dict[str, Any] = {
        "blueprint": bp,
        "version": version,
        "state": state,
        "failedAddon": addon,
        "message": (err or "")[:4096],
        "since": prev.get("since") if same else iso(now()),
        "lastAttempt": iso(now()) if state == "Failed" else prev.get("lastAttempt") if same else None,
        "inventory": (
            result.inventory.to_wire()
            if result is not None and result.inventory is not None
            else prev.get("inventory") or {"blueprint": bp}
        ),
    }
    return {k: v for k, v in entry.items() if v is not None}


def _merge_conds(previous: list[dict[str, Any]], *new: dict[str, Any]) -> list[dict[str, Any]]:
    types = {c["type"] for c in new}
    return sorted([c for c in previous if c.get("type") not in types] + list(new), key=lambda c: c["type"])
