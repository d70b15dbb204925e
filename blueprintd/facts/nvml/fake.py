"""A fake NVML: the pynvml calls discovery uses, answered from a machine description.

Tests of discovery, the node agent and the DRA driver need GPUs on machines that have none.
``FakeNvml`` is a module-like object with the *same* function names, argument names, return
types (struct-like objects with pynvml's field names, ``bytes`` where pynvml returns
``bytes``) and errors (the real ``pynvml.NVMLError`` subclasses, so ``except
pynvml.NVMLError_GpuIsLost`` works against it) as nvidia-ml-py. Machines are YAML files in
``machines/`` shaped like real systems (DGX H100/A100, L4 and T4 servers) with the real MIG
GPU-instance profile ids and placements.

It is also a *simulator*: ``set_mig_layout`` / ``set_mig_mode`` / ``reset_gpu`` change the
MIG configuration at runtime the way MIG manager would, and ``inject_fault`` / ``lose_gpu``
make calls fail with chosen NVML return codes, so callers can be tested against a machine
that changes or breaks underneath them.

Machine file format (camelCase, every key but ``gpus`` optional)::

    description: NVIDIA DGX H100, MIG disabled
    driverVersion: "550.54.15"
    cudaDriverVersion: 12040          # NVML's integer form (12.4)
    gpus:                             # groups of identical GPUs, indexes assigned in order
      - product: h100-80gb            # a key of FAKE_PRODUCTS
        count: 8
        busIds: ["00000000:18:00.0", ...]
        minors: [0, 1, ...]           # default: the index
        migEnabled: true
        migLayout: ["1g.10gb", ...]   # per GPU; "1g.10gb@3" pins a placement start
    faults: {nvmlInit: DRIVER_NOT_LOADED}        # call -> NVML error, any handle
    gpuFaults: {"5": {"*": GPU_IS_LOST}}         # GPU index -> call ("*" = all) -> error
"""

from __future__ import annotations

import threading
import uuid as uuidlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import pynvml
import yaml

from blueprintd.errors import ValidationError
from blueprintd.facts import catalog
from blueprintd.facts.nvml.errors import (
    ERROR_CODES,
    NVML_ERROR_FUNCTION_NOT_FOUND,
    NVML_ERROR_GPU_IS_LOST,
    NVML_ERROR_INVALID_ARGUMENT,
    NVML_ERROR_NOT_FOUND,
    NVML_ERROR_NOT_SUPPORTED,
    NVML_ERROR_UNINITIALIZED,
)
from blueprintd.facts.nvml.interface import GPU_INSTANCE_PROFILE_COUNT

MIB = 1 << 20
MAX_MIG_DEVICES = 7
_UUID_NAMESPACE = uuidlib.UUID("6f1c3bb4-3c55-4b1a-9d36-0c1f6b1f8a11")


# --- pynvml-shaped structs -------------------------------------------------------------


@dataclass(frozen=True)
class PciInfo:
    """``nvmlPciInfo_t``; ``busId`` is bytes like the ctypes ``char[]`` field."""

    busIdLegacy: bytes
    domain: int
    bus: int
    device: int
    pciDeviceId: int
    pciSubSystemId: int
    busId: bytes


@dataclass(frozen=True)
class Memory:
    """``c_nvmlMemory_t``."""

    total: int
    free: int
    used: int


@dataclass(frozen=True)
class GpuInstancePlacement:
    start: int
    size: int


@dataclass(frozen=True)
class GpuInstanceInfo:
    """``c_nvmlGpuInstanceInfo_t``."""

    device: object
    id: int
    profileId: int
    placement: GpuInstancePlacement


@dataclass(frozen=True)
class GpuInstanceProfileInfoV1:
    """``c_nvmlGpuInstanceProfileInfo_t`` (no name)."""

    id: int
    isP2pSupported: int
    sliceCount: int
    instanceCount: int
    multiprocessorCount: int
    copyEngineCount: int
    decoderCount: int
    encoderCount: int
    jpegCount: int
    ofaCount: int
    memorySizeMB: int


