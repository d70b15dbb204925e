"""NVML discovery: what GPUs this machine has, read through pynvml or a fake.

``discover(nvml)`` turns NVML into a ``NodeGpuInventory``; ``real.load()`` gives the real
bindings and ``FakeNvml.from_machine(name)`` a simulated machine for tests and demos.
"""

from blueprintd.facts.nvml.discovery import architecture_family, discover
from blueprintd.facts.nvml.errors import (
    GpuLostError,
    NvmlCallError,
    NvmlError,
    NvmlPermissionError,
    NvmlUnavailableError,
)
from blueprintd.facts.nvml.fake import FakeNvml, FakeNvmlError

__all__ = [
    "FakeNvml",
    "FakeNvmlError",
    "GpuLostError",
    "NvmlCallError",
    "NvmlError",
    "NvmlPermissionError",
    "NvmlUnavailableError",
    "architecture_family",
    "discover",
]
