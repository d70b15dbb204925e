"""Each source on its own: GFD labels, the agent annotation, plain Node fields, ResourceSlices."""

from __future__ import annotations

from typing import Any

from blueprintd.api.facts import FactSource
from blueprintd.dra.slices import build_slices
from blueprintd.facts.annotation import ANNOTATION_KEY
from blueprintd.facts.collect import (
    agent_observation,
    gfd_observation,
    latest_generation,
    node_observation,
    slice_observations,
)
from blueprintd.facts.collect.labels import passthrough_product
from blueprintd.facts.nvml import FakeNvml, discover


def test_gfd_labels_of_an_h100_node(k8s: Any) -> None:
    obs = gfd_observation(k8s.gfd_node("h1", "h100-80gb", 8, driver="550.54.15", cuda="12.4"))
    assert obs is not None and obs.source is FactSource.GFD
    assert obs.facts == {
        "gpu_product": "NVIDIA-H100-80GB-HBM3",
        "gpu_count": 8,
        "gpu_memory_mib": 81559,
        "gpu_family": "hopper",
        "compute_capability": "9.0",
        "mig_capable": True,
        "mig_enabled": False,
        "mig_strategy": "single",
        "sharing_strategy": "none",
        "driver_version": "550.54.15",  # GFD's cuda.driver.* labels are the NVIDIA driver version
        "cuda_driver_version": "12.4",  # ... and cuda.runtime.* the CUDA version
    }


def test_gfd_mig_single_counts_mig_devices_not_gpus(k8s: Any) -> None:
    node = k8s.gfd_node("m1", "h100-80gb", 8, mig_single="1g.10gb", mig_config="all-1g.10gb")
    assert node["metadata"]["labels"]["nvidia.com/gpu.count"] == "56"
    obs = gfd_observation(node)
    assert obs is not None
    assert obs.facts["gpu_product"] == "NVIDIA-H100-80GB-HBM3"
    assert obs.facts["gpu_count"] == 8
    assert obs.facts["mig_enabled"] is True
    assert "gpu_memory_mib" not in obs.facts  # GFD's gpu.memory is the MIG device's here
    plain = node_observation(node)
    assert "gpu_count" not in plain.facts  # nvidia.com/gpu capacity = 56 MIG devices, not GPUs
    assert plain.facts["mig_config"] == "all-1g.10gb" and plain.facts["mig_enabled"] is True


def test_gfd_mixed_strategy(k8s: Any) -> None:
    labels = k8s.gfd_labels("a100-80gb", 8)
    labels.update(
        {
            "nvidia.com/mig.strategy": "mixed",
            "nvidia.com/mig-1g.10gb.count": "14",
            "nvidia.com/mig-3g.40gb.count": "2",
        }
    )
    obs = gfd_observation(k8s.node("a1", labels))
    assert obs is not None and obs.facts["mig_enabled"] is True and obs.facts["gpu_count"] == 8


def test_gfd_newer_version_labels_and_missing_rev(k8s: Any) -> None:
    labels = {
        "nvidia.com/gpu.product": "NVIDIA-L4",
        "nvidia.com/gpu.count": "4",
        "nvidia.com/cuda.driver.major": "550",
        "nvidia.com/cuda.driver.minor": "120",
        "nvidia.com/cuda.driver.rev": "",
        "nvidia.com/cuda.runtime-version.full": "12.4",
    }
    obs = gfd_observation(k8s.node("l", labels))
    assert obs is not None
    assert (obs.facts["driver_version"], obs.facts["cuda_driver_version"]) == ("550.120", "12.4")
    labels["nvidia.com/cuda.driver-version.full"] = "550.120"
    assert gfd_observation(k8s.node("l", labels)).facts["driver_version"] == "550.120"  # type: ignore[union-attr]


def test_no_gfd_labels(k8s: Any) -> None:
    assert gfd_observation(k8s.node("cpu-1")) is None


def test_time_slicing_capacity_is_divided_by_replicas(k8s: Any) -> None:
    node = k8s.gfd_node("l4", "l4", 4, sharing="time-slicing", replicas=4)
    assert node["status"]["capacity"]["nvidia.com/gpu"] == "16"
    assert node_observation(node).facts["gpu_count"] == 4
    assert gfd_observation(node).facts["sharing_strategy"] == "time-slicing"  # type: ignore[union-attr]


