"""The reconcile → drift hand-off, in process: a ClusterMonitor fed watch messages by hand.

While a reconcile runs, a finding its planned writes explain (an object it prunes, a label it
removes, anything about a Helm release it changes) is held; at ``track`` it is judged with the
writes it made: the reconcile's own prune is never reported, a person's deletion is. No API
server: the watch and the responder are replaced by stand-ins that make no call.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client import Configuration

from blueprintd.api.ref import ObjectRef
from blueprintd.cluster.writes import Writes
from blueprintd.drift import monitor as monitor_mod
from blueprintd.drift.detect import Target
from blueprintd.drift.monitor import ClusterMonitor, DriftMonitor, DriftSignal
from blueprintd.drift.watch import Changed, StreamSpec, Synced
from blueprintd.plan.planner import Action
from blueprintd.render.desired import DesiredState, NodeLabels

CM = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": "ops"}, "data": {"a": "1"}}
OTHER = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "keep", "namespace": "ops"}, "data": {"b": "2"}}
CM_REF = ObjectRef.of(CM)
OTHER_REF = ObjectRef.of(OTHER)
STREAM = StreamSpec("v1", "ConfigMap", "ops")
MC = {"apiVersion": "blueprintd.io/v1alpha1", "kind": "MemberCluster", "metadata": {"name": "m1"}}


def desired(*objs: dict[str, Any], blueprint: str = "bp") -> DesiredState:
    return DesiredState.model_validate(
        {
            "blueprint": blueprint,
            "version": "1.0.0",
            "revision": "sha256:x",
            "cluster": "m1",
            "steps": [{"addon": "settings", "namespace": "ops", "manifests": list(objs), "drift": {"mode": "notify"}}],
        }
    )


LIVE: dict[ObjectRef, dict[str, Any]] = {}


def live(obj: dict[str, Any], rv: str = "") -> dict[str, Any]:
    """The object as the member returns it: as blueprintd applied it (with its labels), at
    resourceVersion ``rv``."""
    out = copy.deepcopy(LIVE.get(ObjectRef.of(obj), obj))
    out["metadata"]["managedFields"] = [{"manager": "blueprintd", "operation": "Apply"}]
    if rv:
        out["metadata"]["resourceVersion"] = rv
    return out


class _Watch:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.specs: set[StreamSpec] = set()

    def set_streams(self, specs: Any) -> None:
        self.specs = set(specs)

    def relist(self, spec: Any = None) -> None: ...

    def close(self) -> None: ...


class _Objects:
    def get(self, ref: ObjectRef) -> None:
        return None


class _Responder:
    def __init__(self, *args: Any) -> None:
        self.objects = _Objects()

    async def ensure(self, obj: dict[str, Any]) -> bool:
        return False

    async def remove(self, *args: Any) -> bool:
        return False


class _Session:
    name = "m1"

    def __init__(self) -> None:
        self.api_client = type("ApiClient", (), {"configuration": Configuration()})()
        self.discovery = None  # never asked: the watch is a stand-in


@pytest.fixture(autouse=True)
def no_cluster(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(monitor_mod, "MemberWatch", _Watch)
    monkeypatch.setattr(monitor_mod, "Responder", _Responder)
    yield


async def drain(m: ClusterMonitor) -> None:
    """Handle what is queued, as the consumer task would."""
    while not m.queue.empty():
        await m._handle(m.queue.get_nowait())


def applied(m: ClusterMonitor, obj: dict[str, Any]) -> None:
    """``live(obj)`` is ``obj`` as blueprintd applies it, from the monitor's index."""
    LIVE[ObjectRef.of(obj)] = m.index.objects[Target("object", ObjectRef.of(obj)).id].obj


async def tracked(*objs: dict[str, Any]) -> tuple[ClusterMonitor, list[DriftSignal]]:
    """A monitor tracking ``objs``, listed and found in line (no drift)."""
    signals: list[DriftSignal] = []
    parent = DriftMonitor(None, operator_user="blueprintd-operator", resync_seconds=300.0, listeners=[signals.append])
    m = ClusterMonitor(parent, "m1", _Session(), MC)  # type: ignore[arg-type]
    parent._clusters["m1"] = m
    await m.update([desired(*objs)], MC)
    for o in objs:
        applied(m, o)
    m._synced(Synced(STREAM, [live(o) for o in objs]))
    await drain(m)
    assert not m.entries and not signals, "a clean cluster has no drift"
    return m, signals


def open_refs(m: ClusterMonitor) -> set[ObjectRef]:
    return {e.object for e in m.entries.values() if e.resolved_at is None}


