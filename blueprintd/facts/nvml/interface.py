"""The exact slice of the pynvml API that discovery uses, as a typing Protocol.

Discovery talks to NVML only through ``NvmlLibrary``. Two things satisfy it unchanged: the
real ``pynvml`` module (nvidia-ml-py) and ``blueprintd.facts.nvml.fake.FakeNvml``. Keeping
the surface this small is what makes the fake trustworthy: every call it has to imitate is
listed here, with the argument names, return types and struct field names of
nvidia-ml-py 12/13 (read from its source, not guessed).

Notes on the real bindings that shaped these types:

* string getters (``nvmlDeviceGetName``, ``nvmlDeviceGetUUID``,
  ``nvmlSystemGetDriverVersion``) return ``str`` (pynvml decodes them), but ``char[]`` fields
  inside returned structs (``nvmlPciInfo_t.busId``, the v2 GPU-instance profile ``name``)
  are ``bytes``;
* handles are opaque ctypes pointers: only ever passed back into other calls;
* ``nvmlDeviceGetMigMode`` returns ``[current, pending]``, ``nvmlDeviceGetCudaComputeCapability``
  returns ``(major, minor)``;
* failures raise ``NVMLError`` subclasses carrying the return code in ``.value``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

#: Opaque handles (ctypes pointers in pynvml): never inspected, only passed back.
DeviceHandle = object
GpuInstanceHandle = object

#: ``NVML_GPU_INSTANCE_PROFILE_COUNT``: GPU-instance profile *indexes* are 0..COUNT-1 (the
#: profile *ids* NVML reports, such as 19 for 1g.10gb, are a different number space).
GPU_INSTANCE_PROFILE_COUNT = 0x12
NVML_DEVICE_MIG_ENABLE = 1


class PciInfo(Protocol):
    """``nvmlPciInfo_t`` (the fields discovery reads)."""

    @property
    def busId(self) -> bytes | str: ...

    @property
    def pciDeviceId(self) -> int: ...


class MemoryInfo(Protocol):
    """``c_nvmlMemory_t``: bytes."""

    @property
    def total(self) -> int: ...

    @property
    def free(self) -> int: ...

    @property
    def used(self) -> int: ...


class GpuInstancePlacement(Protocol):
    """``c_nvmlGpuInstancePlacement_t``: memory-slice start and size."""

    @property
    def start(self) -> int: ...

    @property
    def size(self) -> int: ...


class GpuInstanceInfo(Protocol):
    """``c_nvmlGpuInstanceInfo_t``."""

    @property
    def id(self) -> int: ...

    @property
    def profileId(self) -> int: ...

    @property
    def placement(self) -> GpuInstancePlacement: ...


class GpuInstanceProfileInfo(Protocol):
    """``c_nvmlGpuInstanceProfileInfo_v2_t`` (v1 lacks ``name``; discovery copes)."""

    @property
    def id(self) -> int: ...

    @property
    def sliceCount(self) -> int: ...

    @property
    def instanceCount(self) -> int: ...

    @property
    def multiprocessorCount(self) -> int: ...

    @property
    def copyEngineCount(self) -> int: ...

    @property
    def decoderCount(self) -> int: ...

    @property
    def encoderCount(self) -> int: ...

    @property
    def jpegCount(self) -> int: ...

    @property
    def ofaCount(self) -> int: ...

    @property
    def memorySizeMB(self) -> int: ...


class DeviceAttributes(Protocol):
    """``c_nvmlDeviceAttributes`` of a MIG device."""

    @property
    def multiprocessorCount(self) -> int: ...

    @property
    def gpuInstanceSliceCount(self) -> int: ...

    @property
    def computeInstanceSliceCount(self) -> int: ...

    @property
    def memorySizeMB(self) -> int: ...


class NvmlLibrary(Protocol):
    """The pynvml functions discovery calls; ``pynvml`` itself is an implementation."""

    #: Base class of every error the library raises (``pynvml.NVMLError``).
    NVMLError: type[Exception]

    def nvmlInit(self) -> None: ...

    def nvmlShutdown(self) -> None: ...

    def nvmlSystemGetDriverVersion(self) -> str: ...

    def nvmlSystemGetCudaDriverVersion(self) -> int: ...

    def nvmlSystemGetCudaDriverVersion_v2(self) -> int: ...

    def nvmlDeviceGetCount(self) -> int: ...

    def nvmlDeviceGetHandleByIndex(self, index: int) -> DeviceHandle: ...

    def nvmlDeviceGetName(self, handle: DeviceHandle) -> str: ...

    def nvmlDeviceGetUUID(self, handle: DeviceHandle) -> str: ...

    def nvmlDeviceGetMinorNumber(self, handle: DeviceHandle) -> int: ...

    def nvmlDeviceGetBrand(self, handle: DeviceHandle) -> int: ...

    def nvmlDeviceGetArchitecture(self, device: DeviceHandle) -> int: ...

    def nvmlDeviceGetMemoryInfo(self, handle: DeviceHandle) -> MemoryInfo: ...

    def nvmlDeviceGetCudaComputeCapability(self, handle: DeviceHandle) -> tuple[int, int]: ...

    def nvmlDeviceGetPciInfo(self, handle: DeviceHandle) -> PciInfo: ...

    def nvmlDeviceGetMigMode(self, device: DeviceHandle) -> Sequence[int]: ...

    def nvmlDeviceGetMaxMigDeviceCount(self, device: DeviceHandle) -> int: ...

    def nvmlDeviceGetMigDeviceHandleByIndex(self, device: DeviceHandle, index: int) -> DeviceHandle: ...

    def nvmlDeviceGetGpuInstanceId(self, device: DeviceHandle) -> int: ...

    def nvmlDeviceGetGpuInstanceById(
        self, device: DeviceHandle, gpuInstanceId: int
    ) -> GpuInstanceHandle: ...

    def nvmlGpuInstanceGetInfo(self, gpuInstance: GpuInstanceHandle) -> GpuInstanceInfo: ...

    def nvmlDeviceGetGpuInstanceProfileInfo(
        self, device: DeviceHandle, profile: int, version: int = 2
    ) -> GpuInstanceProfileInfo: ...

    def nvmlDeviceGetAttributes(self, device: DeviceHandle) -> DeviceAttributes: ...


#: Every function of ``NvmlLibrary``, for conformance tests of the real module and the fake.
PROTOCOL_FUNCTIONS: tuple[str, ...] = tuple(
    name for name in NvmlLibrary.__dict__ if name.startswith("nvml") and callable(NvmlLibrary.__dict__[name])
)
