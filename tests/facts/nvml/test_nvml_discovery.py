"""Discovery against every bundled fake machine: the fields users see, per machine."""

from __future__ import annotations

import pytest

from blueprintd.api.facts import NodeGpuInventory
from blueprintd.facts.nvml import FakeNvml, GpuLostError, NvmlUnavailableError, discover
from blueprintd.facts.nvml.discovery import architecture_family, cuda_version_string, mig_memory_gb

MIB = 1 << 20


def _discover(machine: str) -> NodeGpuInventory:
    fake = FakeNvml.from_machine(machine)
    inventory = discover(fake, "node-a")
    assert not fake.initialized, "every nvmlInit must be paired with nvmlShutdown"
    return inventory


def test_dgx_h100() -> None:
    inv = _discover("dgx-h100")
    assert (inv.node_name, inv.driver_version, inv.cuda_driver_version) == ("node-a", "550.54.15", "12.4")
    assert inv.device_count == 8 and len(inv.gpus) == 8 and not inv.partial and inv.errors == []
    gpu = inv.gpus[4]
    assert gpu.index == 4 and gpu.minor == 4
    assert gpu.product_name == "NVIDIA H100 80GB HBM3"
    assert gpu.brand == "Nvidia"
    assert gpu.architecture == "hopper"
    assert gpu.compute_capability == "9.0"
    assert gpu.memory_bytes == 81559 * MIB
    assert gpu.pci_bus_id == "00000000:9A:00.0"
    assert gpu.pci_device_id == "0x233010DE"
    assert gpu.mig_capable and not gpu.mig_enabled and not gpu.mig_pending and gpu.mig_devices == []
    assert gpu.uuid.startswith("GPU-") and len({g.uuid for g in inv.gpus}) == 8


def test_dgx_h100_mig_has_seven_1g10gb_per_gpu_at_real_placements() -> None:
    inv = _discover("dgx-h100-mig")
    assert len(inv.gpus) == 8
    for gpu in inv.gpus:
        assert gpu.mig_enabled and gpu.mig_capable
        assert [m.profile for m in gpu.mig_devices] == ["1g.10gb"] * 7
        assert [m.gi_profile_id for m in gpu.mig_devices] == [19] * 7
        assert [m.placement_start for m in gpu.mig_devices] == list(range(7))
        assert {m.placement_size for m in gpu.mig_devices} == {1}
        mig = gpu.mig_devices[0]
        assert mig.uuid.startswith("MIG-")
        assert mig.memory_bytes == 9984 * MIB  # 9.75 GiB, what nvidia-smi mig -lgip shows
        assert (mig.multiprocessors, mig.copy_engines, mig.decoders, mig.jpeg_engines, mig.ofa_engines) == (
            16,
            1,
            1,
            1,
            0,
        )
    uuids = [m.uuid for g in inv.gpus for m in g.mig_devices]
    assert len(uuids) == len(set(uuids)) == 56


def test_dgx_a100() -> None:
    inv = _discover("dgx-a100")
    assert (inv.driver_version, inv.cuda_driver_version) == ("535.161.08", "12.2")
    gpu = inv.gpus[0]
    assert gpu.product_name == "NVIDIA A100-SXM4-80GB"
    assert gpu.architecture == "ampere" and gpu.compute_capability == "8.0"
    assert gpu.memory_bytes == 81920 * MIB
    assert gpu.pci_device_id == "0x20B210DE"
    assert gpu.mig_capable and not gpu.mig_enabled


def test_dgx_a100_mixed_layout() -> None:
    inv = _discover("dgx-a100-mig-mixed")
    on, off = inv.gpus[:4], inv.gpus[4:]
    assert all(g.mig_enabled for g in on) and not any(g.mig_enabled for g in off)
    layout = [(m.profile, m.gi_profile_id, m.placement_start, m.placement_size) for m in on[0].mig_devices]
    # all-balanced on an 80GB A100: the 3g instance at slot 4, 2g at 2, two 1g at 0 and 1.
    assert layout == [
        ("1g.10gb", 19, 0, 1),
        ("1g.10gb", 19, 1, 1),
        ("2g.20gb", 14, 2, 2),
        ("3g.40gb", 9, 4, 4),
    ]