async def _close(m: ClusterMonitor) -> None:
    await m.stop()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_without_a_reconcile_a_deleted_object_is_reported_at_once() -> None:
    async def go() -> None:
        m, signals = await tracked(CM, OTHER)
        m._changed(Changed(STREAM, "DELETED", live(CM)))
        assert open_refs(m) == {CM_REF} and [s.event for s in signals] == ["detected"]
        await _close(m)

    run(go())


PRUNE_CM = Writes(deleted=frozenset({CM_REF}))


def test_the_reconciles_own_prune_is_never_reported() -> None:
    async def go() -> None:
        m, signals = await tracked(CM, OTHER)
        m.parent.reconciling("m1")
        m.parent.will_write("m1", PRUNE_CM)
        m._changed(Changed(STREAM, "DELETED", live(CM)))  # the prune, seen before the hand-off
        assert not m.entries and not signals, "held while the reconcile runs"
        await m.parent.track("m1", m.session, [desired(OTHER)], MC, Writes(deleted=frozenset({CM_REF})))
        await drain(m)
        assert not m.entries and not signals, "its own prune: not drift, before or after the hand-off"
        assert not m.in_flight and not m.pending
        await _close(m)

    run(go())


def test_a_deletion_the_reconcile_does_not_plan_is_reported_at_once_while_it_runs() -> None:
    async def go() -> None:
        m, signals = await tracked(CM, OTHER)
        m.parent.reconciling("m1")
        m.parent.will_write("m1", Writes(deleted=frozenset({ObjectRef("v1", "ConfigMap", "ops", "gone")})))
        m._changed(Changed(STREAM, "DELETED", live(CM)))  # a person, while the reconcile runs
        assert open_refs(m) == {CM_REF}, "not the reconcile's: drift at once"
        assert [s.event for s in signals] == ["detected"] and signals[0].drifts[0].reason == "deleted"
        await _close(m)

    run(go())


def test_a_planned_deletion_the_reconcile_did_not_make_is_reported_at_the_hand_off() -> None:
    """Its plan would have pruned the object, but it stopped before (a failed add-on): the
    deletion seen meanwhile was someone else's."""

    async def go() -> None:
        m, signals = await tracked(CM, OTHER)
        m.parent.reconciling("m1")
        m.parent.will_write("m1", PRUNE_CM)
        m._changed(Changed(STREAM, "DELETED", live(CM)))
        assert not m.entries and not signals, "held while the reconcile runs"
        await m.parent.track("m1", m.session, [desired(CM, OTHER)], MC, Writes())
        assert open_refs(m) == {CM_REF}, "the reconcile did not delete it: drift"
        assert [s.event for s in signals] == ["detected"] and signals[0].drifts[0].reason == "deleted"
        await _close(m)

    run(go())


def test_a_held_deletion_the_reconcile_made_of_a_still_wanted_object_is_judged_again() -> None:
    """The reconcile deleted it but the new DesiredState still wants it: checked again after the
    hand-off, so the deletion is drift after all (nothing is hidden for ever)."""

    async def go() -> None:
        m, signals = await tracked(CM, OTHER)
        m.parent.reconciling("m1")
        m.parent.will_write("m1", PRUNE_CM)
        m._changed(Changed(STREAM, "DELETED", live(CM)))
        await m.parent.track("m1", m.session, [desired(CM, OTHER)], MC, PRUNE_CM)
        assert not m.entries, "its own write is not judged with the DesiredState it was seen with"
        assert not signals
        await drain(m)  # the recheck queued at the hand-off
        assert open_refs(m) == {CM_REF} and [s.event for s in signals] == ["detected"]
        await _close(m)

    run(go())


def test_a_standing_drift_entry_is_left_alone_while_a_reconcile_runs() -> None:
    async def go() -> None:
        m, signals = await tracked(CM, OTHER)
        m._changed(Changed(STREAM, "DELETED", live(CM)))
        (entry,) = m.entries.values()
        m.parent.reconciling("m1")
        m.parent.will_write("m1", PRUNE_CM)
        m._synced(Synced(STREAM, [live(OTHER)]))  # a relist during the reconcile finds it again
        assert entry.resolved_at is None and list(m.entries.values()) == [entry], "not resolved, not duplicated"
        await m.parent.track("m1", m.session, [desired(CM, OTHER)], MC, Writes())
        await drain(m)
        assert list(m.entries.values()) == [entry] and entry.resolved_at is None
        assert [s.event for s in signals] == ["detected"], "no second detection"
        await _close(m)

    run(go())


