"""DRA end to end through Kubernetes' own scheduler (the ``full`` member of ``full_fleet``).

The bundled driver runs for a simulated node (fake NVML, real ResourceSlices); Pods ask for
GPUs with ResourceClaimTemplates. The resourceclaim controller turns each template into a
claim, kube-scheduler allocates it from the driver's slices and binds the Pod, kwok runs the
Pod. The test then plays only the kubelet's part that kwok does not: NodePrepareResources over
the plugin's gRPC socket with the allocated claim, as the kubelet calls it.
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

from blueprintd.devfleet.binaries import Binaries
from blueprintd.devfleet.fleet import ClusterHandle
from blueprintd.devfleet.testing import temp_namespace, unique_name, wait_for
from blueprintd.dra.cdi import no_mig_caps
from blueprintd.dra.executor import RecordingExecutor
from blueprintd.dra.plugin import DraPlugin, PluginOptions
from blueprintd.dra.proto import dra_v1_pb2
from blueprintd.dra.rpc import Client
from blueprintd.dra.slices import TIME_SLICING_LABEL, bus_id_pcie_root
from blueprintd.facts.nvml import FakeNvml

pytestmark = pytest.mark.fleet

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "blueprintd-dra-driver"


@pytest.fixture(scope="module")
def api(full_member: ClusterHandle) -> Iterator[Any]:
    c = full_member.api_client()
    try:
        yield c
    finally:
        c.close()


@pytest.fixture(scope="module")
def device_classes(kube_binaries: Binaries, api: Any) -> list[str]:
    """The chart's DeviceClasses and the blueprint's time-sliced class, as installed on a cluster."""
    rendered = subprocess.run(
        [str(kube_binaries.helm), "template", "t", str(CHART), "--show-only", "templates/deviceclasses.yaml"],
        check=True, capture_output=True, text=True,
    ).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    blueprint = yaml.safe_load((REPO / "blueprints" / "gpu-platform" / "blueprint.yaml").read_text())
    sharing = next(a for a in blueprint["spec"]["addons"] if a["name"] == "gpu-sharing")
    docs += sharing["manifests"]
    for doc in docs:
        with contextlib.suppress(ApiException):
            client.ResourceV1Api(api).create_device_class(doc)
    return [d["metadata"]["name"] for d in docs]


@pytest.fixture
def ns(full_member: ClusterHandle) -> Iterator[str]:
    with temp_namespace(full_member, "dra") as name:
        yield name


@contextlib.contextmanager
def plugin_for(api: Any, node: str, fake: FakeNvml) -> Iterator[DraPlugin]:
    """``blueprintd dra-plugin`` for ``node``: publishes its slices, serves the kubelet gRPC API."""
    work = Path(tempfile.mkdtemp(prefix="dra-", dir="/tmp"))  # short: unix socket path limit
    options = PluginOptions(node_name=node, plugin_root=work / "kubelet", cdi_root=work / "cdi", resync_interval_s=0)
    plugin = DraPlugin.from_api_client(
        options, api, nvml=fake, executor=RecordingExecutor(), pcie_root=bus_id_pcie_root, mig_caps=no_mig_caps
    )
    plugin.start(background_resync=False)
    try:
        yield plugin
    finally:
        plugin.stop()
        for s in client.ResourceV1Api(api).list_resource_slice(field_selector=f"spec.nodeName={node}").items:
            with contextlib.suppress(ApiException):
                client.ResourceV1Api(api).delete_resource_slice(s.metadata.name)
        shutil.rmtree(work, ignore_errors=True)


def claim_template(api: Any, ns: str, device_class: str, count: int = 1) -> str:
    name = unique_name("tpl")
    body = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaimTemplate",
        "metadata": {"name": name},
        "spec": {
            "spec": {
                "devices": {
                    "requests": [
                        {"name": "gpus", "exactly": {"deviceClassName": device_class, "allocationMode": "ExactCount",
                                                     "count": count}}
                    ]
                }
            }
        },
    }
    client.ResourceV1Api(api).create_namespaced_resource_claim_template(ns, body)
    return name


def gpu_pod(api: Any, ns: str, template: str, node: str) -> str:
    name = unique_name("gpu-pod")
    body = {
        "metadata": {"name": name},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": node},
            "containers": [
                {"name": "cuda", "image": "registry.invalid/cuda:13", "resources": {"claims": [{"name": "gpu"}]}}
            ],
            "resourceClaims": [{"name": "gpu", "resourceClaimTemplateName": template}],
        },
    }
    client.CoreV1Api(api).create_namespaced_pod(ns, body)
    return name


def _claim_of(api: Any, ns: str, pod: str) -> dict[str, Any] | None:
    p = client.CoreV1Api(api).read_namespaced_pod(pod, ns)
    statuses = p.status.resource_claim_statuses or []
    if not statuses or not statuses[0].resource_claim_name:
        return None
    resp = client.ResourceV1Api(api).read_namespaced_resource_claim(
        statuses[0].resource_claim_name, ns, _preload_content=False
    )
    claim: dict[str, Any] = json.loads(resp.data)
    return claim


def scheduled_claim(api: Any, ns: str, pod: str) -> dict[str, Any]:
    """Wait until the scheduler allocated the Pod's claim and bound the Pod; return the claim."""

    def bound() -> dict[str, Any] | None:
        claim = _claim_of(api, ns, pod)
        node = client.CoreV1Api(api).read_namespaced_pod(pod, ns).spec.node_name
        if claim and node and (claim.get("status") or {}).get("allocation"):
            return claim
        return None

    return wait_for(bound, timeout=90, what=f"claim of {pod} allocated and the Pod bound")


