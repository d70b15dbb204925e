"""The collector against a real kube-apiserver: Nodes and ResourceSlices as the server stores them.

The server validates and canonicalizes what it stores (quantities such as ``81559Mi`` may come
back rewritten, attributes are checked against the v1 schema), so this proves the collector
reads real API output, not just the dicts tests build by hand.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from typer.testing import CliRunner

from blueprintd.api.facts import FactSource
from blueprintd.cli.main import app
from blueprintd.devfleet.fleet import ClusterHandle
from blueprintd.devfleet.testing import unique_name
from blueprintd.dra.slices import build_slices
from blueprintd.facts.annotation import ANNOTATION_KEY, encode_inventory
from blueprintd.facts.collect.live import collect_cluster_facts, list_resource_slices
from blueprintd.facts.nvml import FakeNvml, discover

pytestmark = pytest.mark.fleet

DRIVER = "gpu.nvidia.com"


@pytest.fixture
def api(member: ClusterHandle) -> Iterator[Any]:
    api_client = member.api_client()
    try:
        yield api_client
    finally:
        api_client.close()


class Objects:
    """Creates Nodes and ResourceSlices in member-1 and deletes them afterwards."""

    def __init__(self, api: Any) -> None:
        self.core = client.CoreV1Api(api)
        self.resource = client.ResourceV1Api(api)
        self.nodes: list[str] = []
        self.slices: list[str] = []

    def node(self, prefix: str, labels: dict[str, str], annotations: dict[str, str] | None = None) -> str:
        name = unique_name(prefix)
        self.core.create_node(
            {"metadata": {"name": name, "labels": labels, "annotations": annotations or {}}}
        )
        self.nodes.append(name)
        return name

    def slice(self, body: dict[str, Any]) -> None:
        self.resource.create_resource_slice(body, _preload_content=False)
        self.slices.append(body["metadata"]["name"])

    def cleanup(self) -> None:
        for name in self.slices:
            with contextlib.suppress(ApiException):
                self.resource.delete_resource_slice(name)
        for name in self.nodes:
            with contextlib.suppress(ApiException):
                self.core.delete_node(name)


@pytest.fixture
def objects(api: Any) -> Iterator[Objects]:
    made = Objects(api)
    try:
        yield made
    finally:
        made.cleanup()


def _stale_gfd_labels() -> dict[str, str]:
    """GFD labels from before a driver upgrade and a MIG re-partition (still MIG off, driver 535)."""
    return {
        "nvidia.com/gpu.present": "true",
        "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
        "nvidia.com/gpu.count": "8",
        "nvidia.com/gpu.memory": "81559",
        "nvidia.com/gpu.family": "hopper",
        "nvidia.com/gpu.compute.major": "9",
        "nvidia.com/gpu.compute.minor": "0",
        "nvidia.com/cuda.driver.major": "535",
        "nvidia.com/cuda.driver.minor": "104",
        "nvidia.com/cuda.driver.rev": "05",
        "nvidia.com/cuda.runtime.major": "12",
        "nvidia.com/cuda.runtime.minor": "2",
        "nvidia.com/mig.capable": "true",
        "nvidia.com/mig.strategy": "single",
        "test.blueprintd.io/case": "collect",
    }


def _pool_of(facts: Any, node: str) -> Any:
    (pool,) = [p for p in facts.pools if node in p.nodes]
    return pool


def test_slices_beat_stale_gfd_labels_in_a_real_api_server(
    member: ClusterHandle, api: Any, objects: Objects
) -> None:
    node = objects.node("collect-mig", _stale_gfd_labels())
    inventory = discover(FakeNvml.from_machine("dgx-h100-mig"), node)
    for body in build_slices(inventory, DRIVER, node):  # what the bundled DRA driver publishes
        objects.slice(body)

    facts = collect_cluster_facts(api, "member-1")
    assert facts.cluster == "member-1" and facts.kubernetes_version.startswith("v1.")
    assert facts.collected_at is not None
    pool = _pool_of(facts, node)
    assert pool.name == "h100-80gb-mig"
    assert (pool.gpu_count, pool.gpu_memory_mib, pool.mig_enabled) == (8, 81559, True)
    assert pool.sources["migEnabled"] is FactSource.RESOURCE_SLICE
    assert pool.sources["driverVersion"] is FactSource.RESOURCE_SLICE
    mine = {(c.field, c.other, c.other_source) for c in facts.conflicts if c.node == node}
    assert ("migEnabled", "false", FactSource.GFD) in mine
    assert ("driverVersion", "535.104.05", FactSource.GFD) in mine
    assert ("cudaDriverVersion", "12.2", FactSource.GFD) in mine
    assert not any(
        c.field in ("gpuProduct", "computeCapability", "gpuCount") for c in facts.conflicts if c.node == node
    )


def test_newest_slice_generation_wins_and_driver_filter(api: Any, objects: Objects) -> None:
    node = objects.node("collect-gen", {"test.blueprintd.io/case": "gen"})
    full = discover(FakeNvml.from_machine("dgx-h100"), node)
    fake = FakeNvml.from_machine("dgx-h100")
    fake.set_mig_layout(None, ["7g.80gb"])
    mig = discover(fake, node)
    (old,) = build_slices(full, DRIVER, node)
    (new,) = build_slices(mig, DRIVER, node)
    old["metadata"]["name"], new["metadata"]["name"] = f"{node}-old", f"{node}-new"
    new["spec"]["pool"]["generation"] = old["spec"]["pool"]["generation"] + 1
    objects.slice(old)
    objects.slice(new)
    (other,) = build_slices(full, "gpu.example.com", node)
    other["metadata"]["name"] = f"{node}-other"
    objects.slice(other)

    listed = list_resource_slices(api, DRIVER)
    assert {s["metadata"]["name"] for s in listed} >= {f"{node}-old", f"{node}-new"}
    assert f"{node}-other" not in {s["metadata"]["name"] for s in listed}
    pool = _pool_of(collect_cluster_facts(api, "member-1"), node)
    assert pool.name == "h100-80gb-mig" and pool.gpu_count == 8
    other_driver = _pool_of(collect_cluster_facts(api, "member-1", dra_driver="gpu.example.com"), node)
    assert other_driver.name == "h100-80gb" and not other_driver.mig_enabled


def test_agent_annotations_and_cli_table(member: ClusterHandle, objects: Objects) -> None:
    inventory = discover(FakeNvml.from_machine("l4-server"))
    node = objects.node(
        "collect-l4", {"test.blueprintd.io/case": "cli"}, {ANNOTATION_KEY: encode_inventory(inventory)}
    )
    runner = CliRunner()
    table = runner.invoke(app, ["facts", "--kubeconfig", str(member.kubeconfig)])
    assert table.exit_code == 0, table.output
    assert "member-1" in table.stdout and "l4" in table.stdout and "agent" in table.stdout
    as_yaml = runner.invoke(app, ["facts", "--kubeconfig", str(member.kubeconfig), "-o", "yaml"])
    assert as_yaml.exit_code == 0 and "pools:" in as_yaml.stdout
    data = json.loads(
        runner.invoke(app, ["facts", "--kubeconfig", str(member.kubeconfig), "-o", "json"]).stdout
    )
    (pool,) = [p for p in data["pools"] if node in p["nodes"]]
    assert pool["name"] == "l4" and pool["gpuCount"] == 4 and pool["gpuFamily"] == "ada-lovelace"
    # The simulated test-bed nodes of member-1 are summarized too (GFD labels only).
    names = {p["name"] for p in data["pools"]}
    assert {"h100-80gb", "l4", "cpu"} <= names


def test_unreachable_cluster_is_a_clear_error(tmp_path: Any, member: ClusterHandle) -> None:
    text = member.kubeconfig.read_text()
    dead = tmp_path / "dead.kubeconfig"
    import re

    dead.write_text(re.sub(r"https://127\.0\.0\.1:\d+", "https://127.0.0.1:9", text))
    result = CliRunner().invoke(app, ["facts", "--kubeconfig", str(dead)])
    assert result.exit_code == 1
    assert "error: cannot list nodes" in result.output and "Traceback" not in result.output
