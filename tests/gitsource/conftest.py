"""Fixtures of the GitSource tests that sync into a real management API server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from gitsource_helpers import delete_all, install_crds
from kubernetes import client

from blueprintd.cluster.management import ManagementStore
from blueprintd.devfleet.binaries import Binaries
from blueprintd.devfleet.fleet import Fleet
from blueprintd.devfleet.testing import unique_name


@pytest.fixture(scope="module")
def crds(fleet: Fleet, kube_binaries: Binaries) -> None:
    install_crds(fleet, kube_binaries)


@pytest.fixture
def store(fleet: Fleet, crds: None) -> Iterator[ManagementStore]:
    """A fresh namespace of the management cluster per test, emptied afterwards."""
    api_client = fleet.management.api_client()
    ns = unique_name("gitsource")
    client.CoreV1Api(api_client).create_namespace({"metadata": {"name": ns}})
    try:
        yield ManagementStore(api_client, ns)
    finally:
        delete_all(api_client, ns)
        api_client.close()
