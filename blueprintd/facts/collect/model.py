"""What a source says about one node, and how sources are ranked.

Every source parser (GFD labels, the node agent annotation, ResourceSlices, plain Node
fields) produces an ``Observation``: the subset of pool facts it knows for one node, already
normalized. Merging observations by precedence is then a small, source-agnostic step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from blueprintd.api.facts import FactSource

#: Best first. ResourceSlices are what the scheduler allocates from, so they are the ground
#: truth of what a pod can get; the node agent reads NVML directly; GFD labels are NVML too
#: but can be stale (GFD relabels on its own interval, and its MIG-single labels describe
#: MIG devices, not GPUs); plain Node fields (capacity, operator labels) are last because
#: capacity counts time-slicing replicas and MIG devices.
PRECEDENCE: tuple[FactSource, ...] = (
    FactSource.RESOURCE_SLICE,
    FactSource.NODE_AGENT,
    FactSource.GFD,
    FactSource.NODE,
)

#: The per-node facts sources can report; the names are ``NodePool`` field names.
FACT_FIELDS: tuple[str, ...] = (
    "gpu_product",
    "gpu_count",
    "gpu_memory_mib",
    "gpu_family",
    "compute_capability",
    "pci_device_id",
    "mig_capable",
    "mig_enabled",
    "mig_config",
    "mig_strategy",
    "sharing_strategy",
    "driver_version",
    "cuda_driver_version",
    "workload_config",
    "sandbox",
)


@dataclass
class Observation:
    """One source's view of one node: ``facts`` maps FACT_FIELDS names to values."""

    node: str
    source: FactSource
    facts: dict[str, Any] = field(default_factory=dict)

    def put(self, name: str, value: Any) -> None:
        """Record a fact unless the source did not really know it (None or empty string)."""
        assert name in FACT_FIELDS, name
        if value is None or value == "":
            return
        self.facts[name] = value
