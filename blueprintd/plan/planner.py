"""Plan: DesiredState + what the cluster has now → the actions a reconcile must take.

Pure: the live side arrives as plain data (``LiveState``), read beforehand by the cluster
adapters. An empty plan is the proof a reconcile has nothing to do, and then the apply layer
makes no write call at all. Actions are grouped per add-on step in ``dependsOn`` order, so
the apply layer can stop at the first failing step and leave later add-ons untouched.
"""

from __future__ import annotations

from typing import Any, Literal

from blueprintd.api.base import ApiModel
from blueprintd.api.blueprint import DriftMode
from blueprintd.api.ref import ObjectRef
from blueprintd.plan.compare import FieldDiff, diff_owned, drop_nulls, keep_ignored_live
from blueprintd.plan.inventory import Inventory, content_hash, node_labels_hash, object_key, release_hash
from blueprintd.plan.live import LiveState, ReleaseState
from blueprintd.plan.ownership import owned_object
from blueprintd.render.desired import DesiredState, Step

ActionKind = Literal["helm-install", "helm-upgrade", "apply", "delete-object", "helm-uninstall", "label-nodes"]


class Action(ApiModel):
    """One write a reconcile will make, with the reason a user sees in ``blueprintd plan``."""

    kind: ActionKind
    addon: str = ""
    target: str = ""  # display text only: "HelmRelease ns/name", "v1|ConfigMap|ns|name", "Node name"
    ref: ObjectRef | None = None  # what the action writes: the object, release or node
    reason: str = ""
    object: dict[str, Any] | None = None  # for apply
    labels: dict[str, str | None] | None = None  # for label-nodes


class StepPlan(ApiModel):
    addon: str
    actions: list[Action] = []

    @property
    def empty(self) -> bool:
        return not self.actions


class ClusterPlan(ApiModel):
    """Everything a reconcile of one cluster to one DesiredState must do, in order."""

    cluster: str
    blueprint: str
    version: str
    steps: list[StepPlan] = []
    node_labels: list[Action] = []
    prune: list[Action] = []
    held: list[Action] = []  # drift left to the add-on's drift mode (notify / block): never applied

    @property
    def empty(self) -> bool:
        return all(s.empty for s in self.steps) and not self.node_labels and not self.prune

    def actions(self) -> list[Action]:
        return [a for s in self.steps for a in s.actions] + self.node_labels + self.prune


def desired_objects(desired: DesiredState, step: Step) -> list[dict[str, Any]]:
    """The step's manifests as blueprintd applies them: with the identity labels of the
    Blueprint and the add-on's drift mode, nulls dropped (``ownership.owned_object``). The
    planner, the inventory and drift detection all use this, so they agree on what is owned."""
    return [owned_object(obj, desired.blueprint, step.drift.mode) for obj in step.manifests or []]


def _release_reason(step: Step, live: ReleaseState | None) -> str | None:
    """Why a Helm step needs install/upgrade; None when the release already matches."""
    helm = step.helm
    assert helm is not None
    if live is None:
        return "release not installed"
    if live.status != "deployed":
        return f"release is {live.status}"
    if live.chart != helm.chart or live.version != helm.version:
        return f"chart {live.chart} {live.version} -> {helm.chart} {helm.version}"
    diffs = diff_owned(helm.values, live.values)
    extra = extra_values(helm.values, live.values)
    if diffs or extra:
        paths = [d.path for d in diffs] + extra
        return "values differ at " + ", ".join(paths[:5]) + (" ..." if len(paths) > 5 else "")
    return None


def extra_values(desired: Any, live: Any, base: str = "") -> list[str]:
    """Values set on the release that the blueprint does not set (someone added them)."""
    if not isinstance(desired, dict) or not isinstance(live, dict):
        return []
    out: list[str] = []
    for key in sorted(live):
        path = f"{base}.{key}" if base else key
        if key not in desired:
            out.append(path)
        else:
            out.extend(extra_values(desired[key], live[key], path))
    return out


def ignore_paths(step: Step, obj: dict[str, Any]) -> tuple[str, ...]:
    """The step's drift ignore rules that apply to ``obj`` (dotted or JSON pointer paths)."""
    kind = obj.get("kind", "")
    name = (obj.get("metadata") or {}).get("name", "")
    ignore: list[str] = []
    for rule in step.drift.ignore:
        if (rule.kind in (None, kind)) and (rule.name in (None, name)):
            ignore.extend(rule.paths)
    return tuple(ignore)


def object_diffs(step: Step, obj: dict[str, Any], live: dict[str, Any] | None) -> list[FieldDiff]:
    """Owned-field differences of one manifest, honouring the step's drift ignore rules."""
    if live is None:
        return [FieldDiff(".", obj, None, missing=True)]
    return diff_owned(obj, live, ignore_paths(step, obj))


def apply_body(step: Step, obj: dict[str, Any], live: dict[str, Any] | None) -> dict[str, Any]:
    """What to server-side apply for ``obj``: the manifest, except that on an existing object
    the fields an ignore rule covers keep their live value (see ``keep_ignored_live``). ``obj``
    carries no ``null`` (``desired_objects`` / ``rendered_objects`` dropped them where the
    object entered); a live value kept here may (``creationTimestamp: null``), and is never sent."""
    ignore = ignore_paths(step, obj)
    if live is None or not ignore:
        return obj
    body: dict[str, Any] = drop_nulls(keep_ignored_live(obj, live, ignore))
    return body


