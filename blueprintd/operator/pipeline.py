"""The per-member pipeline: what one Blueprint means for one member cluster, right now.

    MemberCluster ─ kubeconfig Secret → checked kubeconfig → session      (read, I/O)
    Blueprint + MemberCluster → assigned version, and why                 (pure)
    version → BlueprintRevision → compiled Blueprint                      (read, cached)
    compiled + cluster facts + member parameters → desired state          (pure)
    desired + live state + inventory → plan                               (read + pure)

The operator's reconcile, ``blueprintd plan`` and ``blueprintd diff`` (preview/fleet.py) go through
these same functions, so a plan shows exactly what the next reconcile does. Nothing here
writes anywhere: applying a plan is ``cluster.reconcile``'s job.
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from blueprintd.api.blueprint import Blueprint
from blueprintd.api.cel import CelBudget
from blueprintd.api.common import matches
from blueprintd.api.limits import BlueprintLimits
from blueprintd.api.membercluster import RESTORE_ANNOTATION, MemberCluster
from blueprintd.api.revision import revision_name
from blueprintd.api.rollout import ClusterView
from blueprintd.cluster.kubeconfig import check_kubeconfig, parse_kubeconfig
from blueprintd.cluster.management import ManagementStore
from blueprintd.cluster.reconcile import plan_member
from blueprintd.cluster.session import MemberSession
from blueprintd.errors import BlueprintdError
from blueprintd.plan.inventory import Inventory
from blueprintd.plan.planner import ClusterPlan
from blueprintd.render import CompiledBlueprint, RenderOptions, compile_blueprint, render
from blueprintd.render.desired import DesiredState

ROLLBACK_ANNOTATION = "blueprintd.io/rollback-to"  # "<version>@<spec.version it was set at>"


class PipelineError(BlueprintdError):
    """A step of the pipeline cannot produce its result (no revision, a render error)."""


# --- versions (pure) ----------------------------------------------------------------------------


def target_version(bp: Blueprint) -> str:
    """spec.version, unless `blueprintd rollback` set an earlier version for this spec.version."""
    note = bp.metadata.annotations.get(ROLLBACK_ANNOTATION, "")
    if "@" in note:
        wanted, at = note.split("@", 1)
        if at == bp.spec.version:
            return wanted
    return bp.spec.version


AssignmentSource = Literal["pin", "rollout", "none"]


@dataclass(frozen=True)
class Assignment:
    """The version a Blueprint assigns a member now (None: none yet), where it comes from, and why."""

    version: str | None
    source: AssignmentSource
    reason: str
    target: str  # the Blueprint's target version: what a preview shows when nothing is assigned yet

    @property
    def planned(self) -> str:
        return self.version if self.version is not None else self.target


def assigned_version(bp: Blueprint, mc: MemberCluster) -> Assignment:
    """A version pin on the MemberCluster wins; else the rollout's assignment; else nothing yet."""
    target = target_version(bp)
    for pin in mc.spec.version_pins:
        if pin.blueprint == bp.name:
            return Assignment(pin.version, "pin", "pinned on the MemberCluster", target)
    rollout = bp.status.rollout if bp.status is not None else None
    got = rollout.assignments.get(mc.metadata.name) if rollout is not None else None
    if got:
        return Assignment(got, "rollout", "assigned by the rollout", target)
    return Assignment(None, "none", "not assigned to this cluster yet; planning the Blueprint's target version", target)


def selects(bp: Blueprint, mc: MemberCluster) -> bool:
    return matches(bp.spec.cluster_selector, mc.metadata.labels)


