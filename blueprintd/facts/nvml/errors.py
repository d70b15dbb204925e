"""Typed NVML errors: what went wrong talking to the GPU driver, in words a user can act on.

pynvml raises one ``NVMLError`` subclass per NVML return code. Callers of discovery (the node
agent, the DRA driver, ``blueprintd facts --local``) need to tell three situations apart
without parsing messages, because each calls for a different reaction:

* the driver is not there at all (CPU node, driver container still starting): report
  "no NVIDIA driver", publish nothing about GPUs, retry later;
* the driver is there but refuses us (permissions): a deployment problem to surface;
* one GPU misbehaves (fallen off the bus, needs a reset): the *other* GPUs are still fine,
  so discovery returns a partial result instead of failing the whole node.

The return codes are NVML's stable ABI numbers (``nvml.h``), repeated here so this module
does not need the bindings loaded to classify an error.
"""

from __future__ import annotations

from blueprintd.errors import BlueprintdError

# NVML return codes (nvml.h); stable across driver releases.
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_TIMEOUT = 10
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_RESET_REQUIRED = 16
NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18
NVML_ERROR_UNKNOWN = 999

#: Symbolic names, as used in fake machine descriptions and in error messages.
ERROR_NAMES: dict[int, str] = {
    NVML_ERROR_UNINITIALIZED: "UNINITIALIZED",
    NVML_ERROR_INVALID_ARGUMENT: "INVALID_ARGUMENT",
    NVML_ERROR_NOT_SUPPORTED: "NOT_SUPPORTED",
    NVML_ERROR_NO_PERMISSION: "NO_PERMISSION",
    NVML_ERROR_NOT_FOUND: "NOT_FOUND",
    NVML_ERROR_DRIVER_NOT_LOADED: "DRIVER_NOT_LOADED",
    NVML_ERROR_TIMEOUT: "TIMEOUT",
    NVML_ERROR_LIBRARY_NOT_FOUND: "LIBRARY_NOT_FOUND",
    NVML_ERROR_FUNCTION_NOT_FOUND: "FUNCTION_NOT_FOUND",
    NVML_ERROR_GPU_IS_LOST: "GPU_IS_LOST",
    NVML_ERROR_RESET_REQUIRED: "RESET_REQUIRED",
    NVML_ERROR_LIB_RM_VERSION_MISMATCH: "LIB_RM_VERSION_MISMATCH",
    NVML_ERROR_UNKNOWN: "UNKNOWN",
}
ERROR_CODES: dict[str, int] = {name: code for code, name in ERROR_NAMES.items()}

#: Codes that mean "no usable NVIDIA driver on this machine".
_UNAVAILABLE = frozenset(
    {NVML_ERROR_LIBRARY_NOT_FOUND, NVML_ERROR_DRIVER_NOT_LOADED, NVML_ERROR_LIB_RM_VERSION_MISMATCH}
)
#: Codes that mean "this GPU is gone until someone resets it".
_GPU_LOST = frozenset({NVML_ERROR_GPU_IS_LOST, NVML_ERROR_RESET_REQUIRED})


class NvmlError(BlueprintdError):
    """An NVML call failed; ``code`` is the NVML return code (0 when unknown)."""

    def __init__(self, message: str, *, code: int = 0, call: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.call = call

    @property
    def code_name(self) -> str:
        return ERROR_NAMES.get(self.code, str(self.code))


class NvmlUnavailableError(NvmlError):
    """No usable NVIDIA driver: libnvidia-ml is missing, the kernel module is not loaded, or
    the library and kernel module versions differ (a driver upgrade waiting for a reboot)."""


class NvmlPermissionError(NvmlError):
    """The driver refused the call: the process lacks access to ``/dev/nvidia*``."""


class GpuLostError(NvmlError):
    """A GPU stopped answering (fallen off the bus, or needs a reset)."""


class NvmlCallError(NvmlError):
    """Any other failed call (unsupported function, timeout, unknown error)."""


def error_code(exc: BaseException) -> int:
    """The NVML return code carried by a pynvml ``NVMLError`` (``value``), 0 if none."""
    value = getattr(exc, "value", 0)
    return value if isinstance(value, int) else 0


def _hint(code: int) -> str:
    if code == NVML_ERROR_LIBRARY_NOT_FOUND:
        return "no NVIDIA driver found (libnvidia-ml.so.1 is not installed or not visible to this process)"
    if code == NVML_ERROR_DRIVER_NOT_LOADED:
        return "no NVIDIA driver found (the nvidia kernel module is not loaded)"
    if code == NVML_ERROR_LIB_RM_VERSION_MISMATCH:
        return "NVIDIA driver library and kernel module versions differ (reboot after the driver upgrade)"
    if code == NVML_ERROR_NO_PERMISSION:
        return "permission denied by the NVIDIA driver (the process cannot open /dev/nvidia*)"
    if code == NVML_ERROR_GPU_IS_LOST:
        return "GPU is lost (fallen off the bus; it needs a reset or a reboot)"
    if code == NVML_ERROR_RESET_REQUIRED:
        return "GPU requires a reset"
    return ""


def from_nvml(exc: BaseException, call: str = "", subject: str = "") -> NvmlError:
    """Translate a pynvml exception into the matching typed error.

    ``subject`` names what was being read ("GPU 3 (00000000:9A:00.0)") so the message alone
    tells an operator where to look.
    """
    code = error_code(exc)
    name = ERROR_NAMES.get(code, f"code {code}")
    detail = _hint(code) or str(exc) or name
    where = f"{subject}: " if subject else ""
    via = f" [{call}: NVML_ERROR_{name}]" if call else f" [NVML_ERROR_{name}]"
    message = f"{where}{detail}{via}"
    cls: type[NvmlError]
    if code in _UNAVAILABLE:
        cls = NvmlUnavailableError
    elif code == NVML_ERROR_NO_PERMISSION:
        cls = NvmlPermissionError
    elif code in _GPU_LOST:
        cls = GpuLostError
    else:
        cls = NvmlCallError
    return cls(message, code=code, call=call)