def test_a_field_change_outside_helm_is_not_held() -> None:
    """Only what the planned writes explain is held: a changed field of a manifest object is
    judged at once during a reconcile too (its own applies are owned by its field manager)."""

    async def go() -> None:
        m, signals = await tracked(CM, OTHER)
        m.parent.reconciling("m1")
        m.parent.will_write("m1", PRUNE_CM)
        changed = live(CM)
        changed["data"] = {"a": "2"}
        changed["metadata"]["managedFields"] = [{"manager": "kubectl-edit", "operation": "Update"}]
        m._changed(Changed(STREAM, "MODIFIED", changed))
        assert open_refs(m) == {CM_REF} and [s.event for s in signals] == ["detected"]
        await _close(m)

    run(go())


def test_findings_of_a_blueprint_the_reconcile_stopped_tracking_are_dropped() -> None:
    async def go() -> None:
        m, signals = await tracked(CM)
        m.parent.reconciling("m1")
        m.parent.will_write("m1", PRUNE_CM)  # an onUnselect: Prune, whose writes track is not given
        m._changed(Changed(STREAM, "DELETED", live(CM)))
        await m.parent.track("m1", m.session, [], MC, Writes())
        await drain(m)
        assert not m.entries and not signals
        await _close(m)

    run(go())


# --- Writes: what the apply path reports ---------------------------------------------------------


def test_writes_list_deletions_label_removals_and_release_changes_only() -> None:
    rel = ObjectRef.release("kai", "kai")
    node = ObjectRef.node("n1")
    assert Writes.of(Action(kind="helm-upgrade", ref=rel)) == Writes(releases=frozenset({rel}))
    assert Writes.of(Action(kind="helm-uninstall", ref=rel)) == Writes(releases=frozenset({rel}))
    assert Writes.of(Action(kind="delete-object", ref=CM_REF)) == Writes(deleted=frozenset({CM_REF}))
    removing = Action(kind="label-nodes", ref=node, labels={"a": "1", "b": None})
    assert Writes.of(removing) == Writes(unlabelled=frozenset({node}))
    assert not Writes.of(Action(kind="label-nodes", ref=node, labels={"a": "1"})), "setting labels hides nothing"
    assert not Writes.of(Action(kind="apply", ref=CM_REF, object=CM)), "applies are owned by blueprintd's manager"
    assert Writes.planned([Action(kind="delete-object", ref=CM_REF), removing]) == Writes(
        deleted=frozenset({CM_REF}), unlabelled=frozenset({node})
    )
    both = Writes.of(Action(kind="delete-object", ref=CM_REF)) | Writes.of(removing)
    assert both == Writes(deleted=frozenset({CM_REF}), unlabelled=frozenset({node}))


def test_after_a_reconcile_that_raised_before_its_hand_off_held_findings_are_judged_against_the_new_state() -> None:
    """Its writes never reached the monitor: a deletion held since then may be its prune, so it
    is judged against the next hand-off's DesiredState, not reported as seen."""

    async def go() -> None:
        m, signals = await tracked(CM, OTHER)
        m.parent.reconciling("m1")
        m.parent.will_write("m1", PRUNE_CM)
        m._changed(Changed(STREAM, "DELETED", live(CM)))  # pruned by a reconcile that then raised
        m.parent.reconciling("m1")  # the next reconcile; no track came in between
        await m.parent.track("m1", m.session, [desired(OTHER)], MC, Writes())
        await drain(m)
        assert not m.entries and not signals
        await _close(m)

    run(go())


# --- the reconcile's own applies and labels: judged once the watch delivered them ------------

POOL_LABEL = {"nvidia.com/device-plugin.config": "ts-l4"}


def with_pool_labels(state: DesiredState) -> DesiredState:
    """``state`` that also labels node n1 (drift mode notify: findings are recorded, never restored)."""
    return state.model_copy(
        update={"node_labels": [NodeLabels(pool="l4", nodes=["n1"], labels=POOL_LABEL)], "node_label_drift": "notify"}
    )