@dataclass(frozen=True)
class GpuInstanceProfileInfoV2(GpuInstanceProfileInfoV1):
    """``c_nvmlGpuInstanceProfileInfo_v2_t``: v1 plus ``version`` and ``name`` (bytes)."""

    version: int = 0x02000098
    name: bytes = b""


@dataclass(frozen=True)
class DeviceAttributes:
    """``c_nvmlDeviceAttributes``."""

    multiprocessorCount: int
    sharedCopyEngineCount: int
    sharedDecoderCount: int
    sharedEncoderCount: int
    sharedJpegCount: int
    sharedOfaCount: int
    gpuInstanceSliceCount: int
    computeInstanceSliceCount: int
    memorySizeMB: int


# --- products -------------------------------------------------------------------------


@dataclass(frozen=True)
class FakeGiProfile:
    """One GPU-instance profile as NVML describes it on a given product."""

    index: int  # NVML_GPU_INSTANCE_PROFILE_* (what nvmlDeviceGetGpuInstanceProfileInfo takes)
    id: int  # the profile id a GPU instance reports (19 for 1g.10gb on H100/A100)
    name: str
    slices: int  # compute slices (the "Ng")
    instances: int
    placements: tuple[int, ...]  # allowed memory-slice starts
    size: int  # memory slices occupied
    sms: int
    copy_engines: int
    decoders: int
    encoders: int
    jpeg: int
    ofa: int
    memory_mb: int


@dataclass(frozen=True)
class FakeProduct:
    key: str  # catalog key
    pci_device_id: int  # device << 16 | vendor, as nvmlPciInfo_t.pciDeviceId
    brand: int  # nvmlBrandType_t
    architecture: int  # nvmlDeviceArchitecture_t
    gi_profiles: tuple[FakeGiProfile, ...] = ()

    @property
    def info(self) -> catalog.GpuProduct:
        product = catalog.by_key(self.key)
        assert product is not None, self.key
        return product

    @property
    def memory_bytes(self) -> int:
        return self.info.memory_mib * MIB

    def profile(self, name: str) -> FakeGiProfile | None:
        return next((p for p in self.gi_profiles if p.name == name), None)


def _gi(*args: Any) -> FakeGiProfile:
    return FakeGiProfile(*args)


_ALL7 = (0, 1, 2, 3, 4, 5, 6)
# nvidia-smi mig -lgip / -lgipp on an H100 SXM5 80GB (driver 550).
_H100_PROFILES = (
    _gi(0, 19, "1g.10gb", 1, 7, _ALL7, 1, 16, 1, 1, 0, 1, 0, 9984),
    _gi(7, 20, "1g.10gb+me", 1, 1, _ALL7, 1, 16, 1, 7, 0, 7, 1, 9984),
    _gi(9, 15, "1g.20gb", 1, 4, (0, 2, 4, 6), 2, 26, 1, 1, 0, 1, 0, 20096),
    _gi(1, 14, "2g.20gb", 2, 3, (0, 2, 4), 2, 32, 2, 2, 0, 2, 0, 20096),
    _gi(2, 9, "3g.40gb", 3, 2, (0, 4), 4, 60, 3, 3, 0, 3, 0, 40448),
    _gi(3, 5, "4g.40gb", 4, 1, (0,), 4, 64, 4, 4, 0, 4, 0, 40448),
    _gi(4, 0, "7g.80gb", 7, 1, (0,), 8, 132, 8, 7, 0, 7, 1, 80896),
)
# ... and on an A100-SXM4-80GB (driver 535).
_A100_80_PROFILES = (
    _gi(0, 19, "1g.10gb", 1, 7, _ALL7, 1, 14, 1, 0, 0, 0, 0, 9728),
    _gi(7, 20, "1g.10gb+me", 1, 1, _ALL7, 1, 14, 1, 1, 0, 1, 1, 9728),
    _gi(9, 15, "1g.20gb", 1, 4, (0, 2, 4, 6), 2, 14, 1, 1, 0, 0, 0, 19968),
    _gi(1, 14, "2g.20gb", 2, 3, (0, 2, 4), 2, 28, 2, 1, 0, 0, 0, 19968),
    _gi(2, 9, "3g.40gb", 3, 2, (0, 4), 4, 42, 3, 2, 0, 0, 0, 40192),
    _gi(3, 5, "4g.40gb", 4, 1, (0,), 4, 56, 4, 2, 0, 0, 0, 40192),
    _gi(4, 0, "7g.80gb", 7, 1, (0,), 8, 98, 7, 5, 0, 1, 1, 80384),
)
_A100_40_PROFILES = (
    _gi(0, 19, "1g.5gb", 1, 7, _ALL7, 1, 14, 1, 0, 0, 0, 0, 4864),
    _gi(7, 20, "1g.5gb+me", 1, 1, _ALL7, 1, 14, 1, 1, 0, 1, 1, 4864),
    _gi(9, 15, "1g.10gb", 1, 4, (0, 2, 4, 6), 2, 14, 1, 1, 0, 0, 0, 9856),
    _gi(1, 14, "2g.10gb", 2, 3, (0, 2, 4), 2, 28, 2, 1, 0, 0, 0, 9856),
    _gi(2, 9, "3g.20gb", 3, 2, (0, 4), 4, 42, 3, 2, 0, 0, 0, 19968),
    _gi(3, 5, "4g.20gb", 4, 1, (0,), 4, 56, 4, 2, 0, 0, 0, 19968),
    _gi(4, 0, "7g.40gb", 7, 1, (0,), 8, 98, 7, 5, 0, 1, 1, 40192),
)

