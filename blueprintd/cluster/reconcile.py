"""Reconcile one member cluster to one rendered Blueprint version.

observe → plan (pure) → apply step by step with health gates → label nodes → prune. The
first failing add-on stops the run: later add-ons are left exactly as they were and reported
Pending, so a cluster is never half-applied without the status saying which add-on failed
and why. An empty plan makes no write call at all.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field

from blueprintd.cluster.progress import StepKind, StepWatch, step_kind
from blueprintd.cluster.session import MemberSession, StepFailed
from blueprintd.cluster.writes import Writes
from blueprintd.plan.inventory import Inventory, inventory_of
from blueprintd.plan.planner import Action, ClusterPlan, plan_cluster
from blueprintd.render.desired import DesiredState, Step


@dataclass
class AddonResult:
    name: str
    state: str  # Pending | Installing | Ready | Drifted | Failed
    message: str = ""


@dataclass
class ReconcileResult:
    """What happened, for the MemberCluster status and the rollout decision."""

    blueprint: str
    version: str
    plan: ClusterPlan
    addons: list[AddonResult] = field(default_factory=list)
    ready: bool = False
    failed_addon: str = ""
    error: str = ""
    inventory: Inventory | None = None  # set when everything was applied
    drifted: list[str] = field(default_factory=list)  # add-ons not ready because of held drift
    writes: int = 0
    content_hash: str = ""
    made: Writes = field(default_factory=Writes)  # what drift must not take for drift (cluster.writes)


async def plan_member(
    session: MemberSession, desired: DesiredState, inventory: Inventory, *, restore_drift: bool = False
) -> ClusterPlan:
    """Observe the member and plan (pure) what brings it to ``desired``: the first half of
    :func:`reconcile`, and all of ``blueprintd plan``. Reads only."""
    live = await session.observe(desired, inventory)
    return plan_cluster(desired, live, inventory, restore_drift=restore_drift)


def _watched(watch: StepWatch | None, step: Step, kind: StepKind) -> AbstractAsyncContextManager[None]:
    return watch.step(step, kind) if watch is not None else contextlib.nullcontext()


async def reconcile(
    session: MemberSession,
    desired: DesiredState,
    inventory: Inventory,
    *,
    restore_drift: bool = False,
    watch: StepWatch | None = None,
    on_plan: Callable[[Writes], None] | None = None,
) -> ReconcileResult:
    """``restore_drift``: also apply what the add-ons' notify/block modes hold back (a person
    asked for it with ``blueprintd drift restore``). ``watch``: reports each add-on step that
    changes or waits while it runs (``cluster.progress``). ``on_plan`` is told what the plan will
    write before anything is written (drift holds those targets until the hand-off)."""
    plan = await plan_member(session, desired, inventory, restore_drift=restore_drift)
    if on_plan is not None:
        on_plan(Writes.planned(plan.actions()))
    result = ReconcileResult(blueprint=desired.blueprint, version=desired.version, plan=plan)
    steps = {s.addon: s for s in plan.steps}
    held: dict[str, Action] = {}
    for a in plan.held:  # per add-on, something missing first: that is what keeps it from ready
        if a.addon and (a.addon not in held or _missing(a)):
            held[a.addon] = a
    failed = False
    for step in desired.steps:
        if failed:
            result.addons.append(AddonResult(step.addon, "Pending", f"waiting for {result.failed_addon}"))
            continue
        step_plan = steps[step.addon]
        try:
            if step_plan.empty:
                ok, why = await session.step_ready(step)
                h = held.get(step.addon)
                if h is not None and (not ok or _missing(h)):
                    # Drift the mode leaves alone (a deleted object, an uninstalled release):
                    # waiting cannot make it whole, so say so now instead of timing out.
                    why = why if not ok else "incomplete"
                    result.drifted.append(step.addon)
                    result.addons.append(
                        AddonResult(
                            step.addon,
                            "Drifted",
                            f"{why}: {h.target} {h.reason}; drift mode {step.drift.mode} leaves it as it is "
                            "(restore it with `blueprintd drift restore`, or by hand)",
                        )
                    )
                    continue
                if not ok:
                    timeout = float(step.readiness.timeout_seconds) if step.readiness else 300.0
                    async with _watched(watch, step, "wait"):
                        await session.wait_ready(step, timeout)
            else:
                result.writes += len(step_plan.actions)
                for action in step_plan.actions:
                    result.made |= Writes.of(action)
                async with _watched(watch, step, step_kind(a.kind for a in step_plan.actions)):
                    result.made |= await session.execute_step(step, step_plan)
            result.addons.append(AddonResult(step.addon, "Ready"))
        except StepFailed as exc:
            failed = True
            result.failed_addon = step.addon
            result.error = str(exc)
            result.addons.append(AddonResult(step.addon, "Failed", exc.detail))
    if failed:
        return result
    try:
        for action in plan.node_labels:
            result.writes += 1
            result.made |= Writes.of(action)
            result.made |= await session.label_nodes(action)
        for action in plan.prune:
            result.writes += 1
            result.made |= Writes.of(action)
            await session.prune(action)
    except StepFailed as exc:
        result.error = str(exc)
        result.failed_addon = exc.addon
        return result
    # Held drift never changes what was applied: the inventory is the desired one either way.
    result.ready = not result.drifted
    result.inventory = inventory_of(desired)
    return result


def _missing(action: Action) -> bool:
    """The held drift is something deleted (an object, a release), not a changed field."""
    return action.kind == "helm-install" or (action.kind == "apply" and action.reason == "object missing")
