"""Real NVML on a real GPU node: discovery -> ResourceSlices and CDI device spec (read-only).

Deselected by default (``-m 'not gpu'`` in pytest's addopts); run on a GPU machine with
``pytest -m gpu tests/dra/test_dra_gpu.py``. Nothing here changes the GPU: no MIG changes,
no time-slice or MPS commands, no files outside a temp dir.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from blueprintd.dra.cdi import CdiWriter, ProcMigCaps
from blueprintd.dra.plugin import node_pcie_root
from blueprintd.dra.slices import build_slices
from blueprintd.facts.nvml import discover
from blueprintd.facts.nvml.real import load

SEMVER = re.compile(r"^\d+\.\d+\.\d+$")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


@pytest.mark.gpu
def test_real_gpus_become_valid_slices_and_cdi_specs(tmp_path: Path) -> None:
    nvml = load()
    inventory = discover(nvml, "gpu-node")
    assert inventory.gpus, f"no GPU discovered: {inventory.errors}"
    slices = build_slices(inventory, "gpu.nvidia.com", "gpu-node", pcie_root=node_pcie_root)
    devices = [d for s in slices for d in s["spec"]["devices"]]
    assert devices, "every GPU is in MIG mode without MIG devices, or has a pending MIG change"
    for d in devices:
        attrs = d["attributes"]
        assert DNS_LABEL.match(d["name"]), d["name"]
        assert attrs["type"]["string"] in ("gpu", "mig")
        assert attrs["uuid"]["string"].startswith(("GPU-", "MIG-"))
        assert attrs["productName"]["string"].startswith("NVIDIA")
        for key in ("cudaComputeCapability", "driverVersion", "cudaDriverVersion"):
            assert SEMVER.match(attrs[key]["version"]), (key, attrs[key])
        assert re.match(r"^pci[0-9a-f]{4}:[0-9a-f]{2}$", attrs["resource.kubernetes.io/pcieRoot"]["string"])
        assert int(d["capacity"]["memory"]["value"].removesuffix("Gi").removesuffix("Mi")) > 0
        assert len(attrs) + len(d["capacity"]) <= 32
    writer = CdiWriter(tmp_path)
    writer.write_device_spec(inventory, ProcMigCaps(nvml))
    for gpu in inventory.gpus:
        assert Path(f"/dev/nvidia{gpu.minor}").exists(), "CDI device node must exist on the host"
