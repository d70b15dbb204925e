"""Discovery (fake NVML machines) -> ResourceSlices, and MIG re-layout -> new generation (pure)."""

from __future__ import annotations

import re

import pytest

from blueprintd.dra.slices import build_slices, plan_publication
from blueprintd.facts.nvml import FakeNvml, discover

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def _names(machine: FakeNvml) -> list[str]:
    slices = build_slices(discover(machine, "n"), "gpu.nvidia.com", "n")
    return [d["name"] for s in slices for d in s["spec"]["devices"]]


def test_dgx_h100() -> None:
    (s,) = build_slices(discover(FakeNvml.from_machine("dgx-h100"), "n"), "gpu.nvidia.com", "n")
    devices = s["spec"]["devices"]
    assert [d["name"] for d in devices] == [f"gpu-{i}" for i in range(8)]
    attrs = devices[0]["attributes"]
    assert attrs["type"] == {"string": "gpu"}
    assert attrs["productName"] == {"string": "NVIDIA H100 80GB HBM3"}
    assert attrs["architecture"] == {"string": "hopper"}
    assert attrs["cudaComputeCapability"] == {"version": "9.0.0"}
    assert attrs["driverVersion"] == {"version": "550.54.15"}
    assert attrs["cudaDriverVersion"] == {"version": "12.4.0"}
    assert attrs["uuid"]["string"].startswith("GPU-")
    assert "resource.kubernetes.io/pcieRoot" in attrs


def test_dgx_h100_mig_56_devices() -> None:
    inv = discover(FakeNvml.from_machine("dgx-h100-mig"), "n")
    (s,) = build_slices(inv, "gpu.nvidia.com", "n")
    devices = s["spec"]["devices"]
    assert len(devices) == 56
    assert [d["name"] for d in devices[:7]] == [f"gpu-0-mig-1g10gb-19-{p}" for p in range(7)]
    for d in devices:
        parent = int(d["name"].split("-")[1])
        assert d["attributes"]["parentUUID"]["string"] == inv.gpus[parent].uuid
        assert d["attributes"]["profile"] == {"string": "1g.10gb"}
        assert d["attributes"]["uuid"]["string"].startswith("MIG-")
        assert set(d["capacity"]) == {
            "multiprocessors",
            "copyEngines",
            "decoders",
            "encoders",
            "jpegEngines",
            "ofaEngines",
            "memory",
        }


@pytest.mark.parametrize(
    "machine", ["dgx-h100", "dgx-h100-mig", "dgx-a100", "dgx-a100-mig-mixed", "l4-server", "t4-node"]
)
def test_every_machine_gives_valid_unique_names(machine: str) -> None:
    names = _names(FakeNvml.from_machine(machine))
    assert names and len(names) == len(set(names))
    assert all(DNS_LABEL.match(n) for n in names)


def test_mig_relayout_changes_generation() -> None:
    fake = FakeNvml.from_machine("dgx-h100-mig")
    before = build_slices(discover(fake, "n"), "gpu.nvidia.com", "n")
    stored = [dict(s, metadata=dict(s["metadata"], resourceVersion="1")) for s in before]
    fake.set_mig_layout(3, ["3g.40gb", "3g.40gb"])
    after = build_slices(discover(fake, "n"), "gpu.nvidia.com", "n")
    names = [d["name"] for d in after[0]["spec"]["devices"]]
    assert len(names) == 56 - 7 + 2
    assert "gpu-3-mig-3g40gb-9-0" in names and "gpu-3-mig-3g40gb-9-4" in names
    plan = plan_publication(after, stored)
    assert plan.generation == 2 and len(plan.update) == 1
    fake.set_mig_mode(3, False)
    names = _names(fake)
    assert "gpu-3" in names and len(names) == 49 + 1
