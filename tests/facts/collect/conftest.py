"""Builders for the API objects collectors read, shaped like real clusters.

GFD labels follow GPU Feature Discovery's documented semantics (``cuda.driver.*`` is the
NVIDIA driver version, ``cuda.runtime.*`` the CUDA version; with MIG strategy single the
product gets ``-MIG-<profile>`` and ``gpu.count`` counts MIG devices). ResourceSlices follow
NVIDIA's DRA driver schema. These are test inputs, not mocks: the collectors are pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from blueprintd.api.facts import NodeGpuInventory
from blueprintd.facts import catalog
from blueprintd.facts.annotation import ANNOTATION_KEY, encode_inventory
from blueprintd.facts.nvml import FakeNvml, discover

Json = dict[str, Any]


@dataclass
class Builders:
    def node(
        self,
        name: str,
        labels: dict[str, str] | None = None,
        capacity: dict[str, str] | None = None,
        annotations: dict[str, str] | None = None,
    ) -> Json:
        meta: Json = {
            "name": name,
            "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", **(labels or {})},
        }
        if annotations:
            meta["annotations"] = annotations
        cap = {"cpu": "64", "memory": "512Gi", **(capacity or {})}
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": meta,
            "status": {"capacity": cap, "allocatable": dict(cap)},
        }

    def gfd_labels(
        self,
        product_key: str,
        count: int,
        *,
        driver: str = "550.54.15",
        cuda: str = "12.4",
        mig_single: str | None = None,
        mig_config: str | None = None,
        sharing: str = "none",
        replicas: int = 1,
    ) -> dict[str, str]:
        product = catalog.by_key(product_key)
        assert product is not None
        d_major, d_minor, *rest = driver.split(".")
        c_major, c_minor = cuda.split(".")
        cc_major, cc_minor = product.compute_capability.split(".")
        labels = {
            "nvidia.com/gpu.present": "true",
            "nvidia.com/gpu.product": product.gfd_product,
            "nvidia.com/gpu.count": str(count),
            "nvidia.com/gpu.memory": str(product.memory_mib),
            "nvidia.com/gpu.family": product.architecture,
            "nvidia.com/gpu.compute.major": cc_major,
            "nvidia.com/gpu.compute.minor": cc_minor,
            "nvidia.com/cuda.driver.major": d_major,
            "nvidia.com/cuda.driver.minor": d_minor,
            "nvidia.com/cuda.driver.rev": rest[0] if rest else "",
            "nvidia.com/cuda.runtime.major": c_major,
            "nvidia.com/cuda.runtime.minor": c_minor,
            "nvidia.com/mig.capable": "true" if product.mig_capable else "false",
            "nvidia.com/gpu.sharing-strategy": sharing,
            "nvidia.com/gpu.replicas": str(replicas),
        }
        if product.mig_capable:
            labels["nvidia.com/mig.strategy"] = "single"
        if mig_single:
            per_gpu = next(p.max_count for p in product.mig_profiles if p.name == mig_single)
            labels["nvidia.com/gpu.product"] = f"{product.gfd_product}-MIG-{mig_single}"
            labels["nvidia.com/gpu.count"] = str(count * per_gpu)
            labels["nvidia.com/gpu.memory"] = "9856"
        if mig_config:
            labels["nvidia.com/mig.config"] = mig_config
            labels["nvidia.com/mig.config.state"] = "success"
        return labels

    def gfd_node(self, name: str, product_key: str, count: int, **kwargs: Any) -> Json:
        labels = self.gfd_labels(product_key, count, **kwargs)
        gpus = int(labels["nvidia.com/gpu.count"]) * int(labels["nvidia.com/gpu.replicas"])
        return self.node(name, labels, {"nvidia.com/gpu": str(gpus)})

    def inventory(self, machine: str | FakeNvml, node: str = "") -> NodeGpuInventory:
        fake = FakeNvml.from_machine(machine) if isinstance(machine, str) else machine
        return discover(fake, node, raise_on_unavailable=False)

    def agent_node(self, name: str, machine: str | FakeNvml, labels: dict[str, str] | None = None) -> Json:
        value = encode_inventory(self.inventory(machine, name))
        return self.node(name, labels, annotations={ANNOTATION_KEY: value})

    def slice(
        self,
        node: str,
        devices: list[Json],
        *,
        generation: int = 1,
        driver: str = "gpu.nvidia.com",
        name: str | None = None,
    ) -> Json:
        return {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceSlice",
            "metadata": {"name": name or f"{node}-{driver}-{generation}"},
            "spec": {
                "driver": driver,
                "nodeName": node,
                "pool": {"name": node, "generation": generation, "resourceSliceCount": 1},
                "devices": devices,
            },
        }

    def gpu_device(
        self,
        minor: int,
        *,
        product: str = "NVIDIA H100 80GB HBM3",
        arch: str = "Hopper",
        cc: str = "9.0.0",
        driver: str = "550.54.15",
        cuda: str = "12.4.0",
        memory: str = "81559Mi",
    ) -> Json:
        return {
            "name": f"gpu-{minor}",
            "attributes": {
                "type": {"string": "gpu"},
                "uuid": {"string": f"GPU-{minor:08d}-0000-0000-0000-000000000000"},
                "productName": {"string": product},
                "brand": {"string": "Nvidia"},
                "architecture": {"string": arch},
                "cudaComputeCapability": {"version": cc},
                "driverVersion": {"version": driver},
                "cudaDriverVersion": {"version": cuda},
                "pcieBusID": {"string": f"0000:{0x18 + minor:02x}:00.0"},
            },
            "capacity": {"memory": {"value": memory}},
        }

    def mig_device(self, parent: int, start: int, *, profile: str = "1g.10gb", gi_profile: int = 19) -> Json:
        return {
            "name": f"gpu-{parent}-mig-{profile.replace('.', '')}-{gi_profile}-{start}",
            "attributes": {
                "type": {"string": "mig"},
                "uuid": {"string": f"MIG-{parent:04d}{start:04d}-0000-0000-0000-000000000000"},
                "parentUUID": {"string": f"GPU-{parent:08d}-0000-0000-0000-000000000000"},
                "profile": {"string": profile},
                "productName": {"string": "NVIDIA H100 80GB HBM3"},
                "architecture": {"string": "Hopper"},
                "cudaComputeCapability": {"version": "9.0.0"},
                "driverVersion": {"version": "550.54.15"},
                "cudaDriverVersion": {"version": "12.4.0"},
                "pcieBusID": {"string": f"0000:{0x18 + parent:02x}:00.0"},
            },
            "capacity": {"multiprocessors": {"value": "16"}, "memory": {"value": "9984Mi"}},
        }


@pytest.fixture
def k8s() -> Builders:
    return Builders()