FAKE_PRODUCTS: dict[str, FakeProduct] = {
    p.key: p
    for p in (
        FakeProduct("h100-80gb", 0x233010DE, 14, 9, _H100_PROFILES),
        FakeProduct("a100-80gb", 0x20B210DE, 14, 7, _A100_80_PROFILES),
        FakeProduct("a100-40gb", 0x20B010DE, 14, 7, _A100_40_PROFILES),
        FakeProduct("l4", 0x27B810DE, 14, 8),
        FakeProduct("l40s", 0x26B910DE, 14, 8),
        FakeProduct("t4", 0x1EB810DE, 2, 6),
        FakeProduct("a10", 0x223610DE, 14, 7),
    )
}

#: GPU-instance id of the first instance of each placement size; NVML numbers GPU instances
#: by slot (on an H100 the seven 1g instances are GI 7..13, the two 3g are GI 1 and 2).
_GI_ID_BASE = {8: 0, 4: 1, 2: 3, 1: 7}


# --- machine state --------------------------------------------------------------------


@dataclass
class _GpuInstance:
    id: int
    profile: FakeGiProfile
    start: int
    uuid: str


@dataclass
class _Gpu:
    index: int
    minor: int
    uuid: str
    bus_id: str
    product: FakeProduct
    mig_current: bool = False
    mig_pending: bool = False
    instances: list[_GpuInstance] = field(default_factory=list)
    faults: dict[str, int] = field(default_factory=dict)

    @property
    def mig_capable(self) -> bool:
        return bool(self.product.gi_profiles)


@dataclass(frozen=True)
class _DeviceHandle:
    gpu: int

    def __repr__(self) -> str:
        return f"<fake nvmlDevice_t gpu={self.gpu}>"


@dataclass(frozen=True)
class _MigHandle:
    gpu: int
    gi: int
    uuid: str

    def __repr__(self) -> str:
        return f"<fake nvmlDevice_t mig gpu={self.gpu} gi={self.gi}>"


@dataclass(frozen=True)
class _GpuInstanceHandle:
    gpu: int
    gi: int


class FakeNvmlError(ValidationError):
    """A machine description or a requested reconfiguration is invalid."""


def _error(code: int) -> Exception:
    err: Exception = pynvml.NVMLError(code)
    return err


def _code(name: str | int, where: str) -> int:
    if isinstance(name, int):
        return name
    key = name.upper().removeprefix("NVML_ERROR_")
    if key not in ERROR_CODES:
        known = ", ".join(sorted(ERROR_CODES))
        raise FakeNvmlError(f"unknown NVML error {name!r}; one of {known}", path=where)
    return ERROR_CODES[key]


def _parse_profile(entry: str) -> tuple[str, int | None]:
    name, _, start = entry.partition("@")
    return name.strip(), int(start) if start.strip() else None


