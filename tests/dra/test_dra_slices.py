"""Pure tests of ResourceSlice building and the publication plan (no API server)."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

import pytest

from blueprintd.api.facts import NodeGpuInventory
from blueprintd.dra.slices import (
    MAX_DEVICES_PER_SLICE,
    TIME_SLICING_LABEL,
    build_slices,
    bus_id_pcie_root,
    mig_device_name,
    plan_publication,
    quantity_value,
    time_slicing_replicas,
    to_semver,
)

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
Inv = Callable[..., NodeGpuInventory]


def _devices(slices: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for s in slices for d in s["spec"]["devices"]]


def test_dgx_h100_full_gpus(inventory: Inv) -> None:
    slices = build_slices(inventory(), "gpu.nvidia.com", "node-a")
    assert len(slices) == 1
    s = slices[0]
    assert s["apiVersion"] == "resource.k8s.io/v1" and s["kind"] == "ResourceSlice"
    assert s["spec"]["driver"] == "gpu.nvidia.com"
    assert s["spec"]["nodeName"] == "node-a"
    assert s["spec"]["pool"] == {"name": "node-a", "generation": 1, "resourceSliceCount": 1}
    devices = s["spec"]["devices"]
    assert [d["name"] for d in devices] == [f"gpu-{i}" for i in range(8)]
    gpu0 = devices[0]
    assert gpu0["attributes"] == {
        "type": {"string": "gpu"},
        "uuid": {"string": "GPU-00000000-1111-2222-3333-444444444444"},
        "productName": {"string": "NVIDIA H100 80GB HBM3"},
        "brand": {"string": "Nvidia"},
        "architecture": {"string": "hopper"},
        "cudaComputeCapability": {"version": "9.0.0"},
        "driverVersion": {"version": "550.54.15"},
        "cudaDriverVersion": {"version": "12.4.0"},
        "pcieBusID": {"string": "00000000:18:00.0"},
        "resource.kubernetes.io/pcieRoot": {"string": "pci0000:18"},
    }
    assert gpu0["capacity"] == {"memory": {"value": "80Gi"}}


def test_dgx_h100_mig_publishes_56_mig_devices_not_parents(inventory: Inv) -> None:
    slices = build_slices(inventory(mig_per_gpu=7), "gpu.nvidia.com", "node-a")
    devices = _devices(slices)
    assert len(devices) == 56
    names = [d["name"] for d in devices]
    assert not any(re.fullmatch(r"gpu-\d+", n) for n in names), "MIG parents must not be published"
    assert names[:7] == [f"gpu-0-mig-1g10gb-19-{p}" for p in range(7)]
    assert names[-1] == "gpu-7-mig-1g10gb-19-6"
    assert all(DNS_LABEL.match(n) for n in names)
    mig = devices[10]  # gpu-1, placement 3
    assert mig["name"] == "gpu-1-mig-1g10gb-19-3"
    attrs = mig["attributes"]
    assert attrs["type"] == {"string": "mig"}
    assert attrs["uuid"] == {"string": "MIG-01030000-aaaa-bbbb-cccc-dddddddddddd"}
    assert attrs["parentUUID"] == {"string": "GPU-00000001-1111-2222-3333-444444444444"}
    assert attrs["profile"] == {"string": "1g.10gb"}
    assert attrs["productName"] == {"string": "NVIDIA H100 80GB HBM3"}
    assert attrs["cudaComputeCapability"] == {"version": "9.0.0"}
    assert attrs["pcieBusID"] == {"string": "00000000:28:00.0"}
    assert mig["capacity"] == {
        "multiprocessors": {"value": "16"},
        "copyEngines": {"value": "1"},
        "decoders": {"value": "1"},
        "encoders": {"value": "0"},
        "jpegEngines": {"value": "1"},
        "ofaEngines": {"value": "0"},
        "memory": {"value": "9856Mi"},
    }
    for d in devices:  # API limit: attributes + capacities <= 32 per device
        assert len(d["attributes"]) + len(d["capacity"]) <= 32


def test_mig_enabled_gpu_without_devices_and_pending_gpus_publish_nothing(inventory: Inv) -> None:
    inv = inventory(gpus=3)
    inv.gpus[0].mig_enabled = True  # MIG on, no instances yet
    inv.gpus[1].mig_pending = True  # waiting for a reset
    names = [d["name"] for d in _devices(build_slices(inv, "gpu.nvidia.com", "node-a"))]
    assert names == ["gpu-2"]


def test_node_without_gpus_gets_one_empty_slice(inventory: Inv) -> None:
    slices = build_slices(inventory(gpus=0), "gpu.nvidia.com", "cpu-node")
    assert len(slices) == 1 and slices[0]["spec"]["devices"] == []


def test_split_at_128_devices(inventory: Inv) -> None:
    inv = inventory(gpus=20, mig_per_gpu=7)  # 140 MIG devices
    slices = build_slices(inv, "gpu.nvidia.com", "node-a", generation=4)
    assert [len(s["spec"]["devices"]) for s in slices] == [MAX_DEVICES_PER_SLICE, 12]
    for s in slices:
        assert s["spec"]["pool"] == {"name": "node-a", "generation": 4, "resourceSliceCount": 2}
    assert [s["metadata"]["name"] for s in slices] == ["node-a-gpu.nvidia.com-0", "node-a-gpu.nvidia.com-1"]
    names = [d["name"] for d in _devices(slices)]
    assert len(names) == len(set(names)) == 140


def test_exactly_128_devices_fit_one_slice(inventory: Inv) -> None:
    assert len(build_slices(inventory(gpus=128), "gpu.nvidia.com", "n")) == 1


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("9.0", "9.0.0"),
        ("550.54.15", "550.54.15"),
        ("535.104.05", "535.104.5"),
        ("12.4", "12.4.0"),
        ("12", "12.0.0"),
        ("", None),
        ("r550", None),
        ("1.2.3.4", None),
    ],
)
def test_semver_normalisation(raw: str, want: str | None) -> None:
    assert to_semver(raw) == want


def test_mig_names_sanitised_and_pcie_root() -> None:
    from blueprintd.api.facts import MigDeviceInfo

    mig = MigDeviceInfo(uuid="MIG-x", profile="1g.10gb+me", gi_profile_id=20, placement_start=6)
    assert mig_device_name(3, mig) == "gpu-3-mig-1g10gb-me-20-6"
    assert bus_id_pcie_root("00000001:A8:00.0") == "pci0001:a8"
    assert bus_id_pcie_root("garbage") is None


def test_quantities_compare_by_value() -> None:
    assert quantity_value("80Gi") == quantity_value(str(80 << 30))
    assert quantity_value("81559552k") == quantity_value("81559552000")
    with pytest.raises(ValueError):
        quantity_value("12 apples")


# --- generation / publication plan ---------------------------------------------------------


def _as_stored(slices: list[dict[str, Any]], rv: str = "1") -> list[dict[str, Any]]:
    """What the API server would return: canonicalised quantities, resourceVersion, uid."""
    out = copy.deepcopy(slices)
    for i, s in enumerate(out):
        s["metadata"].update(resourceVersion=f"{rv}{i}", uid=f"uid-{i}")
        for d in s["spec"]["devices"]:
            for c in d.get("capacity", {}).values():
                if c["value"] == "80Gi":
                    c["value"] = str(80 << 30)  # another spelling of the same quantity
    return out


def test_first_publication_creates_generation_1(inventory: Inv) -> None:
    desired = build_slices(inventory(), "gpu.nvidia.com", "node-a")
    plan = plan_publication(desired, [])
    assert plan.generation == 1 and len(plan.create) == 1 and not plan.update and not plan.delete


def test_unchanged_devices_make_no_writes(inventory: Inv) -> None:
    existing = _as_stored(build_slices(inventory(), "gpu.nvidia.com", "node-a", generation=3))
    plan = plan_publication(build_slices(inventory(), "gpu.nvidia.com", "node-a"), existing)
    assert plan.empty and plan.generation == 3


def test_device_set_change_bumps_generation_and_deletes_leftovers(inventory: Inv) -> None:
    existing = _as_stored(
        build_slices(inventory(gpus=20, mig_per_gpu=7), "gpu.nvidia.com", "node-a", generation=2)
    )
    desired = build_slices(inventory(gpus=8, mig_per_gpu=7), "gpu.nvidia.com", "node-a")  # 56 -> 1 slice
    plan = plan_publication(desired, existing)
    assert plan.generation == 3
    assert [s["metadata"]["name"] for s in plan.update] == ["node-a-gpu.nvidia.com-0"]
    assert plan.update[0]["metadata"]["resourceVersion"] == "10"
    assert plan.update[0]["spec"]["pool"] == {"name": "node-a", "generation": 3, "resourceSliceCount": 1}
    assert plan.delete == ["node-a-gpu.nvidia.com-1"]
    assert not plan.create


def test_mig_relayout_bumps_generation(inventory: Inv) -> None:
    existing = _as_stored(build_slices(inventory(), "gpu.nvidia.com", "node-a", generation=1))
    plan = plan_publication(build_slices(inventory(mig_per_gpu=7), "gpu.nvidia.com", "node-a"), existing)
    assert plan.generation == 2 and len(plan.update) == 1


def test_deleted_slice_is_recreated_at_a_new_generation(inventory: Inv) -> None:
    inv = inventory(gpus=20, mig_per_gpu=7)
    existing = _as_stored(build_slices(inv, "gpu.nvidia.com", "node-a", generation=5))[:1]
    plan = plan_publication(build_slices(inv, "gpu.nvidia.com", "node-a"), existing)
    assert plan.generation == 6
    assert [s["metadata"]["name"] for s in plan.create] == ["node-a-gpu.nvidia.com-1"]
    assert [s["metadata"]["name"] for s in plan.update] == ["node-a-gpu.nvidia.com-0"]


def test_mixed_generations_are_rewritten(inventory: Inv) -> None:
    inv = inventory(gpus=20, mig_per_gpu=7)
    existing = _as_stored(build_slices(inv, "gpu.nvidia.com", "node-a", generation=5))
    existing[1]["spec"]["pool"]["generation"] = 4  # a half-finished earlier publication
    plan = plan_publication(build_slices(inv, "gpu.nvidia.com", "node-a"), existing)
    assert plan.generation == 6 and len(plan.update) == 2


# --- time-slicing as consumable capacity -----------------------------------------------------


@pytest.mark.parametrize(
    ("labels", "want"),
    [({TIME_SLICING_LABEL: "4"}, 4), ({TIME_SLICING_LABEL: "1"}, None), ({TIME_SLICING_LABEL: "x"}, None), ({}, None)],
)
def test_time_slicing_replicas_from_the_node_label(labels: dict[str, str], want: int | None) -> None:
    assert time_slicing_replicas(labels) == want


def test_time_sliced_gpus_are_shareable_by_replicas_claims(inventory: Inv) -> None:
    (dev, *_rest) = _devices(build_slices(inventory(), "gpu.nvidia.com", "node-a", time_slicing_replicas=4))
    assert dev["allowMultipleAllocations"] is True
    assert dev["capacity"]["timeSlices"] == {
        "value": "4",
        "requestPolicy": {"default": "1", "validRange": {"min": "1", "max": "4", "step": "1"}},
    }
    # Time-slicing does not partition memory: a claim consumes none unless it asks.
    assert dev["capacity"]["memory"] == {
        "value": "80Gi",
        "requestPolicy": {"default": "0", "validRange": {"min": "0"}},
    }
    (plain, *_r) = _devices(build_slices(inventory(), "gpu.nvidia.com", "node-a"))
    assert "allowMultipleAllocations" not in plain and set(plain["capacity"]) == {"memory"}


def test_mig_devices_stay_whole_devices_when_time_sliced(inventory: Inv) -> None:
    devices = _devices(build_slices(inventory(mig_per_gpu=7), "gpu.nvidia.com", "n", time_slicing_replicas=4))
    assert len(devices) == 56
    assert not any("allowMultipleAllocations" in d or "timeSlices" in d["capacity"] for d in devices)


def test_changing_replicas_republishes_and_same_replicas_does_not(inventory: Inv) -> None:
    existing = _as_stored(build_slices(inventory(), "gpu.nvidia.com", "n", generation=2, time_slicing_replicas=4))
    same = plan_publication(build_slices(inventory(), "gpu.nvidia.com", "n", time_slicing_replicas=4), existing)
    assert same.empty
    more = plan_publication(build_slices(inventory(), "gpu.nvidia.com", "n", time_slicing_replicas=8), existing)
    assert more.generation == 3 and len(more.update) == 1
    off = plan_publication(build_slices(inventory(), "gpu.nvidia.com", "n"), existing)
    assert off.generation == 3 and not off.update[0]["spec"]["devices"][0].get("allowMultipleAllocations")
