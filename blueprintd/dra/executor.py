"""Applying GPU sharing on the node: time-slice policy and MPS control daemons.

Sharing is the one place where preparing a claim changes the GPU itself, through NVIDIA's
command-line tools. It sits behind the small :class:`SharingExecutor` protocol because those
tools exist only on GPU nodes: the real :class:`NvidiaSmiExecutor` runs them, the
:class:`RecordingExecutor` records what would have run so every other part of prepare (API
reads, CDI files, checkpoints, gRPC) is tested for real on machines without GPUs.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from blueprintd.dra.config import MpsConfig, TimeSliceInterval
from blueprintd.dra.slices import quantity_value

log = logging.getLogger(__name__)


class ExecutorError(RuntimeError):
    """A sharing command failed; the message (with the tool's stderr) goes to the claim's error."""


@dataclass(frozen=True)
class MpsDaemon:
    """One MPS control daemon serving the devices of one claim (one config group).

    ``pipe_dir`` is mounted into the claim's containers (CDI claim spec) so CUDA clients find
    the daemon; ``log_dir`` keeps its logs next to it for debugging.
    """

    daemon_id: str
    device_uuids: tuple[str, ...]
    pipe_dir: str
    log_dir: str

    def to_json(self) -> dict[str, Any]:
        return {
            "daemonId": self.daemon_id,
            "deviceUUIDs": list(self.device_uuids),
            "pipeDir": self.pipe_dir,
            "logDir": self.log_dir,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MpsDaemon:
        return cls(
            daemon_id=str(data["daemonId"]),
            device_uuids=tuple(str(u) for u in data.get("deviceUUIDs", [])),
            pipe_dir=str(data["pipeDir"]),
            log_dir=str(data["logDir"]),
        )


class SharingExecutor(Protocol):
    """What prepare/unprepare needs from the node to share GPUs between containers."""

    def set_time_slice(self, gpu_uuids: Sequence[str], interval: TimeSliceInterval) -> None:
        """Set the compute time slice of whole GPUs (``Default`` undoes a previous setting)."""

    def start_mps(self, daemon: MpsDaemon, config: MpsConfig | None) -> None:
        """Start an MPS control daemon for ``daemon.device_uuids``; idempotent."""

    def stop(self, daemon: MpsDaemon) -> None:
        """Stop the MPS daemon and remove its pipe directory; no error if it is not running."""


Runner = Callable[[Sequence[str], Mapping[str, str], str | None], str]


def _subprocess_runner(argv: Sequence[str], env: Mapping[str, str], stdin: str | None) -> str:
    try:
        done = subprocess.run(
            list(argv), env=dict(env), input=stdin, capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ExecutorError(f"{argv[0]}: {exc}") from exc
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip()
        raise ExecutorError(f"{' '.join(argv)} exited {done.returncode}: {detail}")
    return done.stdout


def _mps_mem_limit(value: str) -> str:
    """Quantity -> the ``<n>M`` form ``nvidia-cuda-mps-control`` takes (rounded down to MiB)."""
    mib = int(quantity_value(value) // (1 << 20))
    return f"{max(mib, 1)}M"


@dataclass
class NvidiaSmiExecutor:
    """The real executor: ``nvidia-smi`` and ``nvidia-cuda-mps-control`` from the host driver."""

    nvidia_smi: str = "nvidia-smi"
    mps_control: str = "nvidia-cuda-mps-control"
    runner: Runner = _subprocess_runner

    def set_time_slice(self, gpu_uuids: Sequence[str], interval: TimeSliceInterval) -> None:
        for uuid in gpu_uuids:
            self.runner(
                [
                    self.nvidia_smi,
                    "compute-policy",
                    "-i",
                    uuid,
                    f"--set-timeslice={interval.nvidia_smi_value}",
                ],
                os.environ,
                None,
            )

    def _env(self, daemon: MpsDaemon) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            CUDA_VISIBLE_DEVICES=",".join(daemon.device_uuids),
            CUDA_MPS_PIPE_DIRECTORY=daemon.pipe_dir,
            CUDA_MPS_LOG_DIRECTORY=daemon.log_dir,
        )
        return env

    def start_mps(self, daemon: MpsDaemon, config: MpsConfig | None) -> None:
        Path(daemon.pipe_dir).mkdir(parents=True, exist_ok=True)
        Path(daemon.log_dir).mkdir(parents=True, exist_ok=True)
        if (Path(daemon.pipe_dir) / "control").exists():
            return  # already running (prepare repeated after a plugin restart)
        # Exclusive-process mode makes every CUDA client go through the daemon.
        for uuid in daemon.device_uuids:
            if uuid.startswith("GPU-"):
                self.runner([self.nvidia_smi, "-i", uuid, "-c", "EXCLUSIVE_PROCESS"], os.environ, None)
        env = self._env(daemon)
        self.runner([self.mps_control, "-d"], env, None)
        commands = []
        if config and config.default_active_thread_percentage is not None:
            commands.append(f"set_default_active_thread_percentage {config.default_active_thread_percentage}")
        if config and config.default_pinned_device_memory_limit:
            limit = _mps_mem_limit(config.default_pinned_device_memory_limit)
            commands += [f"set_default_device_pinned_mem_limit {u} {limit}" for u in daemon.device_uuids]
        for dev, value in sorted(
            (config.default_per_device_pinned_memory_limit or {}).items() if config else []
        ):
            commands.append(f"set_default_device_pinned_mem_limit {dev} {_mps_mem_limit(value)}")
        for command in commands:
            self.runner([self.mps_control], env, command + "\n")

    def stop(self, daemon: MpsDaemon) -> None:
        if (Path(daemon.pipe_dir) / "control").exists():
            try:
                self.runner([self.mps_control], self._env(daemon), "quit\n")
            except ExecutorError as exc:
                log.warning("stopping MPS daemon %s: %s", daemon.daemon_id, exc)
            for uuid in daemon.device_uuids:
                if uuid.startswith("GPU-"):
                    self.runner([self.nvidia_smi, "-i", uuid, "-c", "DEFAULT"], os.environ, None)
        shutil.rmtree(daemon.pipe_dir, ignore_errors=True)


@dataclass
class RecordingExecutor:
    """Records every call instead of running it; ``fail_with`` makes calls raise.

    Used by tests and by ``--fake-nvml`` runs (``log=True``), where there is no GPU whose
    time slice could be set: the plugin then behaves exactly as on a GPU node except that
    the sharing commands are logged, not run.
    """

    calls: list[tuple[str, Any]] = field(default_factory=list)
    fail_with: str | None = None
    running: dict[str, MpsDaemon] = field(default_factory=dict)
    log: bool = False

    def _check(self) -> None:
        if self.fail_with:
            raise ExecutorError(self.fail_with)

    def _record(self, name: str, args: Any) -> None:
        self.calls.append((name, args))
        if self.log:
            log.info("sharing (simulated): %s %s", name, args)

    def set_time_slice(self, gpu_uuids: Sequence[str], interval: TimeSliceInterval) -> None:
        self._check()
        self._record("set_time_slice", (tuple(gpu_uuids), interval.value))

    def start_mps(self, daemon: MpsDaemon, config: MpsConfig | None) -> None:
        self._check()
        self._record("start_mps", (daemon, config))
        self.running[daemon.daemon_id] = daemon

    def stop(self, daemon: MpsDaemon) -> None:
        self._check()
        self._record("stop", daemon)
        self.running.pop(daemon.daemon_id, None)
