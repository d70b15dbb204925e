"""What one reconcile changed on a member cluster that drift detection must not take for drift.

A deletion leaves no field manager behind, and a Helm operation changes a release's record and
objects while it runs, so drift detection cannot tell the reconcile's own pruning or upgrading
from a person's change by looking at the cluster. The reconcile says it instead: before
applying, ``cluster.reconcile.reconcile`` announces what its plan will write (``on_plan``), and
it returns the writes it made in ``ReconcileResult.made``; the controller passes the first to
``DriftMonitor.will_write`` and the union over the member's Blueprints to ``DriftMonitor.track``.
Server-side applies and node labels set are listed with the ``resourceVersion`` the write left
(``versions``), not as changes: the fields they set are owned by blueprintd's field manager,
which drift detection already reads as the operator's. What drift needs from them is *when* its
watch has caught up: an event arrives milliseconds to seconds after the write, and an object
created, or a node label added, by the reconcile looks deleted to a check made before it.

A plain value (frozen sets of :class:`ObjectRef`): no module reads another's mutable state.
"""

from __future__ import annotations

from dataclasses import dataclass

from blueprintd.api.ref import ObjectRef
from blueprintd.plan.planner import Action


@dataclass(frozen=True)
class Written:
    """An object (or node) the reconcile applied or labelled, and the ``resourceVersion`` its
    write returned: drift judges it once its watch has delivered that version."""

    ref: ObjectRef
    resource_version: str


@dataclass(frozen=True)
class Writes:
    """Objects deleted, nodes with labels removed, and Helm releases installed, upgraded,
    rolled back or uninstalled by one reconcile."""

    deleted: frozenset[ObjectRef] = frozenset()
    unlabelled: frozenset[ObjectRef] = frozenset()  # nodes (ObjectRef.node) that lost labels
    releases: frozenset[ObjectRef] = frozenset()  # ObjectRef.release of each release changed
    versions: frozenset[Written] = frozenset()  # objects applied and nodes labelled, as written

    @classmethod
    def written(cls, ref: ObjectRef, resource_version: str) -> Writes:
        """An apply or node label write that left ``resource_version`` (nothing when it is unknown)."""
        return cls(versions=frozenset({Written(ref, resource_version)})) if resource_version else cls()

    @classmethod
    def planned(cls, actions: list[Action]) -> Writes:
        """What carrying out all of ``actions`` (a plan) would change."""
        out = cls()
        for action in actions:
            out |= cls.of(action)
        return out

    @classmethod
    def of(cls, action: Action) -> Writes:
        """What carrying out ``action`` changes (recorded before it runs: a write that fails
        half-way may still have changed the cluster). Applies list nothing (see the module)."""
        ref = action.ref
        if ref is None:
            return cls()
        if action.kind in ("helm-install", "helm-upgrade", "helm-uninstall"):
            return cls(releases=frozenset({ref}))
        if action.kind == "delete-object":
            return cls(deleted=frozenset({ref}))
        if action.kind == "label-nodes" and any(v is None for v in (action.labels or {}).values()):
            return cls(unlabelled=frozenset({ref}))
        return cls()

    def __or__(self, other: Writes) -> Writes:
        return Writes(
            self.deleted | other.deleted,
            self.unlabelled | other.unlabelled,
            self.releases | other.releases,
            self.versions | other.versions,
        )

    def __bool__(self) -> bool:
        return bool(self.deleted or self.unlabelled or self.releases or self.versions)