def test_l4_server() -> None:
    inv = _discover("l4-server")
    assert len(inv.gpus) == 4
    gpu = inv.gpus[0]
    assert gpu.product_name == "NVIDIA L4"
    assert gpu.architecture == "ada-lovelace" and gpu.compute_capability == "8.9"
    assert gpu.memory_bytes == 23034 * MIB
    assert not gpu.mig_capable and not gpu.mig_enabled


def test_t4_node() -> None:
    inv = _discover("t4-node")
    (gpu,) = inv.gpus
    assert (gpu.product_name, gpu.brand, gpu.architecture, gpu.compute_capability) == (
        "Tesla T4",
        "Tesla",
        "turing",
        "7.5",
    )
    assert gpu.memory_bytes == 15360 * MIB and gpu.pci_bus_id == "00000000:00:1E.0"
    assert not gpu.mig_capable


@pytest.mark.parametrize("machine", ["no-driver", "driver-not-loaded"])
def test_no_driver_raises_typed_error(machine: str) -> None:
    with pytest.raises(NvmlUnavailableError, match="no NVIDIA driver found"):
        discover(FakeNvml.from_machine(machine))


def test_no_driver_as_partial_inventory_for_long_running_callers() -> None:
    inv = discover(FakeNvml.from_machine("driver-not-loaded"), "n", raise_on_unavailable=False)
    assert inv.partial and inv.gpus == [] and inv.device_count == 0
    assert "kernel module is not loaded" in inv.errors[0]


def test_lost_gpu_gives_partial_result_with_the_other_gpus() -> None:
    inv = _discover("dgx-h100-gpu-lost")
    assert inv.partial and inv.device_count == 8
    assert [g.index for g in inv.gpus] == [0, 1, 2, 3, 4, 6, 7]
    (message,) = inv.errors
    assert message.startswith("GPU 5") and "GPU_IS_LOST" in message


def test_gpu_lost_midway_through_reading_it() -> None:
    fake = FakeNvml.from_machine("dgx-h100")
    fake.inject_fault("nvmlDeviceGetMemoryInfo", "GPU_IS_LOST", gpu=2)
    inv = discover(fake)
    assert [g.index for g in inv.gpus] == [0, 1, 3, 4, 5, 6, 7]
    assert "GPU 2 (00000000:3A:00.0)" in inv.errors[0] and "nvmlDeviceGetMemoryInfo" in inv.errors[0]
    assert not fake.initialized


def test_permission_denied_on_mig_instances_keeps_the_gpu() -> None:
    fake = FakeNvml.from_machine("dgx-h100-mig")
    fake.inject_fault("nvmlDeviceGetGpuInstanceById", "NO_PERMISSION", gpu=1)
    inv = discover(fake)
    assert inv.partial and len(inv.gpus) == 8
    assert inv.gpus[1].mig_enabled and inv.gpus[1].mig_devices == []
    assert len(inv.errors) == 7 and all("NO_PERMISSION" in e for e in inv.errors)
    assert len(inv.gpus[0].mig_devices) == 7


def test_driver_version_failure_is_partial_not_fatal() -> None:
    fake = FakeNvml.from_machine("l4-server")
    fake.inject_fault("nvmlSystemGetDriverVersion", "UNKNOWN")
    inv = discover(fake)
    assert inv.partial and inv.driver_version == "" and len(inv.gpus) == 4


def test_old_driver_without_v2_entry_points() -> None:
    fake = FakeNvml.from_machine("dgx-h100-mig")
    fake.inject_fault("nvmlSystemGetCudaDriverVersion_v2", "FUNCTION_NOT_FOUND")
    fake.inject_fault("nvmlDeviceGetArchitecture", "FUNCTION_NOT_FOUND")
    inv = discover(fake)
    assert not inv.partial and inv.cuda_driver_version == "12.4"
    assert inv.gpus[0].architecture == "hopper"  # from the compute capability anyway


