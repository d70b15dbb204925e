"""Load the real NVML bindings only when a command actually needs them.

``pynvml`` is a pure-Python ctypes wrapper: importing it is cheap and safe, and
``libnvidia-ml.so.1`` is only opened by ``nvmlInit``. Loading lazily still matters because
the operator, the CLI and the tests import ``blueprintd.facts`` on machines without NVIDIA
drivers (and some environments may lack the package entirely); nothing there should fail
until someone asks for local discovery.
"""

from __future__ import annotations

import importlib

from blueprintd.facts.nvml.errors import NVML_ERROR_LIBRARY_NOT_FOUND, NvmlUnavailableError
from blueprintd.facts.nvml.interface import NvmlLibrary


def load() -> NvmlLibrary:
    """The ``pynvml`` module (nvidia-ml-py), typed as the discovery Protocol."""
    try:
        module = importlib.import_module("pynvml")
    except ImportError as exc:  # pragma: no cover - nvidia-ml-py is a declared dependency
        raise NvmlUnavailableError(
            "no NVIDIA driver found (the nvidia-ml-py bindings are not installed)",
            code=NVML_ERROR_LIBRARY_NOT_FOUND,
        ) from exc
    nvml: NvmlLibrary = module
    return nvml