def plan_cluster(
    desired: DesiredState, live: LiveState, inventory: Inventory, *, restore_drift: bool = False
) -> ClusterPlan:
    """The actions that take the cluster from ``live`` to ``desired``.

    ``inventory`` is what blueprintd applied for this Blueprint before (kept in the
    MemberCluster status): anything in it that ``desired`` no longer has is pruned, objects
    before releases, in reverse install order. Drift of ``notify``/``block`` add-ons goes to
    ``held`` unless ``restore_drift`` (a person asked for it to be put back).
    """
    plan = ClusterPlan(cluster=desired.cluster, blueprint=desired.blueprint, version=desired.version)
    wanted_objects: set[str] = set()
    wanted_releases: set[tuple[str, str]] = set()
    applied_objects = {o.key: o.hash for o in inventory.objects}
    applied_releases = {(r.namespace, r.name): r.hash for r in inventory.releases}
    for step in desired.steps:
        sp = StepPlan(addon=step.addon)
        if step.helm is not None:
            key = (step.helm.namespace, step.helm.release_name)
            wanted_releases.add(key)
            current = live.releases.get(key)
            reason = _release_reason(step, current)
            if reason:
                action = Action(
                    kind="helm-install" if current is None else "helm-upgrade",
                    addon=step.addon,
                    target=f"HelmRelease {key[0]}/{key[1]}",
                    reason=reason,
                    ref=ObjectRef.release(*key),
                )
                held = not restore_drift and _held(step.drift.mode, applied_releases.get(key), release_hash(step.helm))
                (plan.held if held else sp.actions).append(action)
        for obj in desired_objects(desired, step):
            k = object_key(obj)
            wanted_objects.add(k)
            current_obj = live.objects.get(k)
            diffs = object_diffs(step, obj, current_obj)
            if diffs:
                first = (
                    "object missing"
                    if diffs[0].missing and diffs[0].path == "."
                    else ("fields differ: " + ", ".join(d.path for d in diffs[:5]))
                )
                action = Action(
                    kind="apply",
                    addon=step.addon,
                    target=k,
                    reason=first,
                    object=apply_body(step, obj, current_obj),
                    ref=ObjectRef.of(obj),
                )
                held = not restore_drift and _held(step.drift.mode, applied_objects.get(k), content_hash(obj))
                (plan.held if held else sp.actions).append(action)
        plan.steps.append(sp)
    labels = _label_actions(desired, live, inventory)
    if (
        labels
        and not restore_drift
        and _held(node_label_mode(desired), inventory.node_labels_hash, node_labels_hash(wanted_node_labels(desired)))
    ):
        plan.held += labels
    else:
        plan.node_labels = labels
    # Inventory entries are in install order: prune in reverse, objects before releases, so
    # nothing is deleted while something installed after it still depends on it.
    for o in reversed(inventory.objects):
        if o.key not in wanted_objects:
            plan.prune.append(
                Action(
                    kind="delete-object",
                    addon=o.addon,
                    target=o.key,
                    reason="no longer in the blueprint",
                    object=o.ref(),
                    ref=o.object_ref,
                )
            )
    for r in reversed(inventory.releases):
        if (r.namespace, r.name) not in wanted_releases:
            plan.prune.append(
                Action(
                    kind="helm-uninstall",
                    addon=r.addon,
                    target=f"HelmRelease {r.namespace}/{r.name}",
                    reason="no longer in the blueprint",
                    ref=ObjectRef.release(r.namespace, r.name),
                )
            )
    return plan


def _held(mode: DriftMode, applied_hash: str | None, wanted_hash: str) -> bool:
    """A difference is drift, not a Blueprint change, when the Blueprint still renders exactly
    what was applied last time. Drift of a ``notify`` or ``block`` add-on is reported by the
    drift monitor and must not be overwritten by a periodic reconcile; ``remediate`` drift is
    simply applied. That holds for deletions too: a NetworkPolicy or release deleted under
    ``notify`` stays deleted and reported until a person restores it (``blueprintd drift
    restore``) or the Blueprint changes; the add-on shows as ``Drifted`` meanwhile."""
    return mode != "remediate" and bool(applied_hash) and applied_hash == wanted_hash


def node_label_mode(desired: DesiredState) -> DriftMode:
    """Node labels belong to no add-on: they follow the Blueprint's own ``spec.drift.mode``."""
    return desired.node_label_drift


def wanted_node_labels(desired: DesiredState) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for group in desired.node_labels:
        for node in group.nodes:
            out.setdefault(node, {}).update(group.labels)
    return out


def _label_actions(desired: DesiredState, live: LiveState, inventory: Inventory) -> list[Action]:
    wanted = wanted_node_labels(desired)
    managed = set(inventory.node_label_keys) | {k for labels in wanted.values() for k in labels}
    actions: list[Action] = []
    for node in sorted(set(wanted) | set(live.node_labels)):
        if node not in live.node_labels:
            continue  # the node is gone; nothing to label
        have = live.node_labels[node]
        want = wanted.get(node, {})
        patch: dict[str, str | None] = {k: v for k, v in sorted(want.items()) if have.get(k) != v}
        for key in sorted(managed - set(want)):
            if key in have and key in inventory.node_label_keys:
                patch[key] = None
        if patch:
            actions.append(
                Action(
                    kind="label-nodes",
                    target=f"Node {node}",
                    labels=patch,
                    ref=ObjectRef.node(node),
                    reason="labels " + ", ".join(f"{k}={v}" for k, v in patch.items()),
                )
            )
    return actions
