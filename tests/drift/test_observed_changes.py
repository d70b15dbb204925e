"""What the drift monitor tells a member resync (``observed_changes``): a count that moves on
every change a reconcile would read, stands still on a quiet member, and is withheld while the
watches do not cover the member. In process, with the hand-off tests' stand-ins (no API server)."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from test_handoff import CM, STREAM, drain, live, no_cluster, tracked  # noqa: F401 (no_cluster: autouse)

from blueprintd.drift.monitor import NODE_STREAM, ClusterMonitor
from blueprintd.drift.watch import Changed, Lost, Synced

NODE = {
    "apiVersion": "v1",
    "kind": "Node",
    "metadata": {"name": "gpu-0", "resourceVersion": "1", "labels": {"nvidia.com/gpu.product": "NVIDIA-H100"}},
    "status": {"capacity": {"nvidia.com/gpu": "8"}, "conditions": [{"type": "Ready", "status": "True"}]},
}


def with_rv(obj: dict[str, Any], rv: str) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    out["metadata"]["resourceVersion"] = rv
    return out


async def quiet_member() -> ClusterMonitor:
    m, _ = await tracked(CM)
    assert NODE_STREAM in m.watch.specs, "nodes are always watched: the facts come from them"
    assert m.observed_changes() is None, "not every stream has listed yet"
    m._synced(Synced(NODE_STREAM, [NODE]))
    namespaces = next(s for s in m.watch.specs if s.kind == "Namespace")  # the add-on's namespace
    m._synced(Synced(namespaces, [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ops"}}]))
    await drain(m)
    return m


def test_the_count_stands_still_on_a_quiet_member_and_moves_on_a_change() -> None:
    async def scenario() -> None:
        m = await quiet_member()
        first = m.observed_changes()
        assert first is not None and m.observed_changes() == first
        changed = with_rv(live(CM), "42")
        changed["data"] = {"a": "2"}
        m._changed(Changed(STREAM, "MODIFIED", changed))
        await drain(m)
        await asyncio.sleep(0)
        assert m.observed_changes() not in (None, first)

    asyncio.run(scenario())


def test_a_node_heartbeat_is_not_a_change_but_a_new_label_is() -> None:
    async def scenario() -> None:
        m = await quiet_member()
        before = m.changes
        beat = with_rv(NODE, "2")
        beat["status"]["conditions"][0]["lastHeartbeatTime"] = "2026-11-30T12:00:00Z"
        m._changed(Changed(NODE_STREAM, "MODIFIED", beat))
        assert m.changes == before
        relabelled = with_rv(beat, "3")
        relabelled["metadata"]["labels"]["nvidia.com/mig.config"] = "all-1g.10gb"
        m._changed(Changed(NODE_STREAM, "MODIFIED", relabelled))
        assert m.changes == before + 1

    asyncio.run(scenario())


def test_a_relist_counts_only_when_it_finds_something_different() -> None:
    async def scenario() -> None:
        m = await quiet_member()
        before = m.changes
        m._synced(Synced(STREAM, list(m.cache[STREAM].values())))  # the periodic relist, same objects
        m._synced(Synced(NODE_STREAM, [with_rv(NODE, "9")]))  # only a heartbeat moved the version
        assert m.changes == before
        m._synced(Synced(STREAM, [with_rv(live(CM), "77")]))  # changed while the watch was away
        assert m.changes == before + 1

    asyncio.run(scenario())


def test_nothing_is_promised_while_a_stream_is_lost_or_a_reconcile_runs() -> None:
    async def scenario() -> None:
        m = await quiet_member()
        await m._handle(Lost(STREAM, "connection refused"))
        assert m.observed_changes() is None
        await m._handle(Synced(STREAM, list(m.cache[STREAM].values())))
        assert m.observed_changes() is not None
        m.reconciling()
        assert m.observed_changes() is None

    asyncio.run(scenario())
