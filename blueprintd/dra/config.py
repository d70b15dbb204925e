"""Opaque device configuration (``resource.nvidia.com/v1beta1``): GpuConfig and MigDeviceConfig.

Users put these objects into ``spec.devices.config[].opaque.parameters`` of a ResourceClaim
(or a DeviceClass); the API server stores them unparsed and only this driver understands
them. They are validated strictly here, with unknown fields rejected, because a typo such as
``timeslicingConfig`` would otherwise silently give a pod an exclusive GPU it was meant to
share (or the reverse). Errors name the claim, the config entry and the offending field so the
message that lands in the pod's events is actionable.

The shapes are NVIDIA's, so claims written for NVIDIA's DRA driver work unchanged.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Final, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, model_validator

from blueprintd.dra.slices import quantity_value

API_VERSION: Final = "resource.nvidia.com/v1beta1"


class _Strict(BaseModel):
    """camelCase wire names exactly as NVIDIA spells them; unknown fields are errors."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class SharingStrategy(StrEnum):
    TIME_SLICING = "TimeSlicing"
    MPS = "MPS"


class TimeSliceInterval(StrEnum):
    """Time-slice lengths ``nvidia-smi compute-policy --set-timeslice`` knows (0..3)."""

    DEFAULT = "Default"
    SHORT = "Short"
    MEDIUM = "Medium"
    LONG = "Long"

    @property
    def nvidia_smi_value(self) -> int:
        return list(TimeSliceInterval).index(self)


class TimeSlicingConfig(_Strict):
    interval: TimeSliceInterval = TimeSliceInterval.DEFAULT


class MpsConfig(_Strict):
    """MPS daemon defaults; memory limits are Quantity strings such as ``10Gi``.

    ``defaultPerDevicePinnedMemoryLimit`` maps a device (UUID or index) to a limit and wins over
    ``defaultPinnedDeviceMemoryLimit`` for that device.
    """

    default_active_thread_percentage: int | None = Field(
        default=None, alias="defaultActiveThreadPercentage", ge=1, le=100
    )
    default_pinned_device_memory_limit: str | None = Field(
        default=None, alias="defaultPinnedDeviceMemoryLimit"
    )
    default_per_device_pinned_memory_limit: dict[str, str] | None = Field(
        default=None, alias="defaultPerDevicePinnedMemoryLimit"
    )

    @model_validator(mode="after")
    def _limits_are_quantities(self) -> MpsConfig:
        limits = dict(self.default_per_device_pinned_memory_limit or {})
        if self.default_pinned_device_memory_limit is not None:
            limits["defaultPinnedDeviceMemoryLimit"] = self.default_pinned_device_memory_limit
        for key, value in limits.items():
            try:
                if quantity_value(value) <= 0:
                    raise ValueError
            except ValueError:
                raise ValueError(
                    f"memory limit {key}={value!r} is not a positive quantity (e.g. 10Gi)"
                ) from None
        return self


class GpuSharing(_Strict):
    strategy: SharingStrategy
    time_slicing_config: TimeSlicingConfig | None = Field(default=None, alias="timeSlicingConfig")
    mps_config: MpsConfig | None = Field(default=None, alias="mpsConfig")

    @model_validator(mode="after")
    def _matching_sub_config(self) -> GpuSharing:
        if self.strategy is SharingStrategy.TIME_SLICING and self.mps_config is not None:
            raise ValueError("mpsConfig is only valid with strategy MPS")
        if self.strategy is SharingStrategy.MPS and self.time_slicing_config is not None:
            raise ValueError("timeSlicingConfig is only valid with strategy TimeSlicing")
        return self

    @property
    def interval(self) -> TimeSliceInterval:
        return (self.time_slicing_config or TimeSlicingConfig()).interval


class MigDeviceSharing(_Strict):
    """MIG devices cannot change their time slice; only the strategy and MPS settings apply."""

    strategy: SharingStrategy
    mps_config: MpsConfig | None = Field(default=None, alias="mpsConfig")

    @model_validator(mode="after")
    def _matching_sub_config(self) -> MigDeviceSharing:
        if self.strategy is SharingStrategy.TIME_SLICING and self.mps_config is not None:
            raise ValueError("mpsConfig is only valid with strategy MPS")
        return self


class GpuConfig(_Strict):
    api_version: Literal["resource.nvidia.com/v1beta1"] = Field(default=API_VERSION, alias="apiVersion")
    kind: Literal["GpuConfig"] = "GpuConfig"
    sharing: GpuSharing | None = None


class MigDeviceConfig(_Strict):
    api_version: Literal["resource.nvidia.com/v1beta1"] = Field(default=API_VERSION, alias="apiVersion")
    kind: Literal["MigDeviceConfig"] = "MigDeviceConfig"
    sharing: MigDeviceSharing | None = None


DeviceConfig = GpuConfig | MigDeviceConfig

_KINDS: dict[str, type[GpuConfig] | type[MigDeviceConfig]] = {
    "GpuConfig": GpuConfig,
    "MigDeviceConfig": MigDeviceConfig,
}


class ConfigError(ValueError):
    """An opaque config this driver cannot accept; the message is shown in pod events."""


def _format_errors(exc: pydantic.ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            parts.append(f"unknown field {loc!r}")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def parse_config(parameters: Any, *, where: str = "") -> DeviceConfig:
    """Validate one ``opaque.parameters`` object; raises :class:`ConfigError` with a clear message."""
    prefix = f"{where}: " if where else ""
    if not isinstance(parameters, dict):
        raise ConfigError(f"{prefix}opaque parameters must be an object, got {type(parameters).__name__}")
    api_version = parameters.get("apiVersion")
    if api_version != API_VERSION:
        raise ConfigError(f"{prefix}unsupported apiVersion {api_version!r}, expected {API_VERSION!r}")
    kind = parameters.get("kind")
    model = _KINDS.get(str(kind))
    if model is None:
        raise ConfigError(f"{prefix}unsupported kind {kind!r}, expected one of {sorted(_KINDS)}")
    try:
        return model.model_validate(parameters)
    except pydantic.ValidationError as exc:
        raise ConfigError(f"{prefix}invalid {kind}: {_format_errors(exc)}") from None
