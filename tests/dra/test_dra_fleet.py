"""The DRA driver against a real kube-apiserver (the shared ``fleet``, member-1).

The test plays both the scheduler (it writes a claim's ``status.allocation`` through the
status subresource, as kube-scheduler does) and the kubelet (real gRPC over the plugin's unix
sockets). Everything else is the production code path: the kubernetes client, field
selectors, the API server's ResourceSlice/ResourceClaim/DeviceClass validation (CEL included).
Only NVML (FakeNvml machines) and the sharing executor (RecordingExecutor) are simulated.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from blueprintd.devfleet.fleet import ClusterHandle
from blueprintd.devfleet.testing import unique_name
from blueprintd.dra.cdi import no_mig_caps
from blueprintd.dra.executor import RecordingExecutor
from blueprintd.dra.plugin import DraPlugin, PluginOptions
from blueprintd.dra.proto import dra_v1_pb2, dra_v1beta1_pb2
from blueprintd.dra.publisher import KubeSliceStore
from blueprintd.dra.rpc import Client
from blueprintd.dra.slices import bus_id_pcie_root
from blueprintd.facts.nvml import FakeNvml

pytestmark = pytest.mark.fleet

DRIVER = "gpu.nvidia.com"
V = "resource.nvidia.com/v1beta1"
CHART = Path(__file__).resolve().parents[2] / "charts" / "blueprintd-dra-driver"


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture
def api(member: ClusterHandle) -> Iterator[Any]:
    api_client = member.api_client()
    try:
        yield api_client
    finally:
        api_client.close()


def _slices(api: Any, node: str) -> list[dict[str, Any]]:
    resp = client.ResourceV1Api(api).list_resource_slice(
        field_selector=f"spec.nodeName={node},spec.driver={DRIVER}", _preload_content=False
    )
    items: list[dict[str, Any]] = json.loads(resp.data)["items"]
    return sorted(items, key=lambda s: s["metadata"]["name"])


@pytest.fixture
def node(api: Any) -> Iterator[str]:
    """A Node of its own per test (slices are per node), deleted with its slices afterwards."""
    name = unique_name("dra-node")
    core = client.CoreV1Api(api)
    core.create_node({"metadata": {"name": name, "labels": {"nvidia.com/gpu.present": "true"}}})
    try:
        yield name
    finally:
        for s in _slices(api, name):  # no garbage collector in the test bed
            with contextlib.suppress(ApiException):
                client.ResourceV1Api(api).delete_resource_slice(s["metadata"]["name"])
        with contextlib.suppress(ApiException):
            core.delete_node(name)


@pytest.fixture
def workdir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="dra-", dir="/tmp"))  # short: unix socket path limit
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def make_plugin(
    api: Any, node: str, workdir: Path, fake: FakeNvml, executor: RecordingExecutor | None = None
) -> DraPlugin:
    options = PluginOptions(
        node_name=node, plugin_root=workdir / "kubelet", cdi_root=workdir / "cdi", resync_interval_s=0
    )
    return DraPlugin.from_api_client(
        options,
        api,
        nvml=fake,
        executor=executor or RecordingExecutor(),
        pcie_root=bus_id_pcie_root,
        mig_caps=no_mig_caps,
    )


@pytest.fixture(scope="module")
def device_classes(kube_binaries: Any, member: ClusterHandle) -> list[str]:
    """The chart's DeviceClasses, rendered by helm and created in member-1 (CEL is compiled there)."""
    out = subprocess.run(
        [str(kube_binaries.helm), "template", "t", str(CHART), "--show-only", "templates/deviceclasses.yaml"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    api_client = member.api_client()
    names = []
    try:
        for doc in yaml.safe_load_all(out):
            if not doc:
                continue
            names.append(doc["metadata"]["name"])
            try:
                client.ResourceV1Api(api_client).create_device_class(doc)
            except ApiException as exc:
                if exc.status != 409:
                    raise
    finally:
        api_client.close()
    return names


def create_allocated_claim(
    api: Any,
    namespace: str,
    node: str,
    devices: list[str],
    *,
    device_class: str = "gpu.nvidia.com",
    parameters: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Create a ResourceClaim, then write its allocation to status like the scheduler does."""
    rapi = client.ResourceV1Api(api)
    spec: dict[str, Any] = {
        "devices": {
            "requests": [
                {
                    "name": "gpus",
                    "exactly": {
                        "deviceClassName": device_class,
                        "allocationMode": "ExactCount",
                        "count": len(devices),
                    },
                }
            ]
        }
    }
    config = []
    if parameters is not None:
        opaque = {"driver": DRIVER, "parameters": parameters}
        spec["devices"]["config"] = [{"requests": ["gpus"], "opaque": opaque}]
        config = [{"source": "FromClaim", "requests": ["gpus"], "opaque": opaque}]
    name = unique_name("claim")
    body = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": name},
        "spec": spec,
    }
    created = json.loads(rapi.create_namespaced_resource_claim(namespace, body, _preload_content=False).data)
    allocation = {
        "devices": {
            "results": [{"request": "gpus", "driver": DRIVER, "pool": node, "device": d} for d in devices],
            "config": config,
        },
        "nodeSelector": {
            "nodeSelectorTerms": [
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}
            ]
        },
    }
    patched = rapi.patch_namespaced_resource_claim_status(
        name, namespace, {"status": {"allocation": allocation}}, _preload_content=False
    )
    claim: dict[str, Any] = json.loads(patched.data)
    assert claim["metadata"]["uid"] == created["metadata"]["uid"]
    assert claim["status"]["allocation"]["devices"]["results"][0]["device"] == devices[0]
    return claim


def _grpc(plugin: DraPlugin, version: str = "v1") -> tuple[Any, Any, Any]:
    import grpc

    pb2 = dra_v1_pb2 if version == "v1" else dra_v1beta1_pb2
    channel = grpc.insecure_channel(f"unix://{plugin.paths.dra_socket}")
    return channel, pb2, Client(channel, pb2, "DRAPlugin")


def _claim_msg(pb2: Any, claim: dict[str, Any]) -> Any:
    m = claim["metadata"]
    return pb2.Claim(namespace=m["namespace"], name=m["name"], uid=m["uid"])


# --- ResourceSlices -----------------------------------------------------------------------


def test_slices_are_accepted_and_unchanged_resync_makes_no_write(api: Any, node: str, workdir: Path) -> None:
    plugin = make_plugin(api, node, workdir, FakeNvml.from_machine("dgx-h100-mig"))
    plan = plugin.resync()
    assert plan.generation == 1 and len(plan.create) == 1
    (s,) = _slices(api, node)
    assert s["spec"]["pool"] == {"name": node, "generation": 1, "resourceSliceCount": 1}
    assert len(s["spec"]["devices"]) == 56
    assert s["metadata"]["ownerReferences"][0]["kind"] == "Node"
    assert s["metadata"]["ownerReferences"][0]["name"] == node
    dev = s["spec"]["devices"][0]
    assert dev["name"] == "gpu-0-mig-1g10gb-19-0"
    assert dev["attributes"]["type"] == {"string": "mig"}
    assert dev["attributes"]["cudaComputeCapability"] == {"version": "9.0.0"}

    store = plugin.publisher.store
    assert isinstance(store, KubeSliceStore)
    writes = store.writes
    assert plugin.resync().empty
    assert store.writes == writes, "nothing changed: no write call"
    assert _slices(api, node)[0]["metadata"]["resourceVersion"] == s["metadata"]["resourceVersion"]


def test_mig_relayout_publishes_a_new_generation(api: Any, node: str, workdir: Path) -> None:
    fake = FakeNvml.from_machine("dgx-h100-mig")
    plugin = make_plugin(api, node, workdir, fake)
    plugin.resync()
    fake.set_mig_mode(0, False)  # GPU 0 leaves MIG mode: 7 MIG devices -> 1 full GPU
    assert plugin.resync().generation == 2
    (s,) = _slices(api, node)
    names = [d["name"] for d in s["spec"]["devices"]]
    assert s["spec"]["pool"]["generation"] == 2
    assert names[0] == "gpu-0" and len(names) == 50
    fake.set_mig_layout(0, ["3g.40gb", "3g.40gb"])
    assert plugin.resync().generation == 3
    names = [d["name"] for d in _slices(api, node)[0]["spec"]["devices"]]
    assert names[:2] == ["gpu-0-mig-3g40gb-9-0", "gpu-0-mig-3g40gb-9-4"]
    device_spec = json.loads((workdir / "cdi" / "k8s.gpu.nvidia.com-device.json").read_text())
    assert "gpu-0-mig-3g40gb-9-4" in {d["name"] for d in device_spec["devices"]}


def test_more_than_128_devices_split_and_stale_slices_deleted(api: Any, node: str, workdir: Path) -> None:
    layout = ["1g.10gb"] * 7
    fake = FakeNvml.from_dict(
        {"gpus": [{"product": "h100-80gb", "count": 20, "migLayout": layout}]}, name="big"
    )
    plugin = make_plugin(api, node, workdir, fake)
    plugin.resync()
    slices = _slices(api, node)
    assert [len(s["spec"]["devices"]) for s in slices] == [128, 12]
    assert all(s["spec"]["pool"]["resourceSliceCount"] == 2 for s in slices)
    fake.set_mig_mode(list(range(8, 20)), False)  # 8*7 MIG + 12 full GPUs = 68 devices
    plan = plugin.resync()
    assert plan.generation == 2 and len(plan.delete) == 1
    (s,) = _slices(api, node)
    assert len(s["spec"]["devices"]) == 68 and s["spec"]["pool"]["resourceSliceCount"] == 1


def test_chart_device_classes_are_valid(device_classes: list[str], api: Any) -> None:
    assert device_classes == ["gpu.nvidia.com", "mig.nvidia.com"]
    dc = json.loads(
        client.ResourceV1Api(api).read_device_class("mig.nvidia.com", _preload_content=False).data
    )
    assert dc["spec"]["selectors"][0]["cel"]["expression"] == (
        "device.driver == 'gpu.nvidia.com' && device.attributes['gpu.nvidia.com'].type == 'mig'"
    )


# --- NodePrepareResources / NodeUnprepareResources -------------------------------------------


@pytest.fixture
def running(api: Any, node: str, workdir: Path) -> Iterator[tuple[DraPlugin, RecordingExecutor]]:
    executor = RecordingExecutor()
    plugin = make_plugin(api, node, workdir, FakeNvml.from_machine("dgx-h100"), executor)
    plugin.start(background_resync=False)
    try:
        yield plugin, executor
    finally:
        plugin.stop()


def test_prepare_unprepare_survives_restart(
    api: Any,
    node: str,
    workdir: Path,
    member_namespace: str,
    device_classes: list[str],
    running: tuple[DraPlugin, RecordingExecutor],
) -> None:
    plugin, executor = running
    ts = {
        "apiVersion": V,
        "kind": "GpuConfig",
        "sharing": {"strategy": "TimeSlicing", "timeSlicingConfig": {"interval": "Long"}},
    }
    claim = create_allocated_claim(api, member_namespace, node, ["gpu-0", "gpu-1"], parameters=ts)
    uid = claim["metadata"]["uid"]
    channel, pb2, stub = _grpc(plugin)
    with channel:
        req = pb2.NodePrepareResourcesRequest(claims=[_claim_msg(pb2, claim)])
        resp = stub.NodePrepareResources(req, timeout=30)
        result = resp.claims[uid]
        assert result.error == ""
        assert [(d.device_name, d.pool_name, list(d.request_names)) for d in result.devices] == [
            ("gpu-0", node, ["gpus"]),
            ("gpu-1", node, ["gpus"]),
        ]
        assert list(result.devices[1].cdi_device_ids) == [
            "k8s.gpu.nvidia.com/device=gpu-1",
            f"k8s.gpu.nvidia.com/claim={uid}-gpu-1",
        ]
        spec = json.loads((workdir / "cdi" / f"k8s.gpu.nvidia.com-claim_{uid}.json").read_text())
        assert spec["cdiVersion"] == "0.6.0" and spec["kind"] == "k8s.gpu.nvidia.com/claim"
        assert [d["name"] for d in spec["devices"]] == [f"{uid}-gpu-0", f"{uid}-gpu-1"]
        inv = plugin.inventory
        assert inv is not None
        uuids = (inv.gpus[0].uuid, inv.gpus[1].uuid)
        assert spec["containerEdits"]["env"] == [f"NVIDIA_VISIBLE_DEVICES={uuids[0]},{uuids[1]}"]
        assert executor.calls == [("set_time_slice", (uuids, "Long"))]
        again = stub.NodePrepareResources(req, timeout=30)
        assert again.claims[uid] == result, "repeated prepare is idempotent"
        assert len(executor.calls) == 1

    # The plugin restarts; meanwhile the pod ended and the claim was deleted from the API.
    plugin.stop()
    client.ResourceV1Api(api).delete_namespaced_resource_claim(claim["metadata"]["name"], member_namespace)
    executor2 = RecordingExecutor()
    restarted = make_plugin(api, node, workdir, FakeNvml.from_machine("dgx-h100"), executor2)
    restarted.start(background_resync=False)
    try:
        channel, pb2, stub = _grpc(restarted)
        with channel:
            un = stub.NodeUnprepareResources(
                pb2.NodeUnprepareResourcesRequest(claims=[_claim_msg(pb2, claim)]), timeout=30
            )
        assert un.claims[uid].error == ""
        assert executor2.calls == [("set_time_slice", (uuids, "Default"))]
        assert not (workdir / "cdi" / f"k8s.gpu.nvidia.com-claim_{uid}.json").exists()
        assert restarted.preparer.prepared_claims == {}
    finally:
        restarted.stop()
    assert not restarted.paths.dra_socket.exists() and not restarted.paths.registration_socket.exists()


def test_v1beta1_client_mig_claim_and_invalid_config(
    api: Any,
    node: str,
    workdir: Path,
    member_namespace: str,
    device_classes: list[str],
) -> None:
    fake = FakeNvml.from_machine("dgx-h100-mig")
    executor = RecordingExecutor()
    plugin = make_plugin(api, node, workdir, fake, executor)
    plugin.start(background_resync=False)
    try:
        migs = [f"gpu-{g}-mig-1g10gb-19-{p}" for g in range(2) for p in range(4)]  # 8 MIG devices
        mps = {"apiVersion": V, "kind": "MigDeviceConfig", "sharing": {"strategy": "MPS"}}
        good = create_allocated_claim(
            api, member_namespace, node, migs, device_class="mig.nvidia.com", parameters=mps
        )
        bad_params = {
            "apiVersion": V,
            "kind": "GpuConfig",
            "sharing": {"strategy": "TimeSlicing", "replicas": 4},
        }
        bad = create_allocated_claim(
            api,
            member_namespace,
            node,
            ["gpu-2-mig-1g10gb-19-0"],
            device_class="mig.nvidia.com",
            parameters=bad_params,
        )
        channel, pb2, stub = _grpc(plugin, "v1beta1")
        with channel:
            resp = stub.NodePrepareResources(
                pb2.NodePrepareResourcesRequest(claims=[_claim_msg(pb2, good), _claim_msg(pb2, bad)]),
                timeout=30,
            )
            ok = resp.claims[good["metadata"]["uid"]]
            assert ok.error == ""
            assert [d.device_name for d in ok.devices] == migs
            err = resp.claims[bad["metadata"]["uid"]].error
            assert "invalid GpuConfig" in err and "unknown field 'sharing.replicas'" in err
            ((call, (daemon, _cfg)),) = executor.calls
            assert call == "start_mps" and len(daemon.device_uuids) == 8
            un = stub.NodeUnprepareResources(
                pb2.NodeUnprepareResourcesRequest(claims=[_claim_msg(pb2, good), _claim_msg(pb2, bad)]),
                timeout=30,
            )
            assert {k: v.error for k, v in un.claims.items()} == {
                good["metadata"]["uid"]: "",
                bad["metadata"]["uid"]: "",
            }
            assert executor.calls[-1] == ("stop", daemon)
    finally:
        plugin.stop()


def test_claim_recreated_with_new_uid_is_refused(
    api: Any,
    node: str,
    member_namespace: str,
    device_classes: list[str],
    running: tuple[DraPlugin, RecordingExecutor],
) -> None:
    plugin, _ = running
    claim = create_allocated_claim(api, member_namespace, node, ["gpu-3"])
    channel, pb2, stub = _grpc(plugin)
    stale = pb2.Claim(namespace=member_namespace, name=claim["metadata"]["name"], uid="0000-stale")
    with channel:
        resp = stub.NodePrepareResources(pb2.NodePrepareResourcesRequest(claims=[stale]), timeout=30)
    assert "the claim was deleted and recreated" in resp.claims["0000-stale"].error


def test_cli_serves_until_sigterm_and_removes_sockets(
    member: ClusterHandle, api: Any, node: str, workdir: Path
) -> None:
    import signal
    import sys
    import time

    import grpc

    from blueprintd.dra.proto import pluginregistration_pb2

    root = workdir / "kubelet"
    argv = [
        sys.executable,
        "-m",
        "blueprintd",
        "dra-plugin",
        "--node-name",
        node,
        "--kubeconfig",
        str(member.kubeconfig),
        "--plugin-root",
        str(root),
        "--cdi-root",
        str(workdir / "cdi"),
        "--fake-nvml",
        "dgx-h100",
        "--resync-interval",
        "1",
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    reg = root / "plugins_registry" / "gpu.nvidia.com-reg.sock"
    dra = root / "plugins" / "gpu.nvidia.com" / "dra.sock"
    try:
        deadline = time.monotonic() + 30
        while not reg.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert reg.is_socket() and dra.is_socket(), (
            proc.stdout.read() if proc.poll() is not None else "no socket"
        )
        with grpc.insecure_channel(f"unix://{reg}") as ch:
            info = Client(ch, pluginregistration_pb2, "Registration").GetInfo(
                pluginregistration_pb2.InfoRequest(), timeout=5
            )
        assert info.endpoint == str(dra)
        assert len(_slices(api, node)[0]["spec"]["devices"]) == 8
        assert (workdir / "cdi" / "k8s.gpu.nvidia.com-device.json").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert not reg.exists() and not dra.exists()
