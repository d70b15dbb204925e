"""The I/O side of ``blueprintd diff``: read the fleet, render both sides per member, plan. Reads only.

For each member cluster and each candidate Blueprint it runs the steps of the operator's
pipeline (``operator.pipeline``, as ``blueprintd plan`` does) under the operator's settings
(``OperatorSettings``: chart mirrors, Blueprint limits, CEL budget) — the MemberCluster's
kubeconfig Secret and kubeconfig policy, a member session, the hardware facts, the render with
the member's parameters, ``plan_member`` against the live cluster — twice over: once for the
version the member is assigned now (as ``plan`` resolves it) and once for the version the
candidate would give it (its pin, else the candidate). ``compare`` turns the two rendered
states into the change list; the plan of the new side is what a reconcile would write.
Nothing here writes, to the management cluster or to a member (the fleet test checks the
audit logs).

``member_pipeline`` is the one seam to the operator's pipeline: everything per member that
is not a pure decision goes through it.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from blueprintd.api.blueprint import Blueprint
from blueprintd.api.common import LabelSelector, matches
from blueprintd.api.membercluster import MemberCluster
from blueprintd.api.revision import revision_name
from blueprintd.api.rollout import ClusterView
from blueprintd.cluster.management import ManagementStore
from blueprintd.cluster.reconcile import plan_member
from blueprintd.cluster.session import MemberSession
from blueprintd.errors import BlueprintdError
from blueprintd.operator.pipeline import (
    PipelineError,
    Revisions,
    assigned_version,
    collect_facts,
    desired_for,
    inventory_for,
    member_kubeconfig,
    selects,
)
from blueprintd.operator.settings import OperatorSettings
from blueprintd.preview.compare import compare
from blueprintd.preview.group import FleetPreview, MemberPreview, group
from blueprintd.render import compile_blueprint
from blueprintd.render.compiled import CompiledBlueprint
from blueprintd.render.desired import DesiredState
from blueprintd.rollout.decide import plan_waves


@dataclass
class Candidate:
    """A Blueprint as it would be published: from files (unpublished) or a BlueprintRevision."""

    blueprint: Blueprint
    source: str  # "blueprints/gpu-platform" or "BlueprintRevision gpu-platform-1.1.0"

    @property
    def name(self) -> str:
        return self.blueprint.name

    @property
    def version(self) -> str:
        return self.blueprint.spec.version


@dataclass
class MemberSide:
    """What the pipeline produced for one member and one version: the rendered state and the plan."""

    desired: DesiredState | None
    actions: list[dict[str, Any]] = field(default_factory=list)


async def member_pipeline(
    store: ManagementStore,
    mc: MemberCluster,
    sides: list[tuple[str, CompiledBlueprint | None, bool]],
    settings: OperatorSettings,
) -> list[MemberSide]:
    """Render each (Blueprint, compiled version, plan it?) for one member and, where asked, plan the
    rendered state against the live cluster (the operator's reconcile, without apply). ``None``:
    the Blueprint does not select the member on that side. Every step is the operator pipeline's
    own (``operator.pipeline``), under the operator's settings (chart mirrors, CEL budget)."""
    _, cfg = await member_kubeconfig(store, mc)
    out: list[MemberSide] = []
    with tempfile.TemporaryDirectory(prefix="blueprintd-diff-") as tmp:
        session = MemberSession.open(mc.metadata.name, cfg, settings.helm, Path(tmp))
        try:
            facts = await collect_facts(session, mc)
            for blueprint, compiled, want_plan in sides:
                if compiled is None:
                    out.append(MemberSide(None))
                    continue
                desired = await desired_for(compiled, facts, mc, settings.chart_mirrors, settings.cel_budget)
                if not want_plan:
                    out.append(MemberSide(desired))
                    continue
                plan = await plan_member(session, desired, inventory_for(mc, blueprint))
                actions = [a.model_dump(by_alias=True, exclude_none=True, exclude={"object"}) for a in plan.actions()]
                out.append(MemberSide(desired, actions))
        finally:
            session.close()
    return out


def _pin(mc: dict[str, Any], blueprint: str) -> str | None:
    for pin in (mc.get("spec") or {}).get("versionPins") or []:
        if pin.get("blueprint") == blueprint:
            return str(pin["version"])
    return None


def _waves(candidate: Candidate, members: list[dict[str, Any]]) -> dict[str, str]:
    """Why each selected, unpinned member gets the candidate: its wave in the rollout plan."""
    views = [
        ClusterView(name=m["metadata"]["name"], labels=m["metadata"].get("labels") or {})
        for m in members
        if matches(candidate.blueprint.spec.cluster_selector, m["metadata"].get("labels") or {})
        and _pin(m, candidate.name) is None
    ]
    waves = plan_waves(candidate.blueprint.spec.rollout, views)
    canary = candidate.blueprint.spec.rollout.canary is not None
    out = {}
    for i, wave in enumerate(waves):
        for n in wave:
            kind = " (canary)" if canary and i == 0 else ""
            out[n] = f"rollout wave {i + 1} of {len(waves)}{kind}"
    return out


async def preview(
    store: ManagementStore,
    candidates: list[Candidate],
    settings: OperatorSettings,
    only: LabelSelector | None = None,
    cluster: str | None = None,
) -> FleetPreview:
    """The fleet-wide preview of ``candidates`` (see the module docstring)."""
    everyone = sorted(await store.list("MemberCluster"), key=lambda m: m["metadata"]["name"])
    members = everyone
    if cluster is not None:
        members = [m for m in members if m["metadata"]["name"] == cluster]
        if not members:
            raise BlueprintdError(f"no MemberCluster named {cluster!r} in {store.namespace}")
    if only is not None:
        members = [m for m in members if matches(only, m["metadata"].get("labels") or {})]
    current: dict[str, Blueprint | None] = {}
    waves: dict[str, dict[str, str]] = {}
    compiled: dict[str, CompiledBlueprint] = {}
    for c in candidates:
        raw_bp = await store.get("Blueprint", c.name)
        current[c.name] = Blueprint.model_validate(raw_bp) if raw_bp is not None else None
        published = await store.get("BlueprintRevision", revision_name(c.name, c.version))
        if published is not None and published["spec"].get("contentHash") != c.blueprint.content_hash():
            raise BlueprintdError(
                f"{c.source}: version {c.version} of {c.name} is already published with different content "
                f"({revision_name(c.name, c.version)}); the operator would refuse it: bump spec.version"
            )
        compiled[c.name] = compile_blueprint(c.blueprint, settings.blueprint_limits)  # as the operator publishes it
        waves[c.name] = _waves(c, everyone)

    revisions = Revisions(store, settings.blueprint_limits)
    at: dict[tuple[str, str], CompiledBlueprint] = {}  # published versions, read and compiled once per preview

    async def compiled_at(blueprint: str, version: str) -> CompiledBlueprint:
        if (blueprint, version) not in at:
            try:
                at[blueprint, version] = (await revisions.get(blueprint, version)).compiled
            except PipelineError as exc:
                raise PipelineError(f"{exc} (is the operator running?)") from None
        return at[blueprint, version]

    results: list[MemberPreview] = []
    for raw in members:
        name, labels = raw["metadata"]["name"], raw["metadata"].get("labels") or {}
        plans: list[tuple[MemberPreview, int]] = []
        sides: list[tuple[str, CompiledBlueprint | None, bool]] = []
        try:
            mc = MemberCluster.model_validate(raw)
            for c in candidates:
                bp = current[c.name]
                before_sel = bp is not None and selects(bp, mc)
                after_sel = matches(c.blueprint.spec.cluster_selector, labels)
                if not before_sel and not after_sel:
                    continue
                v_from = assigned_version(bp, mc).planned if bp is not None and before_sel else None
                pin = _pin(raw, c.name)
                v_to = (pin or c.version) if after_sel else None
                why = "pinned on the MemberCluster" if pin and after_sel else waves[c.name].get(name, "")
                if not after_sel:
                    why = "the Blueprint no longer selects this cluster"
                mp = MemberPreview(
                    cluster=name, blueprint=c.name, selected_before=before_sel, selected_after=after_sel,
                    version_from=v_from, version_to=v_to, why=why,
                )
                plans.append((mp, len(sides)))
                sides.append((c.name, await compiled_at(c.name, v_from) if v_from else None, False))
                if v_to is None:
                    sides.append((c.name, None, False))
                else:
                    to = compiled[c.name] if v_to == c.version else await compiled_at(c.name, v_to)
                    sides.append((c.name, to, True))
            if not plans:
                continue
            rendered = await member_pipeline(store, mc, sides, settings)
            for mp, i in plans:
                before, after = rendered[i], rendered[i + 1]
                mp.changes = compare(before.desired, after.desired)
                mp.actions = after.actions
                results.append(mp)
        except BlueprintdError as exc:
            results += [mp.model_copy(update={"error": str(exc)}) for mp, _i in plans] or [
                MemberPreview(cluster=name, blueprint=candidates[0].name, error=str(exc))
            ]
        except Exception as exc:  # the member's API server is unreachable, helm failed, ...
            msg = f"{type(exc).__name__}: {str(exc)[:300]}"
            results += [mp.model_copy(update={"error": msg}) for mp, _i in plans] or [
                MemberPreview(cluster=name, blueprint=candidates[0].name, error=msg)
            ]
    return group(results)
