"""The fake behaves like pynvml: same names and signatures, struct fields, error classes."""

from __future__ import annotations

import inspect
from pathlib import Path

import pynvml
import pytest

from blueprintd.facts.nvml import FakeNvml, FakeNvmlError
from blueprintd.facts.nvml.interface import PROTOCOL_FUNCTIONS, NvmlLibrary


@pytest.mark.parametrize("name", PROTOCOL_FUNCTIONS)
def test_real_pynvml_and_fake_have_the_protocol_functions_with_the_same_parameters(name: str) -> None:
    real = inspect.signature(getattr(pynvml, name))
    fake = inspect.signature(getattr(FakeNvml.from_machine("t4-node"), name))
    proto = inspect.signature(getattr(NvmlLibrary, name))
    proto_params = [p for p in proto.parameters if p != "self"]
    # Positional parameter names match pynvml exactly (callers may pass them by keyword).
    assert list(fake.parameters) == list(real.parameters)
    assert proto_params == [p for p in real.parameters if p in proto_params]
    for param in real.parameters.values():
        if param.default is not inspect.Parameter.empty:
            assert fake.parameters[param.name].default == param.default


def test_real_module_is_usable_as_the_protocol() -> None:
    from blueprintd.facts.nvml.real import load

    nvml: NvmlLibrary = load()
    assert nvml is pynvml and nvml.NVMLError is pynvml.NVMLError


def test_errors_are_the_real_pynvml_classes() -> None:
    fake = FakeNvml.from_machine("l4-server")
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        fake.nvmlDeviceGetCount()
    fake.nvmlInit()
    try:
        handle = fake.nvmlDeviceGetHandleByIndex(0)
        with pytest.raises(pynvml.NVMLError_NotSupported):
            fake.nvmlDeviceGetMigMode(handle)
        with pytest.raises(pynvml.NVMLError_InvalidArgument):
            fake.nvmlDeviceGetHandleByIndex(4)
        fake.lose_gpu(1)
        with pytest.raises(pynvml.NVMLError_GpuIsLost) as exc:
            fake.nvmlDeviceGetHandleByIndex(1)
        assert exc.value.value == pynvml.NVML_ERROR_GPU_IS_LOST
    finally:
        fake.nvmlShutdown()
    assert fake.NVML_ERROR_NOT_FOUND == pynvml.NVML_ERROR_NOT_FOUND  # constants pass through


def test_struct_fields_and_types_match_pynvml() -> None:
    fake = FakeNvml.from_machine("dgx-h100-mig")
    fake.nvmlInit()
    try:
        h = fake.nvmlDeviceGetHandleByIndex(0)
        pci = fake.nvmlDeviceGetPciInfo(h)
        assert {n for n, _ in pynvml.nvmlPciInfo_t._fields_} == set(vars(pci))
        assert isinstance(pci.busId, bytes) and pci.busId == b"00000000:18:00.0"
        mem = fake.nvmlDeviceGetMemoryInfo(h)
        assert {n for n, _ in pynvml.c_nvmlMemory_t._fields_} == set(vars(mem))
        assert mem.total == mem.free + mem.used
        assert fake.nvmlDeviceGetMigMode(h) == [1, 1]
        assert fake.nvmlDeviceGetCudaComputeCapability(h) == (9, 0)
        info = fake.nvmlDeviceGetGpuInstanceProfileInfo(h, pynvml.NVML_GPU_INSTANCE_PROFILE_1_SLICE)
        assert {n for n, _ in pynvml.c_nvmlGpuInstanceProfileInfo_v2_t._fields_} == set(vars(info))
        assert (info.id, info.instanceCount, info.name) == (19, 7, b"MIG 1g.10gb")
        v1 = fake.nvmlDeviceGetGpuInstanceProfileInfo(h, pynvml.NVML_GPU_INSTANCE_PROFILE_7_SLICE, 1)
        assert {n for n, _ in pynvml.c_nvmlGpuInstanceProfileInfo_t._fields_} == set(vars(v1))
        assert v1.id == 0
        with pytest.raises(pynvml.NVMLError_NotSupported):
            fake.nvmlDeviceGetGpuInstanceProfileInfo(h, pynvml.NVML_GPU_INSTANCE_PROFILE_6_SLICE)
        mig = fake.nvmlDeviceGetMigDeviceHandleByIndex(h, 6)
        with pytest.raises(pynvml.NVMLError_InvalidArgument):  # beyond nvmlDeviceGetMaxMigDeviceCount
            fake.nvmlDeviceGetMigDeviceHandleByIndex(h, 7)
        gi = fake.nvmlDeviceGetGpuInstanceById(h, fake.nvmlDeviceGetGpuInstanceId(mig))
        gi_info = fake.nvmlGpuInstanceGetInfo(gi)
        assert {n for n, _ in pynvml.c_nvmlGpuInstanceInfo_t._fields_} == set(vars(gi_info))
        placement = (gi_info.placement.start, gi_info.placement.size)
        assert (gi_info.id, gi_info.profileId, placement) == (13, 19, (6, 1))
        attrs = fake.nvmlDeviceGetAttributes(mig)
        assert {n for n, _ in pynvml.c_nvmlDeviceAttributes._fields_} == set(vars(attrs))
        assert fake.nvmlDeviceGetName(mig) == "NVIDIA H100 80GB HBM3 MIG 1g.10gb"
    finally:
        fake.nvmlShutdown()


