"""Shared fixtures: the local fleet of real API servers, the chart repository, namespaces.

One fleet (etcd + management + 2 members) is started per test session and shared; tests
isolate themselves with their own namespaces and unique object names. Tests that stop
clusters or need a fresh fleet start their own with ``running_fleet``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from blueprintd.devfleet import binaries as binaries_mod
from blueprintd.devfleet.binaries import Binaries
from blueprintd.devfleet.fleet import ClusterHandle, Fleet
from blueprintd.devfleet.standins import StandIns
from blueprintd.devfleet.testing import FULL_FLEET, TEST_FLEET, running_fleet, temp_namespace

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def kube_binaries() -> Binaries:
    """kube-apiserver, etcd, kubectl and helm at the pinned versions (built once if needed)."""
    return binaries_mod.ensure(progress=lambda m: print(m, file=sys.stderr, flush=True))


@pytest.fixture(scope="session")
def fleet(kube_binaries: Binaries, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """management + member-1 (2x H100, 2x L4, 1x CPU nodes) + member-2 (2x L4 nodes)."""
    with running_fleet(tmp_path_factory.mktemp("fleet"), TEST_FLEET, kube_binaries) as f:
        simulator = StandIns(f)
        simulator.start()
        try:
            yield f
        finally:
            simulator.stop()


@pytest.fixture(scope="session")
def full_fleet(kube_binaries: Binaries, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """management + one ``full`` member ("full-1": 1x H100, 1x H100 MIG, 1x L4, 1x CPU node) with
    Kubernetes' own controller-manager and scheduler and kwok playing the kubelets."""
    with running_fleet(tmp_path_factory.mktemp("full-fleet"), FULL_FLEET, kube_binaries) as f:
        yield f


@pytest.fixture(scope="session")
def full_member(full_fleet: Fleet) -> ClusterHandle:
    return full_fleet.members[0]


@pytest.fixture(scope="session")
def full_standins(full_fleet: Fleet) -> Iterator[StandIns]:
    """The stand-ins of the full fleet: Gatekeeper's template controller and the webhook responder."""
    standins = StandIns(full_fleet)
    standins.start()
    try:
        yield standins
    finally:
        standins.stop()


@pytest.fixture(scope="session")
def management(fleet: Fleet) -> ClusterHandle:
    return fleet.management


@pytest.fixture(scope="session")
def member(fleet: Fleet) -> ClusterHandle:
    """member-1: the mixed H100 + L4 + CPU cluster."""
    return fleet.members[0]


@pytest.fixture
def member_namespace(member: ClusterHandle) -> Iterator[str]:
    """A fresh namespace in member-1, deleted after the test."""
    with temp_namespace(member) as ns:
        yield ns


@pytest.fixture(scope="session")
def chart_repo(kube_binaries: Binaries, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a local Helm repository on 127.0.0.1 serving the stand-in and project charts."""
    from blueprintd.devfleet.chartrepo import ChartRepoServer, build_chart_repo
    from blueprintd.devfleet.chartserve import chart_sources

    out = build_chart_repo(chart_sources(), tmp_path_factory.mktemp("charts"), kube_binaries.helm)
    server = ChartRepoServer(out)
    server.start()
    try:
        yield server.url
    finally:
        server.stop()