def test_sandbox_node_from_passthrough_capacity(k8s: Any) -> None:
    node = k8s.node(
        "vfio-1",
        {"nvidia.com/gpu.workload.config": "vm-passthrough"},
        {"nvidia.com/GH100_H100_SXM5_80GB": "8"},
    )
    obs = node_observation(node)
    assert obs.facts == {
        "workload_config": "vm-passthrough",
        "sandbox": True,
        "gpu_product": "NVIDIA-H100-80GB-HBM3",
        "gpu_count": 8,
    }
    kata = k8s.node("kata-1", {"nvidia.com/gpu.workload.config": "vm-passthrough"}, {"nvidia.com/pgpu": "4"})
    assert node_observation(kata).facts["gpu_count"] == 4


def test_passthrough_resource_names() -> None:
    assert passthrough_product("GA100_A100_SXM4_80GB").key == "a100-80gb"  # type: ignore[union-attr]
    assert passthrough_product("GA100_A100_SXM4_40GB").key == "a100-40gb"  # type: ignore[union-attr]
    assert passthrough_product("TU104GL_TESLA_T4").key == "t4"  # type: ignore[union-attr]
    assert passthrough_product("AD104GL_L4").key == "l4"  # type: ignore[union-attr]
    assert passthrough_product("hostdev") is None


def test_agent_annotation(k8s: Any) -> None:
    obs = agent_observation(k8s.agent_node("a", "dgx-a100-mig-mixed"))
    assert obs is not None and obs.source is FactSource.NODE_AGENT
    assert obs.facts == {
        "driver_version": "535.161.08",
        "cuda_driver_version": "12.2",
        "gpu_product": "NVIDIA-A100-SXM4-80GB",
        "gpu_count": 8,
        "gpu_memory_mib": 81920,
        "gpu_family": "ampere",
        "compute_capability": "8.0",
        "pci_device_id": "0x20B210DE",
        "mig_capable": True,
        "mig_enabled": True,
    }


def test_agent_annotation_partial_and_unavailable(k8s: Any) -> None:
    lost = agent_observation(k8s.agent_node("a", "dgx-h100-gpu-lost"))
    assert lost is not None and lost.facts["gpu_count"] == 8  # NVML counted 8, one unreadable
    gone = agent_observation(k8s.agent_node("b", "driver-not-loaded"))
    assert gone is not None and "gpu_count" not in gone.facts and "gpu_product" not in gone.facts
    bad = k8s.node("c", annotations={ANNOTATION_KEY: '{"v": 99}'})
    assert agent_observation(bad) is None


def test_resource_slices_full_gpus(k8s: Any) -> None:
    slices = [k8s.slice("h1", [k8s.gpu_device(i) for i in range(8)])]
    obs = slice_observations(slices)["h1"]
    assert obs.source is FactSource.RESOURCE_SLICE
    assert obs.facts == {
        "gpu_product": "NVIDIA-H100-80GB-HBM3",
        "gpu_count": 8,
        "gpu_memory_mib": 81559,
        "gpu_family": "hopper",
        "compute_capability": "9.0",
        "driver_version": "550.54.15",
        "cuda_driver_version": "12.4",
        "mig_enabled": False,
    }


def test_resource_slices_mig_devices_count_parents_once(k8s: Any) -> None:
    devices = [k8s.mig_device(p, s) for p in range(2) for s in range(7)] + [k8s.gpu_device(2)]
    obs = slice_observations([k8s.slice("m1", devices)])["m1"]
    assert obs.facts["gpu_count"] == 3 and obs.facts["mig_enabled"] is True and obs.facts["mig_capable"]


def test_only_the_newest_generation_counts(k8s: Any) -> None:
    old = k8s.slice("h1", [k8s.gpu_device(i) for i in range(8)], generation=1)
    new = k8s.slice("h1", [k8s.mig_device(0, s) for s in range(7)], generation=2)
    other_driver = k8s.slice("h1", [k8s.gpu_device(9)], driver="example.com")
    assert latest_generation([old, new, other_driver], "gpu.nvidia.com") == [new]
    obs = slice_observations([old, new, other_driver])["h1"]
    assert obs.facts["gpu_count"] == 1 and obs.facts["mig_enabled"] is True


def test_qualified_attribute_names_and_v1beta1_shape(k8s: Any) -> None:
    device = k8s.gpu_device(0, product="NVIDIA L4", arch="Ada Lovelace", cc="8.9.0", memory="23034Mi")
    device["attributes"] = {f"gpu.nvidia.com/{k}": v for k, v in device["attributes"].items()}
    beta = {
        "name": device["name"],
        "basic": {"attributes": device["attributes"], "capacity": device["capacity"]},
    }
    obs = slice_observations([k8s.slice("l", [beta])])["l"]
    assert obs.facts["gpu_family"] == "ada-lovelace" and obs.facts["gpu_product"] == "NVIDIA-L4"
    assert obs.facts["gpu_memory_mib"] == 23034


