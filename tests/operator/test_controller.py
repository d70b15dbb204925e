"""The Controller in process, against an in-memory management store (no API server, no kopf).

The store keeps objects as the API server would (status writes are merge patches) and counts
every write, so these tests see exactly what a quiet resync writes: nothing.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from blueprintd.api.mergepatch import apply_merge_patch
from blueprintd.cluster.fence import FencedOut
from blueprintd.errors import ClusterError
from blueprintd.operator import controller as controller_module
from blueprintd.operator.backoff import BackoffPolicy
from blueprintd.operator.controller import Controller
from blueprintd.operator.settings import OperatorSettings

REPO = Path(__file__).resolve().parents[2]
NS = "blueprintd-system"


class MemoryStore:
    """The subset of ``ManagementStore`` the controller uses, in memory."""

    namespace = NS

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.writes: list[tuple[str, str, dict[str, Any]]] = []
        self.events: list[tuple[str, str]] = []

    def put(self, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
        obj = copy.deepcopy(obj)
        obj.setdefault("kind", kind)
        self.objects[(kind, obj["metadata"]["name"])] = obj
        return obj

    def delete(self, kind: str, name: str) -> None:
        del self.objects[(kind, name)]

    def fresh(self, kind: str, name: str) -> dict[str, Any]:
        return copy.deepcopy(self.objects[(kind, name)])

    async def list(self, kind: str) -> list[dict[str, Any]]:
        return [copy.deepcopy(o) for (k, _), o in sorted(self.objects.items()) if k == kind]

    async def get(self, kind: str, name: str) -> dict[str, Any] | None:
        obj = self.objects.get((kind, name))
        return copy.deepcopy(obj) if obj is not None else None

    async def create(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        self.writes.append(("create", body["metadata"]["name"], body))
        return self.put(kind, body)

    async def write_status(self, kind: str, obj: dict[str, Any], patch: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        self.writes.append((f"{kind}/status", name, patch))
        stored = self.objects[(kind, name)]
        stored["status"] = apply_merge_patch(stored.get("status"), patch)
        obj["status"] = apply_merge_patch(obj.get("status"), patch)

    async def secret_value(self, name: str, key: str, namespace: str | None = None) -> str:
        raise ClusterError(f"Secret {namespace or NS}/{name}: Not Found")

    async def event(self, obj: dict[str, Any], reason: str, message: str, type_: str = "Normal") -> None:
        self.events.append((reason, message))


def member(name: str, **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "blueprintd.io/v1alpha1",
        "kind": "MemberCluster",
        "metadata": {"name": name, "namespace": NS, "labels": labels},
        "spec": {"kubeconfigSecretRef": {"name": f"{name}-kubeconfig"}},
    }


def blueprint_doc() -> dict[str, Any]:
    doc = yaml.safe_load((REPO / "blueprints" / "gpu-platform" / "blueprint.yaml").read_text())
    doc["metadata"]["namespace"] = NS
    doc["metadata"]["generation"] = 1
    return dict(doc)


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def controller(store: MemoryStore, tmp_path: Path) -> Controller:
    return Controller(store, OperatorSettings(workdir=tmp_path))  # type: ignore[arg-type]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_publish_captures_a_revision_once_and_a_second_publish_writes_nothing(
    store: MemoryStore, controller: Controller
) -> None:
    store.put("Blueprint", blueprint_doc())
    run(controller.publish(store.fresh("Blueprint", "gpu-platform")))
    [(verb, rev_name, _), (what, _, patch)] = store.writes
    assert verb == "create" and rev_name.startswith("gpu-platform-v")
    assert what == "Blueprint/status" and patch["revision"] == rev_name
    assert store.events[0][0] == "RevisionCreated"
    store.writes.clear()
    run(controller.publish(store.fresh("Blueprint", "gpu-platform")))
    assert store.writes == []


def test_two_publishes_at_once_capture_one_revision(store: MemoryStore, controller: Controller) -> None:
    """The Blueprint's update event and the rollout timer may publish the same version at the
    same moment (seen in bench_scale: "BlueprintRevision … already exists", retried 60 s later)."""
    store.put("Blueprint", blueprint_doc())

    async def both() -> None:
        await asyncio.gather(
            controller.publish(store.fresh("Blueprint", "gpu-platform")),
            controller.publish(store.fresh("Blueprint", "gpu-platform")),
        )

    run(both())
    assert len([w for w in store.writes if w[0] == "create"]) == 1
    assert store.fresh("Blueprint", "gpu-platform")["status"]["revision"].startswith("gpu-platform-v")


def test_a_revision_another_replica_created_meanwhile_is_taken_as_published(
    store: MemoryStore, controller: Controller, monkeypatch: pytest.MonkeyPatch
) -> None:
    from blueprintd.cluster.management import AlreadyExists

    store.put("Blueprint", blueprint_doc())
    create = store.create

    async def raced(kind: str, body: dict[str, Any]) -> dict[str, Any]:
        await create(kind, body)  # the previous leader's create landed first
        raise AlreadyExists(f"creating {kind} {body['metadata']['name']}: already exists")

    monkeypatch.setattr(store, "create", raced)
    run(controller.publish(store.fresh("Blueprint", "gpu-platform")))
    st = store.fresh("Blueprint", "gpu-platform")["status"]
    assert st["revision"].startswith("gpu-platform-v")
    assert not any(c.get("reason") == "VersionReused" for c in st.get("conditions") or [])


def test_a_deleted_member_leaves_the_rollout_and_the_fleet_goes_quiet(
    store: MemoryStore, controller: Controller
) -> None:
    """The issue-14 write loop: assignments of a deleted member stayed forever, and every
    rollout resync patched the Blueprint again."""
    store.put("Blueprint", blueprint_doc())
    for name in ("alpha", "beta", "ghost"):
        store.put("MemberCluster", member(name))
    run(controller.publish(store.fresh("Blueprint", "gpu-platform")))
    run(controller.rollout(store.fresh("Blueprint", "gpu-platform")))
    version = store.fresh("Blueprint", "gpu-platform")["spec"]["version"]
    rollout = store.fresh("Blueprint", "gpu-platform")["status"]["rollout"]
    assert rollout["assignments"] == {"alpha": version}, "the canary wave first"
    store.delete("MemberCluster", "alpha")
    store.delete("MemberCluster", "ghost")
    store.writes.clear()
    run(controller.rollout(store.fresh("Blueprint", "gpu-platform")))
    [(_, _, patch)] = store.writes
    assert patch["rollout"]["assignments"]["alpha"] is None, "removed on the server, not just left out"
    assert "alpha" not in store.fresh("Blueprint", "gpu-platform")["status"]["rollout"]["assignments"]
    assert "ghost" not in str(store.fresh("Blueprint", "gpu-platform")["status"]["rollout"]["waves"])
    store.writes.clear()
    for _ in range(3):
        run(controller.rollout(store.fresh("Blueprint", "gpu-platform")))
    assert store.writes == [], "a quiet fleet makes no write"


def test_a_relabelled_member_leaves_the_rollout(store: MemoryStore, controller: Controller) -> None:
    store.put("Blueprint", blueprint_doc())
    store.put("MemberCluster", member("alpha"))
    run(controller.publish(store.fresh("Blueprint", "gpu-platform")))
    run(controller.rollout(store.fresh("Blueprint", "gpu-platform")))
    assert set(store.fresh("Blueprint", "gpu-platform")["status"]["rollout"]["assignments"]) == {"alpha"}
    store.put("MemberCluster", member("alpha", **{"blueprintd.io/gpu-platform": "disabled"}))
    run(controller.rollout(store.fresh("Blueprint", "gpu-platform")))
    st = store.fresh("Blueprint", "gpu-platform")["status"]
    assert st["rollout"]["assignments"] == {} and st["matchedClusters"] == 0
    store.writes.clear()
    run(controller.rollout(store.fresh("Blueprint", "gpu-platform")))
    assert store.writes == []


def test_an_unreachable_member_is_reported_once_then_left_alone(store: MemoryStore, controller: Controller) -> None:
    store.put("MemberCluster", member("ghost"))
    run(controller.reconcile_member(store.fresh("MemberCluster", "ghost")))
    [(what, name, patch)] = store.writes
    assert (what, name) == ("MemberCluster/status", "ghost")
    assert patch["reachable"] is False and "Not Found" in patch["lastError"]
    [reach] = patch["conditions"]
    assert (reach["type"], reach["status"], reach["reason"]) == ("Reachable", "False", "ConnectFailed")
    store.writes.clear()
    for _ in range(3):
        run(controller.reconcile_member(store.fresh("MemberCluster", "ghost")))
    assert store.writes == []


def test_an_unreachable_member_is_tried_again_only_when_its_backoff_is_due(
    store: MemoryStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [datetime(2026, 3, 1, 12, 0, tzinfo=UTC)]
    monkeypatch.setattr(controller_module, "now", lambda: clock[0])
    attempts: list[datetime] = []
    real_secret = store.secret_value

    async def counting(name: str, key: str, namespace: str | None = None) -> str:
        attempts.append(clock[0])
        return await real_secret(name, key, namespace)

    store.secret_value = counting  # type: ignore[method-assign]
    policy = BackoffPolicy(base_seconds=10, cap_seconds=40, jitter=0.0)
    ctl = Controller(store, OperatorSettings(workdir=tmp_path, backoff=policy))  # type: ignore[arg-type]
    store.put("MemberCluster", member("ghost"))
    for _ in range(200):  # 200 resyncs of 1 s
        run(ctl.reconcile_member(store.fresh("MemberCluster", "ghost")))
        clock[0] += timedelta(seconds=1)
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(attempts)]
    assert gaps[:4] == [10, 20, 40, 40], f"attempts at {attempts}"
    assert len(store.writes) == len(attempts), "one status write per attempt, none in between"
    backoff = store.fresh("MemberCluster", "ghost")["status"]["backoff"]
    assert backoff["failures"] == len(attempts) and backoff["nextAttempt"]
    # A changed spec (a fixed kubeconfig reference) is a new attempt: tried on the next resync.
    fixed = store.fresh("MemberCluster", "ghost")
    fixed["spec"]["kubeconfigSecretRef"]["name"] = "ghost-kubeconfig-2"
    store.put("MemberCluster", fixed)
    before = len(attempts)
    run(ctl.reconcile_member(store.fresh("MemberCluster", "ghost")))
    assert len(attempts) == before + 1
    assert store.fresh("MemberCluster", "ghost")["status"]["backoff"]["failures"] == 1


def test_a_paused_member_is_not_touched(store: MemoryStore, controller: Controller) -> None:
    mc = member("alpha")
    mc["spec"]["paused"] = True
    store.put("MemberCluster", mc)
    run(controller.reconcile_member(store.fresh("MemberCluster", "alpha")))
    assert store.writes == []


class _LostShard:
    """Sharding as a replica sees it that was admitted, then lost the member (paused past its
    Lease): the fence says so at the write."""

    def __init__(self) -> None:
        self.admitted: list[str] = []

    async def admit(self, raw: dict[str, Any], drop: Any) -> bool:
        self.admitted.append(raw["metadata"]["name"])
        return True

    def write_check(self, member: str) -> Any:
        def check() -> None:
            raise FencedOut(member, "own Lease not renewed recently")

        return check

    def leading(self) -> bool:
        return False


def test_a_replica_that_lost_the_member_writes_no_status_for_it(store: MemoryStore, controller: Controller) -> None:
    """A replica resumed after SIGSTOP must not write its older view of a member's status over
    the new owner's: the status write passes the same fence as every write to the member."""
    store.put("MemberCluster", member("ghost"))
    controller.shard = _LostShard()  # type: ignore[assignment]
    result = run(controller.reconcile_member(store.fresh("MemberCluster", "ghost")))
    assert controller.shard.admitted == ["ghost"]  # type: ignore[union-attr]
    assert store.writes == [], "fenced: the unreachable status is the new owner's to write"
    assert result.status is None and not result.patched


def test_a_replica_that_lost_the_leader_lease_writes_no_rollout(store: MemoryStore, controller: Controller) -> None:
    """Blueprint-level work is the leader's: a decision finished after the Lease was lost (the
    replica was paused mid-handler) is dropped, not written over the new leader's."""
    store.put("Blueprint", blueprint_doc())
    store.put("MemberCluster", member("alpha"))
    run(controller.publish(store.fresh("Blueprint", "gpu-platform")))
    store.writes.clear()
    controller.shard = _LostShard()  # type: ignore[assignment]
    run(controller.rollout(store.fresh("Blueprint", "gpu-platform")))
    assert store.writes == []
    assert "rollout" not in store.fresh("Blueprint", "gpu-platform")["status"]
