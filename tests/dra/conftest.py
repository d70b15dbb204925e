"""Fixtures for the DRA driver tests: hand-made inventories, short socket dirs, an in-memory claim source.

Inventories mirror the shapes of the reference machines (DGX H100 with and without MIG); the
tests that exercise discovery end to end use ``blueprintd.facts.nvml.fake.FakeNvml`` instead.
"""

from __future__ import annotations

import copy
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from blueprintd.api.facts import GpuInfo, MigDeviceInfo, NodeGpuInventory
from blueprintd.dra.claims import ClaimReadError

GIB = 1 << 30
MIB = 1 << 20


def h100_inventory(gpus: int = 8, mig_per_gpu: int = 0, node: str = "node-a") -> NodeGpuInventory:
    """A DGX H100-like node; ``mig_per_gpu`` > 0 puts every GPU in MIG mode with 1g.10gb devices."""
    out = []
    for i in range(gpus):
        migs = [
            MigDeviceInfo(
                uuid=f"MIG-{i:02d}{p:02d}0000-aaaa-bbbb-cccc-dddddddddddd",
                profile="1g.10gb",
                gi_profile_id=19,
                placement_start=p,
                placement_size=1,
                memory_bytes=9856 * MIB,
                multiprocessors=16,
                copy_engines=1,
                decoders=1,
                encoders=0,
                jpeg_engines=1,
                ofa_engines=0,
            )
            for p in range(mig_per_gpu)
        ]
        out.append(
            GpuInfo(
                index=i,
                minor=i,
                uuid=f"GPU-{i:08d}-1111-2222-3333-444444444444",
                product_name="NVIDIA H100 80GB HBM3",
                brand="Nvidia",
                architecture="hopper",
                memory_bytes=80 * GIB,
                compute_capability="9.0",
                pci_bus_id=f"00000000:{0x18 + i * 0x10:02X}:00.0",
                pci_device_id="0x233010DE",
                mig_capable=True,
                mig_enabled=mig_per_gpu > 0,
                mig_devices=migs,
            )
        )
    return NodeGpuInventory(
        node_name=node, driver_version="550.54.15", cuda_driver_version="12.4", device_count=gpus, gpus=out
    )


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short temp dir: unix socket paths must stay under 108 bytes."""
    d = Path(tempfile.mkdtemp(prefix="dra-", dir="/tmp"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


class MemoryClaims:
    """ClaimSource over a dict, for tests of prepare logic that do not need the API server."""

    def __init__(self) -> None:
        self.claims: dict[tuple[str, str], dict[str, Any]] = {}
        self.reads = 0

    def add(self, claim: dict[str, Any]) -> dict[str, Any]:
        self.claims[(claim["metadata"]["namespace"], claim["metadata"]["name"])] = claim
        return claim

    def get_claim(self, namespace: str, name: str) -> dict[str, Any]:
        self.reads += 1
        try:
            return copy.deepcopy(self.claims[(namespace, name)])
        except KeyError:
            raise ClaimReadError(f"ResourceClaim {namespace}/{name} not found") from None


def allocated_claim(
    name: str,
    uid: str,
    devices: list[tuple[str, str]],
    *,
    node: str = "node-a",
    driver: str = "gpu.nvidia.com",
    namespace: str = "default",
    config: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A ResourceClaim as the scheduler leaves it: ``devices`` are (request, device) pairs."""
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": name, "namespace": namespace, "uid": uid},
        "spec": {"devices": {"requests": []}},
        "status": {
            "allocation": {
                "devices": {
                    "results": [
                        {"request": r, "driver": driver, "pool": node, "device": d} for r, d in devices
                    ],
                    "config": config or [],
                }
            }
        },
    }


@pytest.fixture
def memory_claims() -> MemoryClaims:
    return MemoryClaims()


@pytest.fixture
def make_claim() -> Callable[..., dict[str, Any]]:
    return allocated_claim


@pytest.fixture
def inventory() -> Callable[..., NodeGpuInventory]:
    return h100_inventory