def test_configurable_driver_name(k8s: Any) -> None:
    slices = [k8s.slice("h1", [k8s.gpu_device(0)], driver="gpu.example.com")]
    assert slice_observations(slices) == {}
    assert slice_observations(slices, "gpu.example.com")["h1"].facts["gpu_count"] == 1


def test_vfio_devices_resolve_product_by_pci_id(k8s: Any) -> None:
    vfio = {
        "name": "gpu-vfio-0",
        "attributes": {
            "type": {"string": "vfio"},
            "uuid": {"string": "u0"},
            "deviceID": {"string": "0x2330"},
            "productName": {"string": "GH100 [H100 SXM5 80GB]"},
        },
    }
    obs = slice_observations([k8s.slice("v", [vfio])])["v"]
    assert obs.facts["gpu_product"] == "NVIDIA-H100-80GB-HBM3" and obs.facts["gpu_count"] == 1


def test_counter_based_mig_devices_do_not_claim_mig_mode(k8s: Any) -> None:
    dynamic = k8s.mig_device(0, 0)
    dynamic["consumesCounters"] = [
        {"counterSet": "gpu-0-counters", "counters": {"memory": {"value": "10Gi"}}}
    ]
    obs = slice_observations([k8s.slice("d", [k8s.gpu_device(0), dynamic])])["d"]
    assert "mig_enabled" not in obs.facts and obs.facts["mig_capable"] is True


def test_slices_published_by_the_bundled_dra_driver_are_read_back() -> None:
    """The collector understands exactly what blueprintd's own DRA driver publishes."""
    fake = FakeNvml.from_machine("dgx-a100-mig-mixed")
    inventory = discover(fake, "a1")
    slices = build_slices(inventory, "gpu.nvidia.com", "a1")
    obs = slice_observations(slices)["a1"]
    assert obs.facts["gpu_product"] == "NVIDIA-A100-SXM4-80GB"
    assert obs.facts["gpu_count"] == 8
    assert obs.facts["mig_enabled"] is True
    assert obs.facts["gpu_memory_mib"] == 81920
    assert obs.facts["driver_version"] in ("535.161.8", "535.161.08")


def _shared(labels: dict[str, str]) -> dict[str, str]:
    """GFD's labels when sharing without renaming: ``-SHARED`` appended to the product."""
    return {**labels, "nvidia.com/gpu.product": labels["nvidia.com/gpu.product"] + "-SHARED"}


def test_gfd_shared_suffix_is_the_product_plus_a_sharing_fact(k8s: Any) -> None:
    labels = _shared(k8s.gfd_labels("l4", 4, sharing="time-slicing", replicas=4))
    assert labels["nvidia.com/gpu.product"] == "NVIDIA-L4-SHARED"
    obs = gfd_observation(k8s.node("l4-ts", labels, {"nvidia.com/gpu": "16"}))
    assert obs is not None
    assert obs.facts["gpu_product"] == "NVIDIA-L4"
    assert obs.facts["sharing_strategy"] == "time-slicing"
    assert obs.facts["gpu_count"] == 4 and obs.facts["gpu_memory_mib"] == 23034


def test_gfd_shared_suffix_without_a_sharing_strategy_label(k8s: Any) -> None:
    """GFD releases before the sharing-strategy label only added -SHARED for time-slicing."""
    labels = _shared(k8s.gfd_labels("t4", 1, replicas=8))
    del labels["nvidia.com/gpu.sharing-strategy"]
    obs = gfd_observation(k8s.node("t4-ts", labels))
    assert obs is not None
    assert (obs.facts["gpu_product"], obs.facts["sharing_strategy"]) == ("Tesla-T4", "time-slicing")


def test_gfd_shared_mig_single_product(k8s: Any) -> None:
    """MIG strategy single with time-slicing: ``<GPU>-MIG-<profile>-SHARED``."""
    labels = _shared(k8s.gfd_labels("h100-80gb", 8, mig_single="1g.10gb", mig_config="all-1g.10gb", replicas=2))
    assert labels["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3-MIG-1g.10gb-SHARED"
    obs = gfd_observation(k8s.node("m-ts", labels))
    assert obs is not None
    assert obs.facts["gpu_product"] == "NVIDIA-H100-80GB-HBM3"
    assert obs.facts["gpu_count"] == 8, "56 MIG devices / 7 per GPU"
    assert obs.facts["mig_enabled"] is True and obs.facts["sharing_strategy"] == "time-slicing"