class FakeNvml:
    """Module-like stand-in for ``pynvml``; see the module docstring."""

    NVMLError = pynvml.NVMLError

    def __init__(
        self,
        gpus: Sequence[_Gpu] = (),
        *,
        name: str = "custom",
        description: str = "",
        driver_version: str = "550.54.15",
        cuda_driver_version: int = 12040,
        faults: Mapping[str, int] | None = None,
    ) -> None:
        self.name = name
        self.description = description
        self.driver_version = driver_version
        self.cuda_driver_version = cuda_driver_version
        self._gpus: list[_Gpu] = list(gpus)
        self._faults: dict[str, int] = dict(faults or {})
        self._init_count = 0
        self._lock = threading.RLock()
        #: How often each NVML function was called (for tests).
        self.calls: Counter[str] = Counter()

    # --- construction ---------------------------------------------------------------------

    @staticmethod
    def machines() -> list[str]:
        """Names of the bundled machine descriptions."""
        root = resources.files("blueprintd.facts.nvml") / "machines"
        return sorted(p.name.removesuffix(".yaml") for p in root.iterdir() if p.name.endswith(".yaml"))

    @classmethod
    def from_machine(cls, name: str) -> FakeNvml:
        """A bundled machine (``dgx-h100``, ``dgx-h100-mig``, ``l4-server`` …) or a YAML path."""
        if name.endswith((".yaml", ".yml")) or "/" in name:
            return cls.from_file(Path(name))
        resource = resources.files("blueprintd.facts.nvml") / "machines" / f"{name}.yaml"
        if not resource.is_file():
            raise FakeNvmlError(f"unknown fake machine {name!r}; bundled: {', '.join(cls.machines())}")
        return cls.from_dict(yaml.safe_load(resource.read_text()), name=name)

    @classmethod
    def from_file(cls, path: Path | str) -> FakeNvml:
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise FakeNvmlError(f"cannot read fake machine: {exc}", source=str(path)) from exc
        except yaml.YAMLError as exc:
            raise FakeNvmlError(f"not valid YAML: {exc}", source=str(path)) from exc
        return cls.from_dict(data, name=path.stem)

    @classmethod
    def from_dict(cls, data: Any, name: str = "custom") -> FakeNvml:
        if not isinstance(data, dict):
            raise FakeNvmlError("a fake machine must be a mapping", source=name)
        fake = cls(
            name=name,
            description=str(data.get("description", "")),
            driver_version=str(data.get("driverVersion", "550.54.15")),
            cuda_driver_version=int(data.get("cudaDriverVersion", 12040)),
            faults={k: _code(v, f"faults.{k}") for k, v in (data.get("faults") or {}).items()},
        )
        index = 0
        for g, group in enumerate(data.get("gpus") or []):
            where = f"gpus[{g}]"
            key = str(group.get("product", ""))
            product = FAKE_PRODUCTS.get(key)
            if product is None:
                raise FakeNvmlError(
                    f"unknown product {key!r}; one of {', '.join(sorted(FAKE_PRODUCTS))}",
                    path=where,
                    source=name,
                )
            count = int(group.get("count", 1))
            bus_ids = list(group.get("busIds") or [])
            minors = list(group.get("minors") or [])
            for i in range(count):
                bus = bus_ids[i] if i < len(bus_ids) else f"00000000:{0x10 + index:02X}:00.0"
                gpu = _Gpu(
                    index=index,
                    minor=int(minors[i]) if i < len(minors) else index,
                    uuid="GPU-" + str(uuidlib.uuid5(_UUID_NAMESPACE, f"{name}/{index}/{bus}")),
                    bus_id=bus,
                    product=product,
                )
                fake._gpus.append(gpu)
                if group.get("migEnabled") or group.get("migLayout"):
                    fake.set_mig_layout(index, list(group.get("migLayout") or []))
                index += 1
        for raw_index, calls in (data.get("gpuFaults") or {}).items():
            gpu_index = int(raw_index)
            for call, err in (calls or {}).items():
                fake.inject_fault(call, _code(err, f"gpuFaults.{raw_index}.{call}"), gpu=gpu_index)
        return fake

    # --- simulation controls -------------------------------------------------------------

    @property
    def gpu_count(self) -> int:
        return len(self._gpus)

    @property
    def initialized(self) -> bool:
        return self._init_count > 0

    def _gpu_at(self, index: int) -> _Gpu:
        if not 0 <= index < len(self._gpus):
            raise FakeNvmlError(f"{self.name} has no GPU {index} (it has {len(self._gpus)})")
        return self._gpus[index]

    def _targets(self, gpu: int | Iterable[int] | None) -> list[_Gpu]:
        if gpu is None:
            return [g for g in self._gpus if g.mig_capable]
        indexes = [gpu] if isinstance(gpu, int) else list(gpu)
        return [self._gpu_at(i) for i in indexes]

    def set_mig_mode(self, gpu: int | Iterable[int] | None, enabled: bool, *, pending: bool = False) -> None:
        """Turn MIG mode on or off (``gpu=None``: every MIG-capable GPU).

        With ``pending=True`` the change waits for ``reset_gpu`` like on a GPU with running
        processes: NVML then reports current != pending mode. Turning MIG off destroys the
        GPU's instances.
        """
        with self._lock:
            for g in self._targets(gpu):
                if not g.mig_capable:
                    raise FakeNvmlError(f"GPU {g.index} ({g.product.info.nvml_name}) is not MIG-capable")
                g.mig_pending = enabled
                if not pending:
                    self._apply_mode(g)

    def reset_gpu(self, gpu: int | Iterable[int] | None = None) -> None:
        """Apply a pending MIG mode change (what a GPU reset or reboot does)."""
        with self._lock:
            for g in self._targets(gpu):
                self._apply_mode(g)

    @staticmethod
    def _apply_mode(g: _Gpu) -> None:
        g.mig_current = g.mig_pending
        if not g.mig_current:
            g.instances.clear()

    def set_mig_layout(self, gpu: int | Iterable[int] | None, profiles: Sequence[str]) -> None:
        """Replace the GPU's MIG devices with ``profiles`` (enabling MIG mode), like
        mig-parted applying a config. ``["1g.10gb"] * 7`` gives placements 0..6;
        ``"3g.40gb@4"`` pins a placement start. An empty list leaves MIG on with no devices.
        Raises ``FakeNvmlError`` when the profiles do not fit the GPU."""
        with self._lock:
            for g in self._targets(gpu):
                if not g.mig_capable:
                    raise FakeNvmlError(f"GPU {g.index} ({g.product.info.nvml_name}) is not MIG-capable")
                placed = self._place(g, profiles)
                g.mig_current = g.mig_pending = True
                g.instances = placed

    def _place(self, g: _Gpu, entries: Sequence[str]) -> list[_GpuInstance]:
        wanted: list[tuple[FakeGiProfile, int | None]] = []
        for entry in entries:
            name, start = _parse_profile(entry)
            profile = g.product.profile(name)
            if profile is None:
                known = ", ".join(p.name for p in g.product.gi_profiles)
                raise FakeNvmlError(
                    f"GPU {g.index}: no MIG profile {name!r} on {g.product.key} (known: {known})"
                )
            if start is not None and start not in profile.placements:
                raise FakeNvmlError(
                    f"GPU {g.index}: {name} cannot start at {start} (allowed {profile.placements})"
                )
            wanted.append((profile, start))
        # Largest first, each trying the highest free start: the order NVML itself fills a GPU,
        # and with backtracking every layout mig-parted accepts fits.
        order = sorted(range(len(wanted)), key=lambda i: (-wanted[i][0].size, i))
        chosen: dict[int, int] = {}

        def fits(i: int, start: int, used: set[int]) -> bool:
            return not used.intersection(range(start, start + wanted[i][0].size))

        def solve(k: int, used: set[int]) -> bool:
            if k == len(order):
                return True
            i = order[k]
            profile, pinned = wanted[i]
            for start in ([pinned] if pinned is not None else sorted(profile.placements, reverse=True)):
                if fits(i, start, used):
                    chosen[i] = start
                    if solve(k + 1, used | set(range(start, start + profile.size))):
                        return True
            return False

        counts = Counter(p.name for p, _ in wanted)
        for pname, n in counts.items():
            profile = g.product.profile(pname)
            if profile is not None and n > profile.instances:
                raise FakeNvmlError(f"GPU {g.index}: at most {profile.instances} x {pname}, asked for {n}")
        if not solve(0, set()):
            raise FakeNvmlError(f"GPU {g.index}: MIG layout {list(entries)} does not fit a {g.product.key}")
        instances = []
        for i, (profile, _) in enumerate(wanted):
            start = chosen[i]
            gi_id = _GI_ID_BASE[profile.size] + start // profile.size
            mig_uuid = "MIG-" + str(uuidlib.uuid5(_UUID_NAMESPACE, f"{g.uuid}/{gi_id}/{profile.id}/{start}"))
            instances.append(_GpuInstance(gi_id, profile, start, mig_uuid))
        instances.sort(key=lambda inst: inst.start)
        return instances

    def inject_fault(self, call: str, error: str | int, *, gpu: int | None = None) -> None:
        """Make ``call`` (a pynvml function name, or ``"*"`` with ``gpu``) raise ``error``
        (``"GPU_IS_LOST"``, ``"NO_PERMISSION"``, … or the numeric code)."""
        code = _code(error, call)
        with self._lock:
            if gpu is None:
                self._faults[call] = code
            else:
                self._gpu_at(gpu).faults[call] = code

    def lose_gpu(self, gpu: int) -> None:
        """The GPU falls off the bus: every call touching it raises ``GPU_IS_LOST``."""
        self.inject_fault("*", NVML_ERROR_GPU_IS_LOST, gpu=gpu)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            for g in self._gpus:
                g.faults.clear()

    # --- helpers --------------------------------------------------------------------------

    def _enter(self, call: str, gpu: _Gpu | None = None) -> None:
        """Bookkeeping and fault injection shared by every NVML call."""
        self.calls[call] += 1
        if call in self._faults:
            raise _error(self._faults[call])
        if call != "nvmlInit" and self._init_count == 0:
            raise _error(NVML_ERROR_UNINITIALIZED)
        if gpu is not None:
            code = gpu.faults.get(call, gpu.faults.get("*"))
            if code is not None:
                raise _error(code)

    def _device(self, call: str, handle: object) -> _Gpu:
        if isinstance(handle, _DeviceHandle | _MigHandle | _GpuInstanceHandle) and (
            0 <= handle.gpu < len(self._gpus)
        ):
            gpu = self._gpus[handle.gpu]
            self._enter(call, gpu)
            return gpu
        self._enter(call)
        raise _error(NVML_ERROR_INVALID_ARGUMENT)

    def _full_gpu(self, call: str, handle: object) -> _Gpu:
        gpu = self._device(call, handle)
        if not isinstance(handle, _DeviceHandle):
            raise _error(NVML_ERROR_INVALID_ARGUMENT)
        return gpu

    @staticmethod
    def _instance(gpu: _Gpu, gi_id: int) -> _GpuInstance:
        for inst in gpu.instances:
            if inst.id == gi_id:
                return inst
        raise _error(NVML_ERROR_NOT_FOUND)

    def _mig(self, gpu: _Gpu, handle: _MigHandle) -> _GpuInstance:
        for inst in gpu.instances:
            if inst.id == handle.gi and inst.uuid == handle.uuid:
                return inst
        raise _error(NVML_ERROR_INVALID_ARGUMENT)  # the MIG device was destroyed meanwhile

    # --- the pynvml API (names and signatures as in nvidia-ml-py) ----------------------------

    def nvmlInit(self) -> None:
        with self._lock:
            self._enter("nvmlInit")
            self._init_count += 1

    def nvmlShutdown(self) -> None:
        with self._lock:
            self._enter("nvmlShutdown")
            self._init_count -= 1

    def nvmlSystemGetDriverVersion(self) -> str:
        with self._lock:
            self._enter("nvmlSystemGetDriverVersion")
            return self.driver_version

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        with self._lock:
            self._enter("nvmlSystemGetCudaDriverVersion")
            return self.cuda_driver_version

    def nvmlSystemGetCudaDriverVersion_v2(self) -> int:
        with self._lock:
            self._enter("nvmlSystemGetCudaDriverVersion_v2")
            return self.cuda_driver_version

    def nvmlDeviceGetCount(self) -> int:
        with self._lock:
            self._enter("nvmlDeviceGetCount")
            return len(self._gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> object:
        with self._lock:
            if not 0 <= index < len(self._gpus):
                self._enter("nvmlDeviceGetHandleByIndex")
                raise _error(NVML_ERROR_INVALID_ARGUMENT)
            self._enter("nvmlDeviceGetHandleByIndex", self._gpus[index])
            return _DeviceHandle(index)

    def nvmlDeviceGetName(self, handle: object) -> str:
        with self._lock:
            gpu = self._device("nvmlDeviceGetName", handle)
            if isinstance(handle, _MigHandle):
                return f"{gpu.product.info.nvml_name} MIG {self._mig(gpu, handle).profile.name}"
            return gpu.product.info.nvml_name

    def nvmlDeviceGetUUID(self, handle: object) -> str:
        with self._lock:
            gpu = self._device("nvmlDeviceGetUUID", handle)
            if isinstance(handle, _MigHandle):
                return self._mig(gpu, handle).uuid
            return gpu.uuid

    def nvmlDeviceGetMinorNumber(self, handle: object) -> int:
        with self._lock:
            return self._full_gpu("nvmlDeviceGetMinorNumber", handle).minor

    def nvmlDeviceGetBrand(self, handle: object) -> int:
        with self._lock:
            return self._device("nvmlDeviceGetBrand", handle).product.brand

    def nvmlDeviceGetArchitecture(self, device: object) -> int:
        with self._lock:
            return self._device("nvmlDeviceGetArchitecture", device).product.architecture

    def nvmlDeviceGetMemoryInfo(self, handle: object, version: int | None = None) -> Memory:
        with self._lock:
            gpu = self._device("nvmlDeviceGetMemoryInfo", handle)
            if isinstance(handle, _MigHandle):
                total = self._mig(gpu, handle).profile.memory_mb * MIB
            else:
                total = gpu.product.memory_bytes
            used = min(total, 600 * MIB)  # the driver's own reservation on an idle GPU
            return Memory(total=total, free=total - used, used=used)

    def nvmlDeviceGetCudaComputeCapability(self, handle: object) -> tuple[int, int]:
        with self._lock:
            major, minor = self._device("nvmlDeviceGetCudaComputeCapability", handle).product.info \
                .compute_capability.split(".")
            return int(major), int(minor)

    def nvmlDeviceGetPciInfo(self, handle: object) -> PciInfo:
        with self._lock:
            gpu = self._full_gpu("nvmlDeviceGetPciInfo", handle)
            domain, bus, rest = gpu.bus_id.split(":")
            device = rest.split(".")[0]
            legacy = f"{int(domain, 16) & 0xFFFF:04X}:{bus}:{rest}".encode()
            return PciInfo(
                busIdLegacy=legacy,
                domain=int(domain, 16),
                bus=int(bus, 16),
                device=int(device, 16),
                pciDeviceId=gpu.product.pci_device_id,
                pciSubSystemId=0x16C110DE,
                busId=gpu.bus_id.encode(),
            )

    def nvmlDeviceGetMigMode(self, device: object) -> list[int]:
        with self._lock:
            gpu = self._full_gpu("nvmlDeviceGetMigMode", device)
            if not gpu.mig_capable:
                raise _error(NVML_ERROR_NOT_SUPPORTED)
            return [int(gpu.mig_current), int(gpu.mig_pending)]

    def nvmlDeviceGetMaxMigDeviceCount(self, device: object) -> int:
        with self._lock:
            gpu = self._full_gpu("nvmlDeviceGetMaxMigDeviceCount", device)
            return MAX_MIG_DEVICES if gpu.mig_capable else 0

    def nvmlDeviceGetMigDeviceHandleByIndex(self, device: object, index: int) -> object:
        with self._lock:
            gpu = self._full_gpu("nvmlDeviceGetMigDeviceHandleByIndex", device)
            if not gpu.mig_capable or not gpu.mig_current or not 0 <= index < MAX_MIG_DEVICES:
                raise _error(NVML_ERROR_INVALID_ARGUMENT)
            if index >= len(gpu.instances):
                raise _error(NVML_ERROR_NOT_FOUND)
            inst = gpu.instances[index]
            return _MigHandle(gpu.index, inst.id, inst.uuid)

    def nvmlDeviceGetGpuInstanceId(self, device: object) -> int:
        with self._lock:
            gpu = self._device("nvmlDeviceGetGpuInstanceId", device)
            if not isinstance(device, _MigHandle):
                raise _error(NVML_ERROR_NOT_SUPPORTED)
            return self._mig(gpu, device).id

    def nvmlDeviceGetGpuInstanceById(self, device: object, gpuInstanceId: int) -> object:
        with self._lock:
            gpu = self._full_gpu("nvmlDeviceGetGpuInstanceById", device)
            if not gpu.mig_current:
                raise _error(NVML_ERROR_NOT_SUPPORTED)
            return _GpuInstanceHandle(gpu.index, self._instance(gpu, gpuInstanceId).id)

    def nvmlGpuInstanceGetInfo(self, gpuInstance: object) -> GpuInstanceInfo:
        with self._lock:
            gpu = self._device("nvmlGpuInstanceGetInfo", gpuInstance)
            if not isinstance(gpuInstance, _GpuInstanceHandle):
                raise _error(NVML_ERROR_INVALID_ARGUMENT)
            inst = self._instance(gpu, gpuInstance.gi)
            return GpuInstanceInfo(
                device=_DeviceHandle(gpu.index),
                id=inst.id,
                profileId=inst.profile.id,
                placement=GpuInstancePlacement(start=inst.start, size=inst.profile.size),
            )

    def nvmlDeviceGetGpuInstanceProfileInfo(
        self, device: object, profile: int, version: int = 2
    ) -> GpuInstanceProfileInfoV1:
        with self._lock:
            gpu = self._full_gpu("nvmlDeviceGetGpuInstanceProfileInfo", device)
            if version not in (1, 2):
                raise _error(NVML_ERROR_FUNCTION_NOT_FOUND)
            if not 0 <= profile < GPU_INSTANCE_PROFILE_COUNT:
                raise _error(NVML_ERROR_INVALID_ARGUMENT)
            p = next((p for p in gpu.product.gi_profiles if p.index == profile), None)
            if p is None:
                raise _error(NVML_ERROR_NOT_SUPPORTED)
            fields: dict[str, Any] = {
                "id": p.id, "isP2pSupported": 0, "sliceCount": p.slices, "instanceCount": p.instances,
                "multiprocessorCount": p.sms, "copyEngineCount": p.copy_engines, "decoderCount": p.decoders,
                "encoderCount": p.encoders, "jpegCount": p.jpeg, "ofaCount": p.ofa,
                "memorySizeMB": p.memory_mb,
            }
            if version == 1:
                return GpuInstanceProfileInfoV1(**fields)
            return GpuInstanceProfileInfoV2(**fields, name=f"MIG {p.name}".encode())

    def nvmlDeviceGetAttributes(self, device: object) -> DeviceAttributes:
        with self._lock:
            gpu = self._device("nvmlDeviceGetAttributes", device)
            if not isinstance(device, _MigHandle):
                raise _error(NVML_ERROR_NOT_SUPPORTED)
            p = self._mig(gpu, device).profile
            return DeviceAttributes(
                multiprocessorCount=p.sms,
                sharedCopyEngineCount=p.copy_engines,
                sharedDecoderCount=p.decoders,
                sharedEncoderCount=p.encoders,
                sharedJpegCount=p.jpeg,
                sharedOfaCount=p.ofa,
                gpuInstanceSliceCount=p.slices,
                computeInstanceSliceCount=p.slices,
                memorySizeMB=p.memory_mb,
            )

    # Constants and error classes (NVML_*, NVMLError_*) come from the real bindings so code
    # written against ``pynvml`` finds them on the fake too. Functions are never delegated:
    # a call the fake does not implement must fail loudly, not reach for a real driver.
    def __getattr__(self, name: str) -> Any:
        if name.startswith(("NVML_", "NVMLError_")):
            return getattr(pynvml, name)
        raise AttributeError(f"FakeNvml does not implement {name!r}")

    def __repr__(self) -> str:
        return f"<FakeNvml {self.name}: {len(self._gpus)} GPU(s)>"