def cluster_view(blueprint: str, mc: MemberCluster) -> ClusterView:
    """What the rollout decision needs to know about ``mc`` for ``blueprint``."""
    st = mc.status
    pin = next((p.version for p in mc.spec.version_pins if p.blueprint == blueprint), None)
    applied = next((a.version for a in st.applied_revisions if a.blueprint == blueprint), None) if st else None
    prog = next((p for p in st.blueprints if p.blueprint == blueprint), None) if st else None
    return ClusterView(
        name=mc.metadata.name,
        labels=mc.metadata.labels,
        pinned_version=pin,
        applied_version=applied,
        state=prog.state if prog else "Pending",
        state_version=prog.version if prog else None,
        failed_addon=(prog.failed_addon or None) if prog else None,
        message=prog.message if prog else "",
        since=prog.since if prog else None,
        reachable=bool(st.reachable) if st else False,
    )


def inventory_for(mc: MemberCluster, blueprint: str) -> Inventory:
    """What was applied for ``blueprint`` on ``mc`` (pruning and drift start from it)."""
    if mc.status is not None:
        for p in mc.status.blueprints:
            if p.blueprint == blueprint:
                return p.inventory if p.inventory.blueprint else p.inventory.model_copy(update={"blueprint": blueprint})
    return Inventory(blueprint=blueprint)


def restore_request(mc: MemberCluster) -> tuple[str, bool]:
    """The ``blueprintd drift restore`` request on ``mc`` and whether it is still to be carried out."""
    request = mc.metadata.annotations.get(RESTORE_ANNOTATION, "").strip()
    done = mc.status.drift_restored if mc.status is not None else ""
    return request, bool(request) and request != done


# --- reads --------------------------------------------------------------------------------------


async def member_kubeconfig(store: ManagementStore, mc: MemberCluster) -> tuple[str, dict[str, Any]]:
    """The member's kubeconfig from its Secret, refused unless the MemberCluster's policy allows it."""
    ref = mc.spec.kubeconfig_secret_ref
    raw = await store.secret_value(ref.name, ref.key, ref.namespace)
    cfg = parse_kubeconfig(raw)
    check_kubeconfig(cfg, allow_exec=mc.spec.allow_exec_auth, allow_local_files=mc.spec.allow_local_files)
    return raw, cfg


def revision_blueprint(blueprint: str, rev: dict[str, Any]) -> Blueprint:
    """The Blueprint a BlueprintRevision captured (raises ValidationError when it no longer validates)."""
    return Blueprint.model_validate(
        {
            "apiVersion": "blueprintd.io/v1alpha1",
            "kind": "Blueprint",
            "metadata": {"name": blueprint},
            "spec": rev["spec"]["spec"],
        }
    )


@dataclass(frozen=True)
class Revision:
    name: str
    content_hash: str
    compiled: CompiledBlueprint


class Revisions:
    """BlueprintRevisions, compiled once per content hash (they are immutable)."""

    def __init__(self, store: ManagementStore, limits: BlueprintLimits | None = None) -> None:
        self.store = store
        self.limits = limits or BlueprintLimits()
        self._compiled: dict[str, CompiledBlueprint] = {}

    async def get(self, blueprint: str, version: str) -> Revision:
        name = revision_name(blueprint, version)
        rev = await self.store.get("BlueprintRevision", name)
        if rev is None:
            raise PipelineError(f"BlueprintRevision {name} not found")
        content_hash = str(rev["spec"].get("contentHash", ""))
        key = f"{name}:{content_hash}"
        compiled = self._compiled.get(key)
        if compiled is None:
            try:
                model = revision_blueprint(blueprint, rev)
                compiled = self._compiled[key] = compile_blueprint(model, self.limits)
            except (ValidationError, BlueprintdError) as exc:
                raise PipelineError(f"render failed: {exc}") from None
        return Revision(name, content_hash, compiled)


# --- render (pure) --------------------------------------------------------------------------------


def render_for(
    compiled: CompiledBlueprint,
    facts: Any,
    mc: MemberCluster,
    chart_mirrors: dict[str, str],
    cel_budget: CelBudget | None = None,
) -> DesiredState:
    """The desired state of one compiled Blueprint on ``mc``, with the member's parameters."""
    try:
        options = RenderOptions(
            chart_mirrors=chart_mirrors, parameters=mc.spec.parameters, cel_budget=cel_budget or CelBudget()
        )
        return render(compiled, facts, options)
    except (ValidationError, BlueprintdError) as exc:
        raise PipelineError(f"render failed: {exc}") from None


