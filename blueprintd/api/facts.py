"""Hardware facts: what a node's GPUs are, and the per-pool summary overlays read.

Two levels, because they come from different places and serve different readers:

* ``NodeGpuInventory`` is what one node reports about itself (the pynvml discovery used by
  the node agent and the bundled DRA driver). It is detailed and per device.
* ``ClusterFacts`` groups a cluster's nodes into ``NodePool`` objects (same GPU product and
  configuration) and is what overlay conditions (CEL) are evaluated against. Every pool
  field records the source it came from, because sources disagree in real clusters.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field, model_validator

from blueprintd.api.base import ApiModel


class FactSource(StrEnum):
    """Where a fact was read, best first (see ``blueprintd.facts.collect`` for precedence)."""

    RESOURCE_SLICE = "resourceSlice"
    NODE_AGENT = "nodeAgent"
    GFD = "gpuFeatureDiscovery"
    NODE = "node"  # plain Node object fields (capacity, labels we set ourselves)


class WorkloadConfig(StrEnum):
    """GPU Operator's ``nvidia.com/gpu.workload.config`` node label values."""

    CONTAINER = "container"
    VM_PASSTHROUGH = "vm-passthrough"
    VM_VGPU = "vm-vgpu"


# --- per-node, per-device discovery -----------------------------------------------------


class MigDeviceInfo(ApiModel):
    """One MIG device (a GPU instance + compute instance) that exists on a GPU."""

    uuid: str
    profile: str = Field(description="MIG profile name, e.g. 1g.10gb")
    gi_profile_id: int = Field(description="GPU instance profile id as NVML reports it")
    placement_start: int
    placement_size: int = 1
    memory_bytes: int = 0
    multiprocessors: int = 0
    copy_engines: int = 0
    decoders: int = 0
    encoders: int = 0
    jpeg_engines: int = 0
    ofa_engines: int = 0


class GpuInfo(ApiModel):
    """One physical GPU as NVML describes it."""

    index: int
    minor: int
    uuid: str
    product_name: str = Field(description="NVML name, e.g. 'NVIDIA H100 80GB HBM3'")
    brand: str = ""
    architecture: str = Field(default="", description="lowercase GFD family, e.g. hopper, ampere, ada-lovelace")
    memory_bytes: int = 0
    compute_capability: str = Field(default="", description="major.minor, e.g. 9.0")
    pci_bus_id: str = ""
    pci_device_id: str = Field(default="", description="PCI device+vendor id, e.g. 0x233010DE")
    mig_capable: bool = False
    mig_enabled: bool = False
    mig_pending: bool = Field(default=False, description="MIG mode change waits for a GPU reset")
    mig_devices: list[MigDeviceInfo] = Field(default_factory=list)


class NodeGpuInventory(ApiModel):
    """Everything discovery found on one node; ``partial`` when some GPU could not be read."""

    node_name: str = ""
    driver_version: str = ""
    cuda_driver_version: str = ""
    device_count: int = Field(
        default=0, description="GPUs NVML reported, including any that could not be read (see errors)"
    )
    gpus: list[GpuInfo] = Field(default_factory=list)
    partial: bool = False
    errors: list[str] = Field(default_factory=list)


# --- per-pool summary read by overlays --------------------------------------------------


class FactConflict(ApiModel):
    """Two sources disagree on one fact of one node (the higher-precedence one won), or, with
    ``pool`` set, one node of a pool differs from the value the pool reports."""

    node: str
    field: str
    chosen: str
    chosen_source: FactSource
    other: str
    other_source: FactSource
    pool: str = Field(
        default="",
        description="set when nodes of this pool differ: chosen is the pool's value, other the node's",
    )


class NodePool(ApiModel):
    """Nodes with the same GPU product and configuration; overlays with pool scope target these."""

    name: str = Field(description="stable pool name derived from product and configuration")
    nodes: list[str] = Field(default_factory=list)
    gpu_product: str = Field(default="", description="GFD-style product, e.g. NVIDIA-H100-80GB-HBM3; '' for CPU pools")
    gpu_count: int = Field(
        default=0,
        description="GPUs per node: the count most nodes have (the smaller on a tie); see gpuCountMin/Max",
    )
    gpu_count_min: int = Field(default=0, description="fewest GPUs on one node of the pool")
    gpu_count_max: int = Field(default=0, description="most GPUs on one node of the pool")
    gpu_total: int = Field(default=0, description="GPUs on all nodes of the pool together")
    gpu_memory_mib: int = 0
    gpu_family: str = Field(default="", description="architecture family, e.g. hopper")
    compute_capability: str = ""
    pci_device_id: str = ""
    mig_capable: bool = False
    mig_enabled: bool = False
    mig_config: str = Field(default="", description="current nvidia.com/mig.config label, if any")
    mig_strategy: str = ""
    sharing_strategy: str = ""
    driver_version: str = ""
    cuda_driver_version: str = ""
    workload_config: WorkloadConfig = WorkloadConfig.CONTAINER
    sandbox: bool = Field(default=False, description="runs Kata/VFIO passthrough workloads only")
    labels: dict[str, str] = Field(default_factory=dict, description="labels every node of the pool carries")
    sources: dict[str, FactSource] = Field(
        default_factory=dict, description="fact name (camelCase) -> where it was read"
    )

    @model_validator(mode="after")
    def _uniform_counts_by_default(self) -> NodePool:
        """A pool written by hand with only ``gpuCount`` has that count on every node."""
        if "gpu_count_min" not in self.model_fields_set:
            self.gpu_count_min = self.gpu_count
        if "gpu_count_max" not in self.model_fields_set:
            self.gpu_count_max = self.gpu_count
        if "gpu_total" not in self.model_fields_set:
            self.gpu_total = self.gpu_count * len(self.nodes)
        return self


class ClusterFacts(ApiModel):
    """A member cluster's hardware summary: the input of rendering besides the Blueprint."""

    cluster: str = ""
    cluster_labels: dict[str, str] = Field(default_factory=dict)
    kubernetes_version: str = ""
    pools: list[NodePool] = Field(default_factory=list)
    conflicts: list[FactConflict] = Field(default_factory=list)
    collected_at: datetime | None = None

    @property
    def gpu_pools(self) -> list[NodePool]:
        return [p for p in self.pools if p.gpu_count > 0]
