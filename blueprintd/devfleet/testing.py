"""Helpers for tests and benchmarks that run on the local fleet.

The pytest fixtures in ``tests/conftest.py`` are thin wrappers around these functions, so
benchmarks and the demo use exactly the same code paths as the tests.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from blueprintd.devfleet.binaries import Binaries
from blueprintd.devfleet.fleet import ClusterHandle, Fleet
from blueprintd.devfleet.nodes import FleetFile, MemberSpec, NodeGroupSpec

T = TypeVar("T")

# The default test fleet: member-1 is a mixed H100 + L4 + CPU cluster, member-2 an L4 cluster.
TEST_FLEET = FleetFile(
    members=[
        MemberSpec(
            name="member-1",
            labels={"env": "test", "gpu": "mixed"},
            nodes=[
                NodeGroupSpec(profile="h100", count=2),
                NodeGroupSpec(profile="l4", count=2),
                NodeGroupSpec(profile="cpu", count=1),
            ],
        ),
        MemberSpec(
            name="member-2", labels={"env": "test", "gpu": "l4"}, nodes=[NodeGroupSpec(profile="l4", count=2)]
        ),
    ]
)


@contextlib.contextmanager
def running_fleet(directory: Path, spec: FleetFile, binaries: Binaries) -> Iterator[Fleet]:
    """Start a fleet and always stop it, whatever the test did."""
    fleet = Fleet.up(directory, spec, binaries)
    try:
        yield fleet
    finally:
        fleet.down(remove=True)


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def wait_for(
    predicate: Callable[[], T | None], timeout: float = 10.0, interval: float = 0.05, what: str = ""
) -> T:
    """Poll until ``predicate`` returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate!r} (last: {last!r})")


@contextlib.contextmanager
def temp_namespace(cluster: ClusterHandle, prefix: str = "t") -> Iterator[str]:
    """A namespace that exists for one test in one cluster."""
    from kubernetes import client

    name = unique_name(prefix)
    api_client = cluster.api_client()
    core = client.CoreV1Api(api_client)
    core.create_namespace({"metadata": {"name": name}})
    try:
        yield name
    finally:
        with contextlib.suppress(Exception):
            core.delete_namespace(name)
        api_client.close()


def dynamic_client(cluster: ClusterHandle) -> Any:
    from kubernetes import dynamic

    return dynamic.DynamicClient(cluster.api_client())
