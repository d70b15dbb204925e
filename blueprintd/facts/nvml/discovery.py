"""Read one node's GPUs through NVML into a ``NodeGpuInventory``.

Used by the node agent (published on the Node), by the bundled DRA driver (turned into
ResourceSlices) and by ``blueprintd facts --local``. It must therefore be:

* **faithful to the names the ecosystem already uses**: architecture is GFD's lowercase family
  derived from the compute capability (``hopper``, ``ampere``, ``ada-lovelace``), brand is
  NVIDIA's DRA driver string (``Nvidia``, ``Tesla``), MIG profiles are NVML's own names
  (``1g.10gb``) with the GPU-instance profile id and placement the DRA driver puts in device
  names;
* **partial rather than fatal**: a GPU that fell off the bus, or a MIG device whose instance
  cannot be read, is reported in ``errors`` with ``partial=True`` while every other GPU is
  still described. Only "there is no usable driver at all" is an exception
  (``NvmlUnavailableError``), because then there is nothing to describe;
* **side-effect free**: it only reads, and it pairs every ``nvmlInit`` with ``nvmlShutdown``
  (NVML reference-counts these, so it is safe next to other NVML users in one process).
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable
from typing import TypeVar

from blueprintd.api.facts import GpuInfo, MigDeviceInfo, NodeGpuInventory
from blueprintd.facts.nvml.errors import (
    NVML_ERROR_FUNCTION_NOT_FOUND,
    NVML_ERROR_INVALID_ARGUMENT,
    NVML_ERROR_NOT_FOUND,
    NVML_ERROR_NOT_SUPPORTED,
    GpuLostError,
    NvmlCallError,
    NvmlError,
    from_nvml,
)
from blueprintd.facts.nvml.interface import (
    GPU_INSTANCE_PROFILE_COUNT,
    NVML_DEVICE_MIG_ENABLE,
    DeviceHandle,
    GpuInstanceProfileInfo,
    NvmlLibrary,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

MIB = 1 << 20

#: Return codes meaning "this query does not apply here" rather than "something is wrong".
_ABSENT = frozenset({NVML_ERROR_NOT_SUPPORTED, NVML_ERROR_FUNCTION_NOT_FOUND})

#: ``nvmlBrandType_t`` -> the string NVIDIA's DRA driver publishes as the ``brand`` attribute.
BRANDS: dict[int, str] = {
    0: "Unknown", 1: "Quadro", 2: "Tesla", 3: "NVS", 4: "Grid", 5: "GeForce", 6: "Titan",
    7: "NvidiaVApps", 8: "NvidiaVPC", 9: "NvidiaVCS", 10: "NvidiaVWS", 11: "NvidiaCloudGaming",
    12: "QuadroRTX", 13: "NvidiaRTX", 14: "Nvidia", 15: "GeForceRTX", 16: "TitanRTX",
}

#: ``nvmlDeviceArchitecture_t`` -> GFD family; only used when the compute capability is unknown.
NVML_ARCHITECTURES: dict[int, str] = {
    2: "kepler", 3: "maxwell", 4: "pascal", 5: "volta", 6: "turing", 7: "ampere",
    8: "ada-lovelace", 9: "hopper", 10: "blackwell",
}


def architecture_family(major: int, minor: int) -> str:
    """GPU Feature Discovery's ``nvidia.com/gpu.family`` for a CUDA compute capability.

    GFD derives the family from the compute capability rather than NVML's architecture enum,
    so two nodes only agree on ``gpu.family`` if everyone uses this mapping.
    """
    if major == 7:
        return "volta" if minor < 5 else "turing"
    if major == 8:
        return "ampere" if minor < 9 else "ada-lovelace"
    return {1: "tesla", 2: "fermi", 3: "kepler", 5: "maxwell", 6: "pascal", 9: "hopper",
            10: "blackwell", 11: "blackwell", 12: "blackwell"}.get(major, "undefined")


def cuda_version_string(raw: int) -> str:
    """NVML's integer CUDA driver version (``12040``) as ``major.minor`` (``12.4``)."""
    return f"{raw // 1000}.{(raw % 1000) // 10}"


