"""Reconcile one member cluster to one rendered Blueprint version.

observe → plan (pure) → apply step by step with health gates → label nodes → prune. The
first failing add-on stops the run: later add-ons are left exactly as they were and reported
Pending, so a cluster is never half-applied without the status saying which add-on failed
and why. An empty plan makes no write call at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from blueprintd.cluster.session import MemberSession, StepFailed
from blueprintd.plan.inventory import Inventory, inventory_of
from blueprintd.plan.planner import ClusterPlan, plan_cluster
from blueprintd.render.desired import DesiredState


@dataclass
class AddonResult:
    name: str
    state: str  # Pending | Installing | Ready | Failed
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
    writes: int = 0
    content_hash: str = ""


async def reconcile(session: MemberSession, desired: DesiredState, inventory: Inventory) -> ReconcileResult:
    live = await session.observe(desired, inventory)
    plan = plan_cluster(desired, live, inventory)
    result = ReconcileResult(blueprint=desired.blueprint, version=desired.version, plan=plan)
    steps = {s.addon: s for s in plan.steps}
    failed = False
    for step in desired.steps:
        if failed:
            result.addons.append(AddonResult(step.addon, "Pending", f"waiting for {result.failed_addon}"))
            continue
        step_plan = steps[step.addon]
        try:
            if step_plan.empty:
                ok, _ = await session.step_ready(step)
                if not ok:
                    timeout = float(step.readiness.timeout_seconds) if step.readiness else 300.0
                    await session.wait_ready(step, timeout)
            else:
                result.writes += len(step_plan.actions)
                await session.execute_step(step, step_plan)
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
            await session.label_nodes(action)
        for action in plan.prune:
            result.writes += 1
            await session.prune(action)
    except StepFailed as exc:
        result.error = str(exc)
        result.failed_addon = exc.addon
        return result
    result.ready = True
    result.inventory = inventory_of(desired)
    return result
