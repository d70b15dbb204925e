"""The I/O side of ``blueprintd diff``: read the fleet, render both sides per member, plan. Reads only.

For each member cluster and each candidate Blueprint it runs the pipeline the operator and
``blueprintd plan`` run — the MemberCluster's kubeconfig Secret and kubeconfig policy, a
member session, the hardware facts, ``render`` with the operator's chart mirrors and the
member's parameters, ``observe`` + ``plan_cluster`` against the live cluster — twice over:
once for the version the member is assigned now (as ``plan`` resolves it) and once for the
version the candidate would give it (its pin, else the candidate). ``compare`` turns the two
rendered states into the change list; the plan of the new side is what a reconcile would
write. Nothing here writes, to the management cluster or to a member (the fleet test checks
the audit logs).

``member_pipeline`` is the one seam to the operator's pipeline: everything per member that
is not a pure decision goes through it.
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from blueprintd.api.blueprint import Blueprint
from blueprintd.api.common import LabelSelector, matches
from blueprintd.api.revision import revision_name
from blueprintd.api.rollout import ClusterView
from blueprintd.cluster.management import ManagementStore
from blueprintd.errors import BlueprintdError
from blueprintd.preview.compare import compare
from blueprintd.preview.group import FleetPreview, MemberPreview, group
from blueprintd.render import RenderOptions, compile_blueprint, render
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


def assigned_version(bp: dict[str, Any], mc: dict[str, Any]) -> tuple[str, str]:
    """The version the operator converges ``mc`` to now, and why (the operator pipeline's answer, as ``plan``)."""
    from blueprintd.api.membercluster import MemberCluster
    from blueprintd.operator.pipeline import assigned_version as pipeline_assigned

    got = pipeline_assigned(Blueprint.model_validate(bp), MemberCluster.model_validate(mc))
    return got.planned, got.reason


def revision_blueprint(name: str, rev: dict[str, Any]) -> Blueprint:
    return Blueprint.model_validate(
        {
            "apiVersion": "blueprintd.io/v1alpha1",
            "kind": "Blueprint",
            "metadata": {"name": name},
            "spec": rev["spec"]["spec"],
        }
    )


class Revisions:
    """Published versions of one Blueprint, compiled once."""

    def __init__(self, store: ManagementStore, name: str) -> None:
        self.store, self.name = store, name
        self._cache: dict[str, CompiledBlueprint] = {}

    async def raw(self, version: str) -> dict[str, Any] | None:
        return await self.store.get("BlueprintRevision", revision_name(self.name, version))

    async def compiled(self, version: str) -> CompiledBlueprint:
        if version not in self._cache:
            rev = await self.raw(version)
            if rev is None:
                raise BlueprintdError(f"no BlueprintRevision for {self.name} {version} (is the operator running?)")
            try:
                self._cache[version] = compile_blueprint(revision_blueprint(self.name, rev))
            except ValidationError as exc:
                raise BlueprintdError(f"BlueprintRevision of {self.name} {version} is invalid: {exc}") from None
        return self._cache[version]


async def member_pipeline(
    store: ManagementStore,
    mc: dict[str, Any],
    sides: list[tuple[str, CompiledBlueprint | None, bool]],
    mirrors: dict[str, str],
    helm: Path,
) -> list[MemberSide]:
    """Render each (Blueprint, compiled version, plan it?) for one member and, where asked, plan the
    rendered state against the live cluster (the operator's reconcile, without apply). ``None``:
    the Blueprint does not select the member on that side."""
    from blueprintd.cluster.kubeconfig import check_kubeconfig, parse_kubeconfig
    from blueprintd.cluster.session import MemberSession
    from blueprintd.facts.collect.live import collect_cluster_facts
    from blueprintd.plan.inventory import Inventory
    from blueprintd.plan.planner import plan_cluster

    name = mc["metadata"]["name"]
    spec = mc.get("spec") or {}
    ref = spec.get("kubeconfigSecretRef") or {}
    raw = await store.secret_value(ref.get("name", ""), ref.get("key", "kubeconfig"), ref.get("namespace"))
    cfg = parse_kubeconfig(raw)
    check_kubeconfig(
        cfg, allow_exec=bool(spec.get("allowExecAuth")), allow_local_files=bool(spec.get("allowLocalFiles"))
    )
    options = RenderOptions(chart_mirrors=mirrors, parameters=spec.get("parameters") or {})
    progresses = (mc.get("status") or {}).get("blueprints") or []
    out: list[MemberSide] = []
    with tempfile.TemporaryDirectory(prefix="blueprintd-diff-") as tmp:
        session = MemberSession.open(name, cfg, helm, Path(tmp))
        try:
            facts = await asyncio.to_thread(
                collect_cluster_facts, session.api_client, name, cluster_labels=mc["metadata"].get("labels") or {}
            )
            for blueprint, compiled, want_plan in sides:
                if compiled is None:
                    out.append(MemberSide(None))
                    continue
                desired = render(compiled, facts, options)
                if not want_plan:
                    out.append(MemberSide(desired))
                    continue
                progress: dict[str, Any] = next((p for p in progresses if p.get("blueprint") == blueprint), {})
                inventory = Inventory.model_validate(progress.get("inventory") or {"blueprint": blueprint})
                live = await session.observe(desired, inventory)
                plan = plan_cluster(desired, live, inventory)
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
    mirrors: dict[str, str],
    helm: Path,
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
    current: dict[str, dict[str, Any] | None] = {}
    revisions: dict[str, Revisions] = {}
    waves: dict[str, dict[str, str]] = {}
    compiled: dict[str, CompiledBlueprint] = {}
    for c in candidates:
        current[c.name] = await store.get("Blueprint", c.name)
        revisions[c.name] = Revisions(store, c.name)
        published = await revisions[c.name].raw(c.version)
        if published is not None and published["spec"].get("contentHash") != c.blueprint.content_hash():
            raise BlueprintdError(
                f"{c.source}: version {c.version} of {c.name} is already published with different content "
                f"({revision_name(c.name, c.version)}); the operator would refuse it: bump spec.version"
            )
        compiled[c.name] = compile_blueprint(c.blueprint)
        waves[c.name] = _waves(c, everyone)

    results: list[MemberPreview] = []
    for mc in members:
        name, labels = mc["metadata"]["name"], mc["metadata"].get("labels") or {}
        plans: list[tuple[Candidate, MemberPreview, int]] = []
        sides: list[tuple[str, CompiledBlueprint | None, bool]] = []
        try:
            for c in candidates:
                bp = current[c.name]
                before_sel = bp is not None and matches(
                    Blueprint.model_validate(bp).spec.cluster_selector, labels
                )
                after_sel = matches(c.blueprint.spec.cluster_selector, labels)
                if not before_sel and not after_sel:
                    continue
                v_from = assigned_version(bp, mc)[0] if bp is not None and before_sel else None
                pin = _pin(mc, c.name)
                v_to = (pin or c.version) if after_sel else None
                why = "pinned on the MemberCluster" if pin and after_sel else waves[c.name].get(name, "")
                if not after_sel:
                    why = "the Blueprint no longer selects this cluster"
                mp = MemberPreview(
                    cluster=name, blueprint=c.name, selected_before=before_sel, selected_after=after_sel,
                    version_from=v_from, version_to=v_to, why=why,
                )
                plans.append((c, mp, len(sides)))
                sides.append((c.name, await revisions[c.name].compiled(v_from) if v_from else None, False))
                if v_to is None:
                    sides.append((c.name, None, False))
                else:
                    to = compiled[c.name] if v_to == c.version else await revisions[c.name].compiled(v_to)
                    sides.append((c.name, to, True))
            if not plans:
                continue
            rendered = await member_pipeline(store, mc, sides, mirrors, helm)
            for _c, mp, i in plans:
                before, after = rendered[i], rendered[i + 1]
                mp.changes = compare(before.desired, after.desired)
                mp.actions = after.actions
                results.append(mp)
        except BlueprintdError as exc:
            results += [mp.model_copy(update={"error": str(exc)}) for _c, mp, _i in plans] or [
                MemberPreview(cluster=name, blueprint=candidates[0].name, error=str(exc))
            ]
        except Exception as exc:  # the member's API server is unreachable, helm failed, ...
            msg = f"{type(exc).__name__}: {str(exc)[:300]}"
            results += [mp.model_copy(update={"error": msg}) for _c, mp, _i in plans] or [
                MemberPreview(cluster=name, blueprint=candidates[0].name, error=msg)
            ]
    return group(results)