def mig_memory_gb(mig_memory_mb: int, gpu_memory_bytes: int) -> int:
    """The ``Ngb`` part of a MIG profile name, computed the way NVIDIA's tooling does.

    A MIG instance's memory is a fraction of the GPU's in eighths; rounding that fraction up
    to the next eighth and scaling by the GPU's size in GB gives the marketing number
    (9856 MiB of an 80 GB H100 -> 10gb), not the raw MiB.
    """
    total_mb = gpu_memory_bytes / MIB
    if total_mb <= 0:
        return round(mig_memory_mb / 1024)
    fraction = math.ceil(mig_memory_mb / total_mb * 8) / 8
    return round(fraction * math.ceil(total_mb / 1024))


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


class _Reader:
    """One discovery pass: wraps calls so every failure names the call and the subject."""

    def __init__(self, nvml: NvmlLibrary) -> None:
        self.nvml = nvml
        self.errors: list[str] = []

    def call(self, name: str, fn: Callable[[], T], subject: str = "") -> T:
        try:
            return fn()
        except self.nvml.NVMLError as exc:
            raise from_nvml(exc, call=name, subject=subject) from exc

    def optional(self, name: str, fn: Callable[[], T], subject: str = "") -> T | None:
        """Like ``call`` but "not supported on this GPU / driver" is an answer, not an error."""
        try:
            return self.call(name, fn, subject)
        except NvmlError as err:
            if err.code in _ABSENT:
                return None
            raise

    # --- system -------------------------------------------------------------------------

    def driver_version(self) -> str:
        try:
            return self.call("nvmlSystemGetDriverVersion", self.nvml.nvmlSystemGetDriverVersion, "driver")
        except NvmlError as err:
            self.errors.append(str(err))
            return ""

    def cuda_driver_version(self) -> str:
        try:
            raw = self.optional(
                "nvmlSystemGetCudaDriverVersion_v2", self.nvml.nvmlSystemGetCudaDriverVersion_v2, "driver"
            )
            if raw is None:  # drivers older than the _v2 entry point
                raw = self.call(
                    "nvmlSystemGetCudaDriverVersion", self.nvml.nvmlSystemGetCudaDriverVersion, "driver"
                )
        except NvmlError as err:
            self.errors.append(str(err))
            return ""
        return cuda_version_string(raw)

    # --- GPUs ---------------------------------------------------------------------------

    def gpu(self, index: int) -> GpuInfo:
        nvml = self.nvml
        subject = f"GPU {index}"
        handle = self.call(
            "nvmlDeviceGetHandleByIndex", functools.partial(nvml.nvmlDeviceGetHandleByIndex, index), subject
        )
        pci = self.optional("nvmlDeviceGetPciInfo", lambda: nvml.nvmlDeviceGetPciInfo(handle), subject)
        bus_id = _text(pci.busId) if pci is not None else ""
        if bus_id:
            subject = f"GPU {index} ({bus_id})"
        name = self.call("nvmlDeviceGetName", lambda: nvml.nvmlDeviceGetName(handle), subject)
        uuid = self.call("nvmlDeviceGetUUID", lambda: nvml.nvmlDeviceGetUUID(handle), subject)
        minor = self.call("nvmlDeviceGetMinorNumber", lambda: nvml.nvmlDeviceGetMinorNumber(handle), subject)
        memory = self.optional(
            "nvmlDeviceGetMemoryInfo", lambda: nvml.nvmlDeviceGetMemoryInfo(handle), subject
        )
        cc = self.optional(
            "nvmlDeviceGetCudaComputeCapability",
            lambda: nvml.nvmlDeviceGetCudaComputeCapability(handle),
            subject,
        )
        brand = self.optional("nvmlDeviceGetBrand", lambda: nvml.nvmlDeviceGetBrand(handle), subject)
        arch = self.optional(
            "nvmlDeviceGetArchitecture", lambda: nvml.nvmlDeviceGetArchitecture(handle), subject
        )
        mig_mode = self.optional("nvmlDeviceGetMigMode", lambda: nvml.nvmlDeviceGetMigMode(handle), subject)

        if cc is not None:
            architecture = architecture_family(cc[0], cc[1])
        else:
            architecture = NVML_ARCHITECTURES.get(arch, "") if arch is not None else ""
        mig_current = mig_mode is not None and len(mig_mode) > 0 and mig_mode[0] == NVML_DEVICE_MIG_ENABLE
        mig_pending = mig_mode is not None and len(mig_mode) > 1 and mig_mode[1] != mig_mode[0]
        memory_bytes = int(memory.total) if memory is not None else 0

        gpu = GpuInfo(
            index=index,
            minor=minor,
            uuid=uuid,
            product_name=name,
            brand=BRANDS.get(brand, "") if brand is not None else "",
            architecture=architecture,
            memory_bytes=memory_bytes,
            compute_capability=f"{cc[0]}.{cc[1]}" if cc is not None else "",
            pci_bus_id=bus_id,
            pci_device_id=f"0x{pci.pciDeviceId:08X}" if pci is not None else "",
            mig_capable=mig_mode is not None,
            mig_enabled=mig_current,
            mig_pending=mig_pending,
        )
        if mig_current:
            gpu.mig_devices = self.mig_devices(handle, memory_bytes, subject)
        return gpu

    # --- MIG ----------------------------------------------------------------------------

    def gi_profiles(self, handle: DeviceHandle, subject: str) -> dict[int, GpuInstanceProfileInfo]:
        """GPU-instance profile id -> profile info, walking NVML's profile *indexes*.

        A GPU instance reports only its profile *id*; the name, engine counts and memory come
        from the profile, and NVML offers no id -> profile lookup on every driver, so the
        table is built by asking for every profile index and keeping the ones that exist.
        """
        nvml = self.nvml
        profiles: dict[int, GpuInstanceProfileInfo] = {}
        for index in range(GPU_INSTANCE_PROFILE_COUNT):
            try:
                info = self.call(
                    "nvmlDeviceGetGpuInstanceProfileInfo",
                    functools.partial(nvml.nvmlDeviceGetGpuInstanceProfileInfo, handle, index),
                    subject,
                )
            except NvmlError as err:
                if err.code == NVML_ERROR_FUNCTION_NOT_FOUND:  # driver without the v2 struct
                    try:
                        info = self.call(
                            "nvmlDeviceGetGpuInstanceProfileInfo",
                            functools.partial(nvml.nvmlDeviceGetGpuInstanceProfileInfo, handle, index, 1),
                            subject,
                        )
                    except NvmlError as err1:
                        if err1.code in (NVML_ERROR_NOT_SUPPORTED, NVML_ERROR_INVALID_ARGUMENT):
                            continue
                        raise
                elif err.code in (NVML_ERROR_NOT_SUPPORTED, NVML_ERROR_INVALID_ARGUMENT):
                    continue
                else:
                    raise
            profiles[int(info.id)] = info
        return profiles

    def mig_devices(self, handle: DeviceHandle, gpu_memory_bytes: int, subject: str) -> list[MigDeviceInfo]:
        nvml = self.nvml
        try:
            slots = self.call(
                "nvmlDeviceGetMaxMigDeviceCount", lambda: nvml.nvmlDeviceGetMaxMigDeviceCount(handle), subject
            )
            profiles = self.gi_profiles(handle, subject)
        except GpuLostError:
            raise
        except NvmlError as err:
            self.errors.append(str(err))
            return []
        devices: list[MigDeviceInfo] = []
        for slot in range(slots):
            try:
                mig = self.call(
                    "nvmlDeviceGetMigDeviceHandleByIndex",
                    functools.partial(nvml.nvmlDeviceGetMigDeviceHandleByIndex, handle, slot),
                    subject,
                )
            except NvmlError as err:
                if err.code in (NVML_ERROR_NOT_FOUND, NVML_ERROR_INVALID_ARGUMENT):
                    continue  # an empty slot: fewer MIG devices than the maximum
                if isinstance(err, GpuLostError):
                    raise
                self.errors.append(str(err))
                continue
            try:
                devices.append(
                    self.mig_device(handle, mig, profiles, gpu_memory_bytes, f"{subject} MIG device {slot}")
                )
            except GpuLostError:
                raise
            except NvmlError as err:
                self.errors.append(str(err))
        devices.sort(key=lambda d: (d.placement_start, d.gi_profile_id, d.uuid))
        return devices

    def mig_device(
        self,
        parent: DeviceHandle,
        mig: DeviceHandle,
        profiles: dict[int, GpuInstanceProfileInfo],
        gpu_memory_bytes: int,
        subject: str,
    ) -> MigDeviceInfo:
        nvml = self.nvml
        uuid = self.call("nvmlDeviceGetUUID", lambda: nvml.nvmlDeviceGetUUID(mig), subject)
        gi_id = self.call("nvmlDeviceGetGpuInstanceId", lambda: nvml.nvmlDeviceGetGpuInstanceId(mig), subject)
        gi = self.call(
            "nvmlDeviceGetGpuInstanceById", lambda: nvml.nvmlDeviceGetGpuInstanceById(parent, gi_id), subject
        )
        info = self.call("nvmlGpuInstanceGetInfo", lambda: nvml.nvmlGpuInstanceGetInfo(gi), subject)
        attrs = self.optional("nvmlDeviceGetAttributes", lambda: nvml.nvmlDeviceGetAttributes(mig), subject)
        profile = profiles.get(int(info.profileId))
        if profile is not None:
            slices, memory_mb, multiprocessors = (
                profile.sliceCount, profile.memorySizeMB, profile.multiprocessorCount
            )
        elif attrs is not None:
            slices, memory_mb, multiprocessors = (
                attrs.gpuInstanceSliceCount, attrs.memorySizeMB, attrs.multiprocessorCount
            )
        else:
            raise NvmlCallError(
                f"{subject}: GPU instance profile id {info.profileId} is not known to the driver"
            )
        if attrs is not None:  # the compute instance's own SM count (smaller when a GI is split)
            multiprocessors = attrs.multiprocessorCount

        name = _text(getattr(profile, "name", b"") or b"").strip().removeprefix("MIG ").strip()
        if not name:  # v1 profile struct (no name) or unknown profile: derive it like NVIDIA does
            name = f"{slices}g.{mig_memory_gb(memory_mb, gpu_memory_bytes)}gb"
        if attrs is not None and 0 < attrs.computeInstanceSliceCount < attrs.gpuInstanceSliceCount:
            # A compute instance smaller than its GPU instance: NVIDIA names it "<c>c.<gi profile>".
            name = f"{attrs.computeInstanceSliceCount}c.{name}"

        return MigDeviceInfo(
            uuid=uuid,
            profile=name,
            gi_profile_id=int(info.profileId),
            placement_start=int(info.placement.start),
            placement_size=int(info.placement.size),
            memory_bytes=int(memory_mb) * MIB,
            multiprocessors=int(multiprocessors),
            copy_engines=int(profile.copyEngineCount) if profile is not None else 0,
            decoders=int(profile.decoderCount) if profile is not None else 0,
            encoders=int(profile.encoderCount) if profile is not None else 0,
            jpeg_engines=int(profile.jpegCount) if profile is not None else 0,
            ofa_engines=int(profile.ofaCount) if profile is not None else 0,
        )


