"""Simulated GPU node pools for the local fleet.

The fleet has no kubelets, so nodes are plain Node objects carrying what a real GPU node
carries once GPU Feature Discovery ran: the ``nvidia.com/*`` labels (names and value formats
from the upstream GFD documentation) and ``nvidia.com/gpu`` capacity. Overlays and fact
collectors then see the same input they would see on a real cluster.

A *profile* is one kind of node (``h100``, ``l4``, ``cpu`` …); a *fleet file* says which
member cluster gets which profiles, how many nodes of each and which cluster labels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError

from blueprintd.api.base import ApiModel
from blueprintd.errors import DevFleetError
from blueprintd.facts.catalog import GpuProduct, by_key

DRIVER_VERSION = "580.95.05"
CUDA_RUNTIME = ("13", "0")


@dataclass(frozen=True)
class NodeProfile:
    """One kind of simulated node."""

    name: str
    description: str
    product: str | None = None  # catalog key; None for CPU-only nodes
    gpus: int = 0
    mig_config: str | None = None  # current nvidia.com/mig.config, when MIG is on
    workload: str = "container"  # nvidia.com/gpu.workload.config
    extra_labels: dict[str, str] = field(default_factory=dict)
    cpu: str = "64"
    memory: str = "512Gi"

    def gpu_product(self) -> GpuProduct | None:
        return by_key(self.product) if self.product else None


PROFILES: dict[str, NodeProfile] = {
    p.name: p
    for p in (
        NodeProfile("h100", "8x NVIDIA H100 80GB HBM3 (MIG-capable), MIG off", "h100-80gb", 8, cpu="224", memory="2Ti"),
        NodeProfile(
            "h100-mig",
            "8x NVIDIA H100 80GB HBM3 with MIG all-1g.10gb applied",
            "h100-80gb",
            8,
            mig_config="all-1g.10gb",
            cpu="224",
            memory="2Ti",
        ),
        NodeProfile("a100", "8x NVIDIA A100-SXM4-80GB (MIG-capable)", "a100-80gb", 8, cpu="256", memory="2Ti"),
        NodeProfile("l4", "4x NVIDIA L4 (no MIG: time-slicing)", "l4", 4, cpu="48", memory="192Gi"),
        NodeProfile("t4", "1x Tesla T4 (no MIG)", "t4", 1, cpu="16", memory="64Gi"),
        NodeProfile("cpu", "CPU-only worker", None, 0, cpu="32", memory="128Gi"),
        NodeProfile(
            "sandbox",
            "8x H100 reserved for Kata/VFIO passthrough (confidential / untrusted workloads)",
            "h100-80gb",
            8,
            workload="vm-passthrough",
            extra_labels={"katacontainers.io/kata-runtime": "true"},
            cpu="224",
            memory="2Ti",
        ),
    )
}


def gfd_labels(profile: NodeProfile) -> dict[str, str]:
    """The labels GPU Feature Discovery (and the GPU Operator) would put on such a node."""
    labels = {"node-role.kubernetes.io/worker": "", "blueprintd.io/simulated-profile": profile.name}
    labels.update(profile.extra_labels)
    product = profile.gpu_product()
    if product is None:
        return labels
    gfd_product = product.gfd_product
    mig_on = profile.mig_config not in (None, "all-disabled")
    if mig_on and profile.mig_config and profile.mig_config.startswith("all-"):
        gfd_product = f"{gfd_product}-MIG-{profile.mig_config.removeprefix('all-')}"
    major, minor = product.compute_capability.split(".")
    labels.update(
        {
            "nvidia.com/gpu.present": "true",
            "nvidia.com/gpu.product": gfd_product,
            "nvidia.com/gpu.memory": str(product.memory_mib),
            "nvidia.com/gpu.count": str(gpu_capacity(profile) or profile.gpus),
            "nvidia.com/gpu.family": product.architecture,
            "nvidia.com/gpu.compute.major": major,
            "nvidia.com/gpu.compute.minor": minor,
            # GFD: cuda.driver.* is the NVIDIA driver version, cuda.runtime.* the CUDA version.
            "nvidia.com/cuda.driver.major": DRIVER_VERSION.split(".")[0],
            "nvidia.com/cuda.driver.minor": DRIVER_VERSION.split(".")[1],
            "nvidia.com/cuda.driver.rev": DRIVER_VERSION.split(".")[2],
            "nvidia.com/cuda.runtime.major": CUDA_RUNTIME[0],
            "nvidia.com/cuda.runtime.minor": CUDA_RUNTIME[1],
            "nvidia.com/mig.capable": "true" if product.mig_capable else "false",
            "nvidia.com/gpu.workload.config": profile.workload,
            "nvidia.com/gpu.sharing-strategy": "none",
        }
    )
    if product.mig_capable:
        labels["nvidia.com/mig.strategy"] = "single"
        labels["nvidia.com/mig.config"] = profile.mig_config or "all-disabled"
        if mig_on:
            labels["nvidia.com/mig.config.state"] = "success"
    return labels


def gpu_capacity(profile: NodeProfile) -> int:
    """``nvidia.com/gpu`` capacity: GPUs, or MIG slices with strategy single."""
    product = profile.gpu_product()
    if product is None or profile.workload != "container":
        return 0
    if profile.mig_config and profile.mig_config.startswith("all-") and profile.mig_config != "all-disabled":
        wanted = profile.mig_config.removeprefix("all-")
        per_gpu = next((p.max_count for p in product.mig_profiles if p.name == wanted), 1)
        return per_gpu * profile.gpus
    return profile.gpus


def node_object(name: str, profile: NodeProfile, extra_labels: dict[str, str] | None = None) -> dict[str, Any]:
    """A Node manifest (metadata + status) for one simulated node."""
    labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}
    labels.update(gfd_labels(profile))
    labels.update(extra_labels or {})
    capacity = {"cpu": profile.cpu, "memory": profile.memory, "pods": "110", "ephemeral-storage": "1Ti"}
    gpus = gpu_capacity(profile)
    if gpus:
        capacity["nvidia.com/gpu"] = str(gpus)
    if profile.workload == "vm-passthrough" and profile.gpus:
        capacity["nvidia.com/pgpu"] = str(profile.gpus)
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "status": {
            "capacity": capacity,
            "allocatable": dict(capacity),
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "message": "simulated node (blueprintd devfleet)",
                },
            ],
            "nodeInfo": {
                "kubeletVersion": "v1.37.2",
                "containerRuntimeVersion": "containerd://2.1.0",
                "osImage": "Simulated GPU node",
                "operatingSystem": "linux",
                "architecture": "amd64",
                "kernelVersion": "6.8.0",
                "kubeProxyVersion": "",
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
            },
        },
    }


# --- fleet files -----------------------------------------------------------------------


class NodeGroupSpec(ApiModel):
    profile: str = Field(description=f"one of: {', '.join(sorted(PROFILES))}")
    count: int = Field(default=1, ge=1, le=500)
    labels: dict[str, str] = Field(default_factory=dict, description="extra node labels")


ControlPlane = Literal["full", "api-only"]


class MemberSpec(ApiModel):
    name: str | None = Field(default=None, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=40)
    labels: dict[str, str] = Field(default_factory=dict, description="cluster labels blueprints select on")
    nodes: list[NodeGroupSpec] = Field(default_factory=list)
    control_plane: ControlPlane = Field(
        default="full",
        description="full: API server + kube-controller-manager + kube-scheduler + kwok playing the "
        "kubelets; api-only: the API server alone (the large-fleet benchmark shape)",
    )


class FleetFile(ApiModel):
    """``--fleet FILE``: which member gets which node profiles and labels."""

    members: list[MemberSpec] = Field(min_length=1)


def load_fleet_file(path: Path) -> FleetFile:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise DevFleetError(f"{path}: cannot read fleet file: {exc}") from exc
    try:
        fleet = FleetFile.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors())
        raise DevFleetError(f"{path}: invalid fleet file: {problems}") from exc
    for i, member in enumerate(fleet.members):
        for j, group in enumerate(member.nodes):
            if group.profile not in PROFILES:
                raise DevFleetError(
                    f"{path}: members[{i}].nodes[{j}].profile: unknown profile {group.profile!r} "
                    f"(allowed: {', '.join(sorted(PROFILES))})"
                )
    return fleet


def uniform_fleet(
    members: int, profiles: list[str], nodes_per_profile: int = 2, control_plane: ControlPlane = "full"
) -> FleetFile:
    """``--members N --nodes P ...``: every member gets the same node profiles."""
    unknown = [p for p in profiles if p not in PROFILES]
    if unknown:
        raise DevFleetError(
            f"--nodes: unknown profile(s) {', '.join(unknown)} (allowed: {', '.join(sorted(PROFILES))})"
        )
    return FleetFile(
        members=[
            MemberSpec(
                nodes=[NodeGroupSpec(profile=p, count=nodes_per_profile) for p in profiles],
                control_plane=control_plane,
            )
            for _ in range(members)
        ]
    )


def node_names(cluster: str, groups: list[NodeGroupSpec]) -> list[tuple[str, NodeGroupSpec]]:
    """Stable node names: ``<cluster>-<profile>-<i>``."""
    out: list[tuple[str, NodeGroupSpec]] = []
    for group in groups:
        for i in range(group.count):
            out.append((f"{cluster}-{group.profile}-{i}", group))
    return out