def node(labels: dict[str, str], rv: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1", "labels": labels, "resourceVersion": rv}}


def test_a_label_the_reconcile_set_is_not_reported_removed_while_the_watch_lags() -> None:
    """The CI failure of 2026-12-01: the reconcile's last write labels a pool's nodes; judged at the
    hand-off against the node cached before that write, every new label looked removed, and
    was "restored". Now the node is judged once the watch delivers the labelled version."""

    async def go() -> None:
        m, signals = await tracked(OTHER)
        m._synced(Synced(monitor_mod.NODE_STREAM, [node({"kubernetes.io/os": "linux"}, "10")]))
        m.parent.reconciling("m1")
        await m.parent.track(
            "m1", m.session, [with_pool_labels(desired(OTHER))], MC, Writes.written(ObjectRef.node("n1"), "11")
        )
        await drain(m)  # the recheck of every target queued at the hand-off
        assert not m.entries and not signals, "the cached node predates the reconcile's label write"
        assert m.observed_changes() is None, "a quiet resync cannot skip while the watch is behind"
        labelled = node({"kubernetes.io/os": "linux", **POOL_LABEL}, "11")
        m._changed(Changed(monitor_mod.NODE_STREAM, "MODIFIED", labelled))
        assert not m.entries and not signals and not m.catching_up
        m._changed(Changed(monitor_mod.NODE_STREAM, "MODIFIED", node({"kubernetes.io/os": "linux"}, "12")))
        assert [s.event for s in signals] == ["detected"], "a person's removal after it is drift, at once"
        assert signals[0].drifts[0].reason == "label-removed"
        await _close(m)

    run(go())


def test_an_object_the_reconcile_created_is_judged_once_its_create_arrives() -> None:
    async def go() -> None:
        m, signals = await tracked(OTHER)
        m.parent.reconciling("m1")
        await m.parent.track("m1", m.session, [desired(CM, OTHER)], MC, Writes.written(CM_REF, "7"))
        await drain(m)
        assert not m.entries and not signals, "not deleted: created, and not seen yet"
        applied(m, CM)
        m._changed(Changed(STREAM, "ADDED", live(CM, rv="7")))
        assert not m.entries and not signals and not m.catching_up
        await _close(m)

    run(go())


def test_a_write_the_watch_delivered_during_the_reconcile_is_not_waited_for() -> None:
    """Seen before the hand-off, then deleted by a person: the deletion is drift at the hand-off."""

    async def go() -> None:
        m, signals = await tracked(OTHER)
        m.parent.reconciling("m1")
        m._changed(Changed(STREAM, "ADDED", live(CM, rv="7")))  # the reconcile's create
        m._changed(Changed(STREAM, "DELETED", live(CM, rv="8")))  # a person, right after
        await m.parent.track("m1", m.session, [desired(CM, OTHER)], MC, Writes.written(CM_REF, "7"))
        await drain(m)
        assert not m.catching_up
        assert open_refs(m) == {CM_REF} and [s.event for s in signals] == ["detected"]
        await _close(m)

    run(go())


def test_a_write_the_watch_never_delivers_is_judged_after_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """A watch that restarted lists past the write's version: the object is judged as cached
    once ``CATCH_UP_LIMIT`` runs out, so a deletion made meanwhile is still found."""
    monkeypatch.setattr(monitor_mod, "CATCH_UP_LIMIT", 0.05)

    async def go() -> None:
        m, signals = await tracked(OTHER)
        m.parent.reconciling("m1")
        await m.parent.track("m1", m.session, [desired(CM, OTHER)], MC, Writes.written(CM_REF, "7"))
        m._synced(Synced(STREAM, [live(OTHER, rv="9")]))  # relisted after a person deleted CM
        await drain(m)
        assert not m.entries, "still within the limit"
        await asyncio.sleep(0.1)
        await drain(m)
        assert open_refs(m) == {CM_REF} and [s.event for s in signals] == ["detected"]
        assert not m.catching_up
        await _close(m)

    run(go())


def test_an_object_of_a_kind_first_watched_at_the_hand_off_is_judged_from_its_first_list() -> None:
    """Seen in the operator fleet test: ConstraintTemplates are applied by the reconcile that
    installs Gatekeeper, and their controller updates them at once. Their stream starts with
    that hand-off, so its first list is later than the write and holds a newer version; waiting
    for the written one would only delay the check by the whole limit."""
    elsewhere = {**CM, "metadata": {"name": "cfg", "namespace": "tenant"}}
    ref = ObjectRef.of(elsewhere)

    async def go() -> None:
        m, signals = await tracked(OTHER)
        m.parent.reconciling("m1")
        await m.parent.track("m1", m.session, [desired(OTHER, elsewhere)], MC, Writes.written(ref, "7"))
        assert not m.catching_up, "listed after the write: nothing to wait for"
        applied(m, elsewhere)
        m._synced(Synced(StreamSpec("v1", "ConfigMap", "tenant"), [live(elsewhere, rv="9")]))
        await drain(m)
        assert not m.entries and not signals
        await _close(m)

    run(go())