def test_empty_mig_slots_are_not_found() -> None:
    fake = FakeNvml.from_machine("dgx-a100-mig-mixed")
    fake.nvmlInit()
    try:
        h = fake.nvmlDeviceGetHandleByIndex(0)
        assert fake.nvmlDeviceGetMaxMigDeviceCount(h) == 7
        fake.nvmlDeviceGetMigDeviceHandleByIndex(h, 3)
        with pytest.raises(pynvml.NVMLError_NotFound):
            fake.nvmlDeviceGetMigDeviceHandleByIndex(h, 4)
    finally:
        fake.nvmlShutdown()


def test_stale_mig_handle_after_relayout_is_invalid() -> None:
    fake = FakeNvml.from_machine("dgx-h100-mig")
    fake.nvmlInit()
    try:
        mig = fake.nvmlDeviceGetMigDeviceHandleByIndex(fake.nvmlDeviceGetHandleByIndex(0), 0)
        fake.set_mig_layout(0, ["7g.80gb"])
        with pytest.raises(pynvml.NVMLError_InvalidArgument):
            fake.nvmlDeviceGetUUID(mig)
    finally:
        fake.nvmlShutdown()


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        (["1g.10gb"] * 8, "at most 7"),
        (["4g.40gb", "4g.40gb"], "at most 1"),
        (["7g.80gb", "1g.10gb"], "does not fit"),
        (["5g.50gb"], "no MIG profile"),
        (["3g.40gb@2"], "cannot start at 2"),
    ],
)
def test_invalid_layouts_are_refused(layout: list[str], message: str) -> None:
    fake = FakeNvml.from_machine("dgx-h100")
    with pytest.raises(FakeNvmlError, match=message):
        fake.set_mig_layout(0, layout)


def test_valid_layouts_place_like_nvml() -> None:
    fake = FakeNvml.from_machine("dgx-h100")
    fake.set_mig_layout(0, ["1g.20gb"] * 4)
    fake.set_mig_layout(1, ["4g.40gb", "2g.20gb", "1g.10gb"])
    fake.set_mig_layout(2, ["3g.40gb@4", "1g.10gb@0"])
    from blueprintd.facts.nvml import discover

    gpus = discover(fake).gpus
    assert [m.placement_start for m in gpus[0].mig_devices] == [0, 2, 4, 6]
    assert [(m.profile, m.placement_start) for m in gpus[1].mig_devices] == [
        ("4g.40gb", 0),
        ("2g.20gb", 4),
        ("1g.10gb", 6),
    ]
    assert [(m.profile, m.placement_start) for m in gpus[2].mig_devices] == [("1g.10gb", 0), ("3g.40gb", 4)]


def test_mig_on_a_non_mig_gpu_is_refused() -> None:
    with pytest.raises(FakeNvmlError, match="not MIG-capable"):
        FakeNvml.from_machine("l4-server").set_mig_layout(0, ["1g.6gb"])


def test_unknown_machine_and_bad_files(tmp_path: Path) -> None:
    with pytest.raises(FakeNvmlError, match="unknown fake machine"):
        FakeNvml.from_machine("dgx-z900")
    bad = tmp_path / "bad.yaml"
    bad.write_text("gpus: [{product: v200}]\n")
    with pytest.raises(FakeNvmlError, match="unknown product 'v200'"):
        FakeNvml.from_file(bad)
    bad.write_text("faults: {nvmlInit: NOT_A_CODE}\n")
    with pytest.raises(FakeNvmlError, match="unknown NVML error"):
        FakeNvml.from_machine(str(bad))


def test_machine_from_file(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(
        "driverVersion: '580.95.05'\ncudaDriverVersion: 13000\n"
        "gpus:\n  - product: a100-40gb\n    count: 2\n    minors: [3, 1]\n    migLayout: ['1g.5gb@6']\n"
        "  - product: l40s\n"
    )
    fake = FakeNvml.from_file(path)
    from blueprintd.facts.nvml import discover

    inv = discover(fake)
    assert (inv.driver_version, inv.cuda_driver_version) == ("580.95.05", "13.0")
    assert [(g.index, g.minor, g.product_name) for g in inv.gpus] == [
        (0, 3, "NVIDIA A100-SXM4-40GB"),
        (1, 1, "NVIDIA A100-SXM4-40GB"),
        (2, 2, "NVIDIA L40S"),
    ]
    assert [(m.profile, m.placement_start) for m in inv.gpus[0].mig_devices] == [("1g.5gb", 6)]


def test_every_bundled_machine_loads() -> None:
    names = FakeNvml.machines()
    assert {"dgx-h100", "dgx-h100-mig", "dgx-a100", "l4-server", "t4-node", "no-driver"} <= set(names)
    for name in names:
        assert FakeNvml.from_machine(name).description
