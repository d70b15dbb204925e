"""The real sharing executor's command lines, with the process runner replaced (no GPU needed)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from blueprintd.dra.config import MpsConfig, TimeSliceInterval
from blueprintd.dra.executor import ExecutorError, MpsDaemon, NvidiaSmiExecutor, _subprocess_runner


class Runner:
    def __init__(self) -> None:
        self.runs: list[tuple[list[str], dict[str, str], str | None]] = []

    def __call__(self, argv: Sequence[str], env: Mapping[str, str], stdin: str | None) -> str:
        self.runs.append((list(argv), dict(env), stdin))
        return ""


def test_time_slice_commands() -> None:
    r = Runner()
    NvidiaSmiExecutor(runner=r).set_time_slice(["GPU-a", "GPU-b"], TimeSliceInterval.MEDIUM)
    assert [argv for argv, _, _ in r.runs] == [
        ["nvidia-smi", "compute-policy", "-i", "GPU-a", "--set-timeslice=2"],
        ["nvidia-smi", "compute-policy", "-i", "GPU-b", "--set-timeslice=2"],
    ]


def test_mps_start_and_stop(tmp_path: Path) -> None:
    r = Runner()
    ex = NvidiaSmiExecutor(runner=r)
    daemon = MpsDaemon("u-0", ("GPU-a", "MIG-b"), str(tmp_path / "pipe"), str(tmp_path / "log"))
    cfg = MpsConfig.model_validate(
        {
            "defaultActiveThreadPercentage": 40,
            "defaultPinnedDeviceMemoryLimit": "10Gi",
            "defaultPerDevicePinnedMemoryLimit": {"GPU-a": "2Gi"},
        }
    )
    ex.start_mps(daemon, cfg)
    argvs = [argv for argv, _, _ in r.runs]
    assert argvs[0] == ["nvidia-smi", "-i", "GPU-a", "-c", "EXCLUSIVE_PROCESS"]  # MIG devices keep their mode
    assert argvs[1] == ["nvidia-cuda-mps-control", "-d"]
    env = r.runs[1][1]
    assert env["CUDA_VISIBLE_DEVICES"] == "GPU-a,MIG-b"
    assert (
        env["CUDA_MPS_PIPE_DIRECTORY"] == daemon.pipe_dir and env["CUDA_MPS_LOG_DIRECTORY"] == daemon.log_dir
    )
    assert [stdin for _, _, stdin in r.runs[2:]] == [
        "set_default_active_thread_percentage 40\n",
        "set_default_device_pinned_mem_limit GPU-a 10240M\n",
        "set_default_device_pinned_mem_limit MIG-b 10240M\n",
        "set_default_device_pinned_mem_limit GPU-a 2048M\n",
    ]
    (tmp_path / "pipe" / "control").touch()  # what a running daemon leaves
    r.runs.clear()
    ex.stop(daemon)
    assert r.runs[0][0] == ["nvidia-cuda-mps-control"] and r.runs[0][2] == "quit\n"
    assert r.runs[1][0] == ["nvidia-smi", "-i", "GPU-a", "-c", "DEFAULT"]
    assert not (tmp_path / "pipe").exists()


def test_missing_tool_is_an_executor_error() -> None:
    with pytest.raises(ExecutorError, match="no-such-nvidia-smi"):
        _subprocess_runner(["no-such-nvidia-smi", "-L"], {}, None)
    with pytest.raises(ExecutorError, match="exited 3"):
        _subprocess_runner(["sh", "-c", "echo boom >&2; exit 3"], {"PATH": "/usr/bin:/bin"}, None)