def prepare(plugin: DraPlugin, claim: dict[str, Any]) -> Any:
    """NodePrepareResources for one claim, as the kubelet sends it."""
    import grpc

    meta = claim["metadata"]
    with grpc.insecure_channel(f"unix://{plugin.paths.dra_socket}") as channel:
        stub = Client(channel, dra_v1_pb2, "DRAPlugin")
        req = dra_v1_pb2.NodePrepareResourcesRequest(
            claims=[dra_v1_pb2.Claim(namespace=meta["namespace"], name=meta["name"], uid=meta["uid"])]
        )
        return stub.NodePrepareResources(req, timeout=30).claims[meta["uid"]]


def test_gpu_claim_from_template_is_allocated_by_the_scheduler_and_prepared(
    full_member: ClusterHandle, api: Any, ns: str, device_classes: list[str]
) -> None:
    node = "full-1-h100-0"
    with plugin_for(api, node, FakeNvml.from_machine("dgx-h100")) as plugin:
        pod = gpu_pod(api, ns, claim_template(api, ns, "gpu.nvidia.com"), node)
        claim = scheduled_claim(api, ns, pod)
        (result,) = claim["status"]["allocation"]["devices"]["results"]
        assert (result["driver"], result["pool"], result["request"]) == ("gpu.nvidia.com", node, "gpus")
        assert result["device"].startswith("gpu-")
        assert claim["metadata"]["annotations"]["resource.kubernetes.io/pod-claim-name"] == "gpu"
        assert [r["name"] for r in claim["status"]["reservedFor"]] == [pod]
        prepared = prepare(plugin, claim)
        assert prepared.error == ""
        (device,) = prepared.devices
        assert device.device_name == result["device"] and device.pool_name == node
        assert device.cdi_device_ids[0] == f"k8s.gpu.nvidia.com/device={result['device']}"
        wait_for(
            lambda: client.CoreV1Api(api).read_namespaced_pod(pod, ns).status.phase == "Running",
            timeout=60, what="kwok runs the Pod",
        )


