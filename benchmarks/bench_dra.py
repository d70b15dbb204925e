"""Benchmarks of the bundled DRA driver: prepare latency over real sockets, slice publication.

Everything is real except NVML (``FakeNvml``) and the sharing executor (recording): the
kubelet side is a gRPC client on the plugin's unix socket, claims are read from a real
kube-apiserver, slices are written to it.

Requirement: a kube-apiserver serving ``resource.k8s.io/v1`` (Kubernetes >= 1.34).

* ``BLUEPRINTD_BENCH_KUBECONFIG=/path/kubeconfig``: use that cluster (needs rights to create
  Nodes, Namespaces, ResourceClaims (+status) and ResourceSlices; everything created is
  deleted afterwards);
* unset: a throw-away local fleet (real kube-apiserver + etcd from ``blueprintd.devfleet``,
  binaries built or found as for the tests) is started and stopped around the run.

Run standalone: ``python benchmarks/bench_dra.py`` (prints a table and JSON rows).
``run()`` returns rows ``{name, metric, value, unit, goal}``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

DRIVER = "gpu.nvidia.com"
ITERATIONS = int(os.environ.get("BLUEPRINTD_BENCH_DRA_ITERATIONS", "40"))


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


@contextlib.contextmanager
def _api_client() -> Iterator[Any]:
    """The benchmark cluster: BLUEPRINTD_BENCH_KUBECONFIG, else a temporary local fleet."""
    from kubernetes import config

    kubeconfig = os.environ.get("BLUEPRINTD_BENCH_KUBECONFIG")
    if kubeconfig:
        api = config.new_client_from_config(config_file=kubeconfig)
        try:
            yield api
        finally:
            api.close()
        return
    from blueprintd.devfleet import binaries
    from blueprintd.devfleet.nodes import FleetFile, MemberSpec
    from blueprintd.devfleet.testing import running_fleet

    bins = binaries.ensure(progress=lambda m: print(m, file=sys.stderr, flush=True))
    directory = Path(tempfile.mkdtemp(prefix="bench-dra-fleet-"))
    try:
        spec = FleetFile(members=[MemberSpec(name="bench", control_plane="api-only")])
        with running_fleet(directory, spec, bins) as fleet:
            api = fleet.members[0].api_client()
            try:
                yield api
            finally:
                api.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _claim(api: Any, namespace: str, node: str, devices: list[str], device_class: str) -> dict[str, Any]:
    from kubernetes import client

    rapi = client.ResourceV1Api(api)
    name = f"bench-{uuid.uuid4().hex[:10]}"
    spec = {
        "devices": {
            "requests": [
                {
                    "name": "r",
                    "exactly": {
                        "deviceClassName": device_class,
                        "allocationMode": "ExactCount",
                        "count": len(devices),
                    },
                }
            ]
        }
    }
    rapi.create_namespaced_resource_claim(
        namespace, {"metadata": {"name": name}, "spec": spec}, _preload_content=False
    )
    allocation = {
        "devices": {
            "results": [{"request": "r", "driver": DRIVER, "pool": node, "device": d} for d in devices]
        }
    }
    resp = rapi.patch_namespaced_resource_claim_status(
        name, namespace, {"status": {"allocation": allocation}}, _preload_content=False
    )
    claim: dict[str, Any] = json.loads(resp.data)
    return claim


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return (time.perf_counter() - start) * 1000.0, out


def _prepare_rows(api: Any, namespace: str, node: str, workdir: Path) -> list[dict[str, Any]]:
    import grpc

    from blueprintd.dra.cdi import no_mig_caps
    from blueprintd.dra.executor import RecordingExecutor
    from blueprintd.dra.plugin import DraPlugin, PluginOptions
    from blueprintd.dra.proto import dra_v1_pb2 as pb2
    from blueprintd.dra.rpc import Client
    from blueprintd.dra.slices import bus_id_pcie_root
    from blueprintd.facts.nvml import FakeNvml

    rows: list[dict[str, Any]] = []
    cases: list[tuple[str, str, Callable[[int], list[str]], str]] = [
        ("single-gpu", "dgx-h100", lambda i: [f"gpu-{i % 8}"], "gpu.nvidia.com"),
        (
            "8-mig",
            "dgx-h100-mig",
            lambda i: [f"gpu-{g}-mig-1g10gb-19-{p}" for g in range(2) for p in range(4)],
            "mig.nvidia.com",
        ),
    ]
    for label, machine, devices_for, device_class in cases:
        options = PluginOptions(
            node_name=node,
            plugin_root=workdir / label / "k",
            cdi_root=workdir / label / "cdi",
            resync_interval_s=0,
        )
        plugin = DraPlugin.from_api_client(
            options,
            api,
            nvml=FakeNvml.from_machine(machine),
            executor=RecordingExecutor(),
            pcie_root=bus_id_pcie_root,
            mig_caps=no_mig_caps,
        )
        plugin.start(background_resync=False)
        claims = [_claim(api, namespace, node, devices_for(i), device_class) for i in range(ITERATIONS)]
        prep: list[float] = []
        repeat: list[float] = []
        unprep: list[float] = []
        try:
            with grpc.insecure_channel(f"unix://{plugin.paths.dra_socket}") as channel:
                stub = Client(channel, pb2, "DRAPlugin")
                for c in claims:
                    m = c["metadata"]
                    msg = pb2.Claim(namespace=m["namespace"], name=m["name"], uid=m["uid"])
                    prepare = pb2.NodePrepareResourcesRequest(claims=[msg])
                    t0 = time.perf_counter()
                    resp = stub.NodePrepareResources(prepare, timeout=45)
                    t1 = time.perf_counter()
                    stub.NodePrepareResources(prepare, timeout=45)  # repeat: answered from the checkpoint
                    t2 = time.perf_counter()
                    undo = stub.NodeUnprepareResources(
                        pb2.NodeUnprepareResourcesRequest(claims=[msg]), timeout=45
                    )
                    t3 = time.perf_counter()
                    assert resp.claims[m["uid"]].error == "", resp.claims[m["uid"]].error
                    assert undo.claims[m["uid"]].error == ""
                    prep.append((t1 - t0) * 1000)
                    repeat.append((t2 - t1) * 1000)
                    unprep.append((t3 - t2) * 1000)
        finally:
            plugin.stop()
        name = f"dra.prepare.{label}"
        rows += [
            {
                "name": name,
                "metric": "p50",
                "value": round(_pct(prep, 0.5), 2),
                "unit": "ms",
                "goal": "<= 50",
            },
            {
                "name": name,
                "metric": "p99",
                "value": round(_pct(prep, 0.99), 2),
                "unit": "ms",
                "goal": "<= 250",
            },
            {
                "name": f"{name}.repeat",
                "metric": "p50",
                "value": round(_pct(repeat, 0.5), 2),
                "unit": "ms",
                "goal": "<= 10",
            },
            {
                "name": f"dra.unprepare.{label}",
                "metric": "p50",
                "value": round(statistics.median(unprep), 2),
                "unit": "ms",
                "goal": "<= 50",
            },
        ]
    return rows


def _slice_rows(api: Any, node: str) -> list[dict[str, Any]]:
    from blueprintd.dra.publisher import KubeSliceStore, SlicePublisher
    from blueprintd.dra.slices import build_slices, bus_id_pcie_root
    from blueprintd.facts.nvml import FakeNvml, discover

    fake = FakeNvml.from_machine("dgx-h100-mig")  # 8x H100, 7x 1g.10gb each = 56 devices
    inventory = discover(fake, node)
    builds = [_timed(lambda: build_slices(inventory, DRIVER, node))[0] for _ in range(50)]
    store = KubeSliceStore(api)
    publisher = SlicePublisher(store, DRIVER, node, bus_id_pcie_root)
    first, _ = _timed(lambda: publisher.publish(inventory))
    noops = [_timed(lambda: publisher.publish(discover(fake, node)))[0] for _ in range(10)]
    writes_before = store.writes
    fake.set_mig_layout(0, ["3g.40gb", "3g.40gb"])
    relayout, plan = _timed(lambda: publisher.publish(discover(fake, node)))
    assert plan.generation == 2 and store.writes == writes_before + 1, (plan, store.writes)
    return [
        {
            "name": "dra.slices.build.8xh100-7mig",
            "metric": "p50",
            "value": round(statistics.median(builds), 3),
            "unit": "ms",
            "goal": "<= 20",
        },
        {
            "name": "dra.slices.publish.first",
            "metric": "time",
            "value": round(first, 2),
            "unit": "ms",
            "goal": "<= 500",
        },
        {
            "name": "dra.slices.resync.unchanged",
            "metric": "p50",
            "value": round(statistics.median(noops), 2),
            "unit": "ms",
            "goal": "<= 200",
        },
        {
            "name": "dra.slices.publish.mig-relayout",
            "metric": "time",
            "value": round(relayout, 2),
            "unit": "ms",
            "goal": "<= 500",
        },
    ]


def run() -> list[dict[str, Any]]:
    """All DRA benchmark rows; creates and removes its own Node, Namespace, claims and slices."""
    from kubernetes import client

    with _api_client() as api:
        core = client.CoreV1Api(api)
        node = f"bench-dra-{uuid.uuid4().hex[:6]}"
        namespace = f"bench-dra-{uuid.uuid4().hex[:6]}"
        core.create_node({"metadata": {"name": node}})
        core.create_namespace({"metadata": {"name": namespace}})
        workdir = Path(tempfile.mkdtemp(prefix="bdra-", dir="/tmp"))  # short: socket path limit
        try:
            # A second node for the slice rows: its pool must start empty (generation 1).
            slice_node = f"{node}-s"
            core.create_node({"metadata": {"name": slice_node}})
            return _prepare_rows(api, namespace, node, workdir) + _slice_rows(api, slice_node)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
            rapi = client.ResourceV1Api(api)
            for n in (node, f"{node}-s"):
                with contextlib.suppress(Exception):
                    rapi.delete_collection_resource_slice(field_selector=f"spec.nodeName={n}")
                with contextlib.suppress(Exception):
                    core.delete_node(n)
            with contextlib.suppress(Exception):
                core.delete_namespace(namespace)


if __name__ == "__main__":
    rows = run()
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        print(f"{r['name']:<{width}}  {r['metric']:>5}  {r['value']:>10} {r['unit']:<3} (goal {r['goal']})")
    print(json.dumps(rows))