async def desired_for(
    compiled: CompiledBlueprint,
    facts: Any,
    mc: MemberCluster,
    chart_mirrors: dict[str, str],
    cel_budget: CelBudget | None = None,
) -> DesiredState:
    """:func:`render_for` in a worker thread: a render runs CEL from the Blueprint for up to the
    CEL deadline, and the event loop keeps serving every other member and Blueprint meanwhile."""
    return await asyncio.to_thread(render_for, compiled, facts, mc, chart_mirrors, cel_budget)


@dataclass(frozen=True)
class Prepared:
    """One Blueprint ready to plan or apply on one member."""

    blueprint: str
    version: str
    revision: Revision
    desired: DesiredState
    inventory: Inventory


async def prepare(
    revisions: Revisions,
    blueprint: str,
    version: str,
    facts: Any,
    mc: MemberCluster,
    chart_mirrors: dict[str, str],
    cel_budget: CelBudget | None = None,
) -> Prepared:
    """Revision → compile → render for ``blueprint`` at ``version`` on ``mc``; raises PipelineError."""
    revision = await revisions.get(blueprint, version)
    desired = await desired_for(revision.compiled, facts, mc, chart_mirrors, cel_budget)
    return Prepared(blueprint, version, revision, desired, inventory_for(mc, blueprint))


async def collect_facts(session: MemberSession, mc: MemberCluster) -> Any:
    from blueprintd.facts.collect.live import collect_cluster_facts

    return await asyncio.to_thread(
        collect_cluster_facts, session.api_client, mc.metadata.name, cluster_labels=mc.metadata.labels
    )


# --- a read-only preview --------------------------------------------------------------------------


@dataclass(frozen=True)
class MemberPlan:
    """What the next reconcile of ``blueprint`` on ``cluster`` would do."""

    cluster: str
    blueprint: str
    assignment: Assignment
    selected: bool
    prepared: Prepared
    plan: ClusterPlan


async def preview(
    store: ManagementStore,
    blueprint: str,
    cluster: str,
    *,
    helm: Path,
    chart_mirrors: dict[str, str],
    limits: BlueprintLimits | None = None,
    cel_budget: CelBudget | None = None,
    revisions: Revisions | None = None,
) -> MemberPlan:
    """Plan ``blueprint`` on ``cluster`` exactly as the operator's next reconcile would, writing
    nothing (the member's kubeconfig lives in a private temporary directory meanwhile)."""
    raw_mc = await store.get("MemberCluster", cluster)
    if raw_mc is None:
        raise PipelineError(f"no MemberCluster {store.namespace}/{cluster}")
    raw_bp = await store.get("Blueprint", blueprint)
    if raw_bp is None:
        raise PipelineError(f"no Blueprint {store.namespace}/{blueprint}")
    mc = MemberCluster.model_validate(raw_mc)
    bp = Blueprint.model_validate(raw_bp)
    assignment = assigned_version(bp, mc)
    revisions = revisions or Revisions(store, limits)
    try:
        await revisions.get(blueprint, assignment.planned)
    except PipelineError as exc:
        raise PipelineError(f"{exc} (is the operator running?)") from None
    _, cfg = await member_kubeconfig(store, mc)
    _, restore = restore_request(mc)
    with tempfile.TemporaryDirectory(prefix="blueprintd-plan-") as tmp:
        session = MemberSession.open(cluster, cfg, helm, Path(tmp))
        try:
            facts = await collect_facts(session, mc)
            prepared = await prepare(revisions, blueprint, assignment.planned, facts, mc, chart_mirrors, cel_budget)
            plan = await plan_member(session, prepared.desired, prepared.inventory, restore_drift=restore)
        finally:
            session.close()
    return MemberPlan(cluster, blueprint, assignment, selects(bp, mc), prepared, plan)