def test_mig_claim_is_allocated_a_whole_mig_device(
    full_member: ClusterHandle, api: Any, ns: str, device_classes: list[str]
) -> None:
    node = "full-1-h100-mig-0"
    with plugin_for(api, node, FakeNvml.from_machine("dgx-h100-mig")) as plugin:
        pod = gpu_pod(api, ns, claim_template(api, ns, "mig.nvidia.com"), node)
        claim = scheduled_claim(api, ns, pod)
        (result,) = claim["status"]["allocation"]["devices"]["results"]
        assert result["device"].startswith("gpu-") and "-mig-1g10gb-" in result["device"]
        assert "shareID" not in result, "a MIG device is never shared"
        prepared = prepare(plugin, claim)
        assert prepared.error == ""
        assert prepared.devices[0].cdi_device_ids[0] == f"k8s.gpu.nvidia.com/device={result['device']}"


def _pending_reason(api: Any, ns: str, pod: str) -> tuple[str, str] | None:
    p = client.CoreV1Api(api).read_namespaced_pod(pod, ns)
    cond = next((c for c in p.status.conditions or [] if c.type == "PodScheduled"), None)
    if cond is None or cond.status != "False" or p.spec.node_name:
        return None
    return cond.reason, cond.message


def test_nine_gpus_on_an_eight_gpu_node_stay_pending_with_the_schedulers_reason(
    full_member: ClusterHandle, api: Any, ns: str, device_classes: list[str]
) -> None:
    node = "full-1-h100-0"
    with plugin_for(api, node, FakeNvml.from_machine("dgx-h100")):
        pod = gpu_pod(api, ns, claim_template(api, ns, "gpu.nvidia.com", count=9), node)
        reason, message = wait_for(lambda: _pending_reason(api, ns, pod), timeout=90, what="scheduling attempt")
        assert reason == "Unschedulable"
        assert "cannot allocate all claims" in message, message
        claim = _claim_of(api, ns, pod)
        assert claim is not None and not (claim.get("status") or {}).get("allocation")


def test_time_sliced_l4_takes_replicas_claims_and_not_one_more(
    full_member: ClusterHandle, api: Any, ns: str, device_classes: list[str]
) -> None:
    """The time-slicing overlay's label makes the single L4 shareable by 4 claims: the real
    scheduler places 4 Pods on it (one device, 4 shares) and leaves the fifth Pending."""
    node, replicas = "full-1-l4-0", 4
    core = client.CoreV1Api(api)
    core.patch_node(node, {"metadata": {"labels": {TIME_SLICING_LABEL: str(replicas)}}})
    one_l4 = FakeNvml.from_dict({"gpus": [{"product": "l4", "count": 1}]}, name="one-l4")
    try:
        with plugin_for(api, node, one_l4) as plugin:
            (slice_,) = client.ResourceV1Api(api).list_resource_slice(field_selector=f"spec.nodeName={node}").items
            device = slice_.spec.devices[0]
            assert device.allow_multiple_allocations is True
            assert device.capacity["timeSlices"].value == str(replicas)
            template = claim_template(api, ns, "time-sliced.gpu.nvidia.com")
            pods = [gpu_pod(api, ns, template, node) for _ in range(replicas)]
            claims = [scheduled_claim(api, ns, p) for p in pods]
            results = [c["status"]["allocation"]["devices"]["results"][0] for c in claims]
            assert {r["device"] for r in results} == {"gpu-0"}, "all on the one L4"
            assert len({r["shareID"] for r in results}) == replicas, "each claim holds its own share"
            assert all(r["consumedCapacity"]["timeSlices"] == "1" for r in results)
            # The kubelet prepares each share; the driver answers with the allocation's shareID.
            for claim, result in zip(claims[:2], results[:2], strict=True):
                prepared = prepare(plugin, claim)
                assert prepared.error == ""
                assert [(d.device_name, d.share_id) for d in prepared.devices] == [("gpu-0", result["shareID"])]
            extra = gpu_pod(api, ns, template, node)
            reason, message = wait_for(lambda: _pending_reason(api, ns, extra), timeout=90, what="5th Pod")
            assert reason == "Unschedulable" and "cannot allocate all claims" in message, message
            # A share freed is a share the scheduler can hand out again.
            core.delete_namespaced_pod(pods[0], ns)
            scheduled_claim(api, ns, extra)
    finally:
        core.patch_node(node, {"metadata": {"labels": {TIME_SLICING_LABEL: None}}})
