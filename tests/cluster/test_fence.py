"""The write fence (cluster/fence.py) on a real API server: a write behind a closed fence is
never sent — not an apply, a delete, a node label, a namespace nor a helm install — and
reads still work, so the replica can still observe while it hands the member over."""

from __future__ import annotations

import asyncio

import pytest

from blueprintd.api.ref import ObjectRef
from blueprintd.cluster.fence import FencedOut
from blueprintd.cluster.session import MemberSession
from blueprintd.devfleet.binaries import Binaries
from blueprintd.devfleet.fleet import ClusterHandle
from blueprintd.devfleet.testing import unique_name

pytestmark = pytest.mark.fleet


class Gate:
    """A fence the test opens and closes; counts the writes it was asked about."""

    def __init__(self) -> None:
        self.open = True
        self.asked = 0

    def __call__(self) -> None:
        self.asked += 1
        if not self.open:
            raise FencedOut("m1", "own Lease not renewed recently")


def configmap(ns: str, name: str, value: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": ns},
        "data": {"k": value},
    }


def test_a_closed_fence_stops_every_write_before_it_is_sent(
    member: ClusterHandle, member_namespace: str, kube_binaries: Binaries, chart_repo: str
) -> None:
    gate = Gate()
    session = MemberSession("m1", member.api_client(), member.kubeconfig, kube_binaries.helm, gate)
    objects = session.objects
    name = unique_name("fenced")
    ref = ObjectRef("v1", "ConfigMap", member_namespace, name)

    objects.apply(configmap(member_namespace, name, "1"))
    assert gate.asked == 1 and objects.get(ref)["data"] == {"k": "1"}  # type: ignore[index]

    gate.open = False
    with pytest.raises(FencedOut, match="member m1: write not sent, this replica no longer owns it"):
        objects.apply(configmap(member_namespace, name, "2"))
    with pytest.raises(FencedOut):
        objects.delete(ref)
    with pytest.raises(FencedOut):
        objects.ensure_namespace(unique_name("fenced-ns"))
    node = objects.list_nodes()[0]["metadata"]["name"]
    with pytest.raises(FencedOut):
        objects.label_node(node, {"blueprintd.io/fenced": "yes"})
    # Nothing reached the member: the object is unchanged, the node unlabelled; reads still work.
    assert objects.get(ref)["data"] == {"k": "1"}  # type: ignore[index]
    assert "blueprintd.io/fenced" not in (objects.list_nodes()[0]["metadata"].get("labels") or {})

    # The same holds for the clients drift restores use, under another field manager.
    with pytest.raises(FencedOut):
        session.object_client("blueprintd-drift-guard").apply(configmap(member_namespace, name, "3"))

    release, ns = unique_name("fenced-rel"), unique_name("fenced-helm")

    async def install() -> None:
        await session.helm.install_or_upgrade(release, ns, chart_repo, "kai-scheduler", "v0.10.2", {})

    with pytest.raises(FencedOut):
        asyncio.run(install())
    assert asyncio.run(session.helm.release(release, ns)) is None  # helm was never started
    assert objects.get(ObjectRef("v1", "Namespace", "", ns)) is None