def test_architecture_from_nvml_enum_when_compute_capability_unavailable() -> None:
    fake = FakeNvml.from_machine("l4-server")
    fake.inject_fault("nvmlDeviceGetCudaComputeCapability", "NOT_SUPPORTED")
    inv = discover(fake)
    assert inv.gpus[0].architecture == "ada-lovelace" and inv.gpus[0].compute_capability == ""


def test_mig_pending_reset() -> None:
    fake = FakeNvml.from_machine("dgx-h100")
    fake.set_mig_mode(0, True, pending=True)
    gpu = discover(fake).gpus[0]
    assert gpu.mig_pending and not gpu.mig_enabled
    fake.reset_gpu(0)
    gpu = discover(fake).gpus[0]
    assert gpu.mig_enabled and not gpu.mig_pending and gpu.mig_devices == []


def test_relayout_at_runtime_is_seen_by_the_next_discovery() -> None:
    fake = FakeNvml.from_machine("dgx-h100-mig")
    fake.set_mig_layout(3, ["3g.40gb", "3g.40gb"])
    gpu = discover(fake).gpus[3]
    assert [(m.profile, m.gi_profile_id, m.placement_start, m.placement_size) for m in gpu.mig_devices] == [
        ("3g.40gb", 9, 0, 4),
        ("3g.40gb", 9, 4, 4),
    ]
    fake.set_mig_layout(None, ["7g.80gb"])
    inv = discover(fake)
    assert all([m.profile for m in g.mig_devices] == ["7g.80gb"] for g in inv.gpus)


def test_unknown_profile_name_falls_back_to_derived_name() -> None:
    # Drivers older than the v2 profile struct have no names: derive "1g.10gb" from memory.
    fake = FakeNvml.from_machine("dgx-h100-mig")
    original = fake.nvmlDeviceGetGpuInstanceProfileInfo

    def v1_only(device: object, profile: int, version: int = 2) -> object:
        if version == 2:
            fake.calls["v2-refused"] += 1
            raise FakeNvml.NVMLError(13)  # NVML_ERROR_FUNCTION_NOT_FOUND
        return original(device, profile, version)

    fake.nvmlDeviceGetGpuInstanceProfileInfo = v1_only  # type: ignore[method-assign]
    inv = discover(fake)
    assert not inv.partial
    assert {m.profile for g in inv.gpus for m in g.mig_devices} == {"1g.10gb"}
    assert fake.calls["v2-refused"] > 0


def test_lost_gpu_error_type() -> None:
    fake = FakeNvml.from_machine("dgx-h100")
    fake.lose_gpu(0)
    inv = discover(fake)
    assert "GPU is lost" in inv.errors[0]
    from blueprintd.facts.nvml.errors import from_nvml

    assert isinstance(from_nvml(FakeNvml.NVMLError(15)), GpuLostError)


@pytest.mark.parametrize(
    ("cc", "family"),
    [
        ((7, 0), "volta"),
        ((7, 5), "turing"),
        ((8, 0), "ampere"),
        ((8, 6), "ampere"),
        ((8, 9), "ada-lovelace"),
        ((9, 0), "hopper"),
        ((10, 0), "blackwell"),
        ((12, 0), "blackwell"),
    ],
)
def test_architecture_family_matches_gfd(cc: tuple[int, int], family: str) -> None:
    assert architecture_family(*cc) == family


def test_cuda_and_mig_memory_formatting() -> None:
    assert cuda_version_string(12040) == "12.4" and cuda_version_string(11080) == "11.8"
    h100 = 81559 * MIB
    assert [mig_memory_gb(mb, h100) for mb in (9984, 20096, 40448, 80896)] == [10, 20, 40, 80]
    a100_40 = 40960 * MIB
    assert [mig_memory_gb(mb, a100_40) for mb in (4864, 9856, 19968, 40192)] == [5, 10, 20, 40]