def discover(
    nvml: NvmlLibrary, node_name: str = "", *, raise_on_unavailable: bool = True
) -> NodeGpuInventory:
    """Describe every GPU NVML can see.

    ``nvml`` is the real ``pynvml`` module (``blueprintd.facts.nvml.real.load()``) or a
    ``FakeNvml``. When NVML cannot even start (no driver, no permission) this raises the typed
    error (``NvmlUnavailableError`` / ``NvmlPermissionError``), or with
    ``raise_on_unavailable=False`` returns an empty ``partial`` inventory carrying the
    message, which is what a long-running agent wants to publish. Any later failure only
    makes the result ``partial``: unreadable GPUs are left out and named in ``errors``.
    """
    reader = _Reader(nvml)
    try:
        reader.call("nvmlInit", nvml.nvmlInit)
    except NvmlError as err:
        if raise_on_unavailable:
            raise
        return NodeGpuInventory(node_name=node_name, partial=True, errors=[str(err)])
    try:
        inventory = NodeGpuInventory(node_name=node_name)
        inventory.driver_version = reader.driver_version()
        inventory.cuda_driver_version = reader.cuda_driver_version()
        try:
            count = reader.call("nvmlDeviceGetCount", nvml.nvmlDeviceGetCount, "driver")
        except NvmlError as err:
            reader.errors.append(str(err))
            count = 0
        inventory.device_count = count
        for index in range(count):
            try:
                inventory.gpus.append(reader.gpu(index))
            except NvmlError as err:
                log.debug("GPU %d left out of the inventory: %s", index, err)
                reader.errors.append(str(err))
        inventory.errors = reader.errors
        inventory.partial = bool(reader.errors)
        return inventory
    finally:
        try:
            nvml.nvmlShutdown()
        except nvml.NVMLError as exc:  # nothing useful to do; the next init starts afresh
            log.debug("nvmlShutdown failed: %s", exc)
