"""The watch streams against a real API server: list, watch, relist on request."""

from __future__ import annotations

import queue
import time

import pytest
from kubernetes import client

from blueprintd.devfleet.fleet import ClusterHandle
from blueprintd.drift.watch import Changed, MemberWatch, StreamSpec, Synced, WatchMessage

pytestmark = pytest.mark.fleet


def next_of(q: queue.Queue[WatchMessage], kind: type, timeout: float = 10.0) -> WatchMessage:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            msg = q.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            break
        if isinstance(msg, kind):
            return msg
    raise AssertionError(f"no {kind.__name__} within {timeout}s")


def test_list_then_watch_and_relist_on_request(member: ClusterHandle, member_namespace: str) -> None:
    api = member.api_client()
    core = client.CoreV1Api(api)
    core.create_namespaced_config_map(member_namespace, {"metadata": {"name": "before"}, "data": {"a": "1"}})
    got: queue.Queue[WatchMessage] = queue.Queue()
    watch = MemberWatch(member.name, api.configuration, got.put)
    spec = StreamSpec("v1", "ConfigMap", member_namespace)
    try:
        watch.set_streams({spec})
        first = next_of(got, Synced)
        assert isinstance(first, Synced)
        assert [o["metadata"]["name"] for o in first.items if o["metadata"]["name"] == "before"] == ["before"]
        assert first.items[0]["kind"] == "ConfigMap" and first.items[0]["apiVersion"] == "v1"

        core.patch_namespaced_config_map("before", member_namespace, {"data": {"a": "2"}})
        changed = next_of(got, Changed)
        assert isinstance(changed, Changed)
        assert (changed.type, changed.obj["data"], changed.obj["kind"]) == ("MODIFIED", {"a": "2"}, "ConfigMap")
        core.delete_namespaced_config_map("before", member_namespace)
        deleted = next_of(got, Changed)
        assert isinstance(deleted, Changed) and deleted.type == "DELETED"

        # A relist (the periodic full resync) interrupts the open watch at once.
        started = time.monotonic()
        watch.relist()
        again = next_of(got, Synced)
        assert isinstance(again, Synced) and time.monotonic() - started < 5
        assert not [o for o in again.items if o["metadata"]["name"] == "before"]
        counts = watch.counter.snapshot()
        assert counts["list"] >= 2 and counts["watch"] >= 2
    finally:
        watch.close()
        api.close()
