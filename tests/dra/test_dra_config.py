"""Opaque config validation: NVIDIA's shapes accepted, everything else refused with a clear message."""

from __future__ import annotations

from typing import Any

import pytest

from blueprintd.dra.config import (
    ConfigError,
    GpuConfig,
    MigDeviceConfig,
    SharingStrategy,
    TimeSliceInterval,
    parse_config,
)

V = "resource.nvidia.com/v1beta1"


def test_gpu_time_slicing() -> None:
    cfg = parse_config(
        {
            "apiVersion": V,
            "kind": "GpuConfig",
            "sharing": {"strategy": "TimeSlicing", "timeSlicingConfig": {"interval": "Long"}},
        }
    )
    assert isinstance(cfg, GpuConfig) and cfg.sharing is not None
    assert cfg.sharing.strategy is SharingStrategy.TIME_SLICING
    assert cfg.sharing.interval is TimeSliceInterval.LONG
    assert TimeSliceInterval.LONG.nvidia_smi_value == 3


def test_gpu_mps_and_defaults() -> None:
    cfg = parse_config(
        {
            "apiVersion": V,
            "kind": "GpuConfig",
            "sharing": {
                "strategy": "MPS",
                "mpsConfig": {
                    "defaultActiveThreadPercentage": 50,
                    "defaultPinnedDeviceMemoryLimit": "10Gi",
                    "defaultPerDevicePinnedMemoryLimit": {"0": "5Gi"},
                },
            },
        }
    )
    assert isinstance(cfg, GpuConfig) and cfg.sharing and cfg.sharing.mps_config
    assert cfg.sharing.mps_config.default_active_thread_percentage == 50
    plain = parse_config({"apiVersion": V, "kind": "GpuConfig"})
    assert isinstance(plain, GpuConfig) and plain.sharing is None
    ts = parse_config({"apiVersion": V, "kind": "GpuConfig", "sharing": {"strategy": "TimeSlicing"}})
    assert isinstance(ts, GpuConfig) and ts.sharing and ts.sharing.interval is TimeSliceInterval.DEFAULT


def test_mig_device_config() -> None:
    cfg = parse_config({"apiVersion": V, "kind": "MigDeviceConfig", "sharing": {"strategy": "MPS"}})
    assert isinstance(cfg, MigDeviceConfig)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {
                "apiVersion": V,
                "kind": "GpuConfig",
                "sharing": {"strategy": "TimeSlicing", "timeslicingConfig": {}},
            },
            "unknown field 'sharing.timeslicingConfig'",
        ),
        ({"apiVersion": V, "kind": "GpuConfig", "replicas": 4}, "unknown field 'replicas'"),
        (
            {
                "apiVersion": V,
                "kind": "MigDeviceConfig",
                "sharing": {"strategy": "TimeSlicing", "timeSlicingConfig": {"interval": "Long"}},
            },
            "unknown field 'sharing.timeSlicingConfig'",
        ),
        (
            {"apiVersion": V, "kind": "GpuConfig", "sharing": {"strategy": "Fractional"}},
            "sharing.strategy: Input should be 'TimeSlicing' or 'MPS'",
        ),
        (
            {
                "apiVersion": V,
                "kind": "GpuConfig",
                "sharing": {"strategy": "TimeSlicing", "timeSlicingConfig": {"interval": "Forever"}},
            },
            "sharing.timeSlicingConfig.interval",
        ),
        (
            {"apiVersion": V, "kind": "GpuConfig", "sharing": {"strategy": "TimeSlicing", "mpsConfig": {}}},
            "mpsConfig is only valid with strategy MPS",
        ),
        (
            {
                "apiVersion": V,
                "kind": "GpuConfig",
                "sharing": {"strategy": "MPS", "mpsConfig": {"defaultActiveThreadPercentage": 150}},
            },
            "defaultActiveThreadPercentage",
        ),
        (
            {
                "apiVersion": V,
                "kind": "GpuConfig",
                "sharing": {"strategy": "MPS", "mpsConfig": {"defaultPinnedDeviceMemoryLimit": "lots"}},
            },
            "is not a positive quantity",
        ),
        ({"apiVersion": "resource.nvidia.com/v1", "kind": "GpuConfig"}, "unsupported apiVersion"),
        ({"apiVersion": V, "kind": "TpuConfig"}, "unsupported kind 'TpuConfig'"),
        (["not", "an", "object"], "must be an object"),
    ],
)
def test_invalid_configs_are_rejected_clearly(params: Any, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(params, where="status.allocation.devices.config[0]")
    assert message in str(err.value)
    assert str(err.value).startswith("status.allocation.devices.config[0]: ")
