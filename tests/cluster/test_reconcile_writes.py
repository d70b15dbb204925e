"""The apply path reports what it changed: ``ReconcileResult.made``, the drift hand-off's input.

``cluster.reconcile`` against a stand-in session (no cluster): a plan with an upgrade, applies,
a prune of an object and of a release, and a node label removal yields exactly those writes;
the applies and node label writes come with the resourceVersion the session says they left.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from blueprintd.api.ref import ObjectRef
from blueprintd.cluster.reconcile import reconcile
from blueprintd.cluster.session import StepFailed
from blueprintd.cluster.writes import Writes, Written
from blueprintd.plan.inventory import inventory_of, object_key
from blueprintd.plan.live import LiveState, ReleaseState
from blueprintd.plan.planner import Action, StepPlan, desired_objects
from blueprintd.render.desired import DesiredState, Step

CM = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": "ops"}, "data": {"a": "1"}}
OLD = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "old", "namespace": "ops"}, "data": {"b": "2"}}
KAI = {"releaseName": "kai", "namespace": "kai", "repo": "http://mirror", "chart": "kai", "version": "1.0.0"}
LABEL = {"nvidia.com/mig.config": "all-1g.10gb"}


def state(version: str, manifests: list[dict[str, Any]], *, extra_release: bool, labels: bool) -> DesiredState:
    steps: list[dict[str, Any]] = [
        {"addon": "kai", "namespace": "kai", "helm": {**KAI, "values": {"v": version}}},
        {"addon": "settings", "namespace": "ops", "manifests": manifests},
    ]
    if extra_release:
        steps.append({"addon": "extra", "namespace": "x", "helm": {**KAI, "releaseName": "extra", "namespace": "x"}})
    return DesiredState.model_validate(
        {
            "blueprint": "bp",
            "version": version,
            "revision": "sha256:x",
            "cluster": "m1",
            "steps": steps,
            "nodeLabels": [{"pool": "p", "nodes": ["n1"], "labels": LABEL}] if labels else [],
        }
    )


class Session:
    """What ``reconcile`` calls on a member session, recording the writes it is asked for."""

    def __init__(self, live: LiveState, fail_step: str = "") -> None:
        self.live = live
        self.fail_step = fail_step
        self.done: list[str] = []

    async def observe(self, desired: DesiredState, inventory: Any) -> LiveState:
        return self.live

    async def step_ready(self, step: Step) -> tuple[bool, str]:
        return True, "ready"

    async def wait_ready(self, step: Step, timeout: float) -> None: ...

    async def execute_step(self, step: Step, plan: StepPlan) -> Writes:
        if step.addon == self.fail_step:
            raise StepFailed(step.addon, "helm upgrade failed half-way")
        self.done += [a.kind for a in plan.actions]
        made = Writes()
        for a in plan.actions:
            if a.kind == "apply" and a.ref is not None:
                made |= Writes.written(a.ref, f"rv-{a.ref.name}")  # what the API server answered
        return made

    async def label_nodes(self, action: Action) -> Writes:
        self.done.append(action.kind)
        assert action.ref is not None
        return Writes.written(action.ref, "rv-node")

    async def prune(self, action: Action) -> None:
        self.done.append(action.kind)


def live_of(old: DesiredState) -> LiveState:
    live = LiveState()
    live.releases[("kai", "kai")] = ReleaseState("kai", "kai", "kai", "1.0.0", "deployed", 1, {"v": old.version})
    live.releases[("x", "extra")] = ReleaseState("extra", "x", "kai", "1.0.0", "deployed", 1, {})
    for step in old.steps:
        for obj in desired_objects(old, step) if step.manifests else []:
            meta = {**obj["metadata"], "managedFields": [{"manager": "blueprintd"}]}
            live.objects[object_key(obj)] = {**obj, "metadata": meta}
    live.node_labels = {"n1": {**LABEL, "kubernetes.io/os": "linux"}}
    return live


def test_a_reconcile_returns_its_deletions_label_removals_and_release_changes() -> None:
    old = state("1", [CM, OLD], extra_release=True, labels=True)
    new = state("2", [CM], extra_release=False, labels=False)
    session = Session(live_of(old))
    announced: list[tuple[Writes, list[str]]] = []
    on_plan = lambda w: announced.append((w, list(session.done)))  # noqa: E731
    result = asyncio.run(reconcile(session, new, inventory_of(old), on_plan=on_plan))  # type: ignore[arg-type]
    assert result.ready and sorted(session.done) == ["delete-object", "helm-uninstall", "helm-upgrade", "label-nodes"]
    planned = dataclasses.replace(result.made, versions=frozenset())  # a version is known once written
    assert announced == [(planned, [])], "the plan's writes are announced once, before any is made"
    assert result.made == Writes(
        deleted=frozenset({ObjectRef.of(OLD)}),
        unlabelled=frozenset({ObjectRef.node("n1")}),
        releases=frozenset({ObjectRef.release("kai", "kai"), ObjectRef.release("x", "extra")}),
        versions=frozenset({Written(ObjectRef.node("n1"), "rv-node")}),
    )


def test_applies_and_new_labels_come_back_with_the_version_they_left() -> None:
    old = state("1", [CM], extra_release=False, labels=False)
    changed = {**CM, "data": {"a": "2"}}
    new = state("1", [changed], extra_release=False, labels=True)
    live = live_of(old)
    live.node_labels = {"n1": {"kubernetes.io/os": "linux"}}  # the pool's label is new
    result = asyncio.run(reconcile(Session(live), new, inventory_of(old)))  # type: ignore[arg-type]
    assert result.ready
    assert result.made == Writes(
        versions=frozenset({Written(ObjectRef.of(CM), "rv-cfg"), Written(ObjectRef.node("n1"), "rv-node")})
    )


def test_a_converged_cluster_reports_no_writes() -> None:
    old = state("1", [CM], extra_release=False, labels=True)
    result = asyncio.run(reconcile(Session(live_of(old)), old, inventory_of(old)))  # type: ignore[arg-type]
    assert result.ready and result.writes == 0 and not result.made


def test_a_failed_step_still_reports_the_write_it_started() -> None:
    """A helm upgrade that failed half-way may have changed the release: drift must know."""
    old = state("1", [CM, OLD], extra_release=True, labels=True)
    new = state("2", [CM], extra_release=False, labels=False)
    session = Session(live_of(old), fail_step="kai")
    result = asyncio.run(reconcile(session, new, inventory_of(old)))  # type: ignore[arg-type]
    assert result.failed_addon == "kai" and not result.ready
    assert result.made == Writes(releases=frozenset({ObjectRef.release("kai", "kai")})), "nothing after it ran"
