"""The prepared-claims checkpoint: what this node prepared, surviving plugin restarts.

The kubelet calls NodeUnprepareResources after a pod ends, possibly long after the plugin
that prepared the claim was restarted (upgrade, crash, node reboot). By then the
ResourceClaim may be gone from the API server, so the plugin must remember by itself which
CDI spec it wrote and which sharing it applied in order to undo exactly that. The file is

* JSON with a SHA-256 checksum over the canonical form of its data, so a truncated or
  hand-edited file is detected instead of being trusted (undoing the wrong sharing or
  leaking an MPS daemon is worse than refusing);
* written atomically (temp file in the same directory, fsync, rename), so a crash mid-write
  leaves either the old or the new checkpoint, never half of one.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from blueprintd.dra.config import TimeSliceInterval
from blueprintd.dra.executor import MpsDaemon

CHECKPOINT_VERSION = 1


class CheckpointError(RuntimeError):
    """The checkpoint file exists but cannot be trusted (bad JSON, checksum, version)."""


@dataclass(frozen=True)
class PreparedDevice:
    """One device of a prepared claim, with what the kubelet was told about it."""

    request_names: tuple[str, ...]
    pool_name: str
    device_name: str
    cdi_device_ids: tuple[str, ...]
    uuid: str = ""
    device_type: str = "gpu"  # gpu | mig
    # The allocation's shareID when the device is shared between claims (consumable
    # capacity); '' for an exclusive allocation.
    share_id: str = ""

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "requestNames": list(self.request_names),
            "poolName": self.pool_name,
            "deviceName": self.device_name,
            "cdiDeviceIDs": list(self.cdi_device_ids),
            "uuid": self.uuid,
            "type": self.device_type,
        }
        if self.share_id:  # absent for exclusive devices: such records read as before share IDs
            data["shareID"] = self.share_id
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PreparedDevice:
        return cls(
            request_names=tuple(data.get("requestNames", [])),
            pool_name=str(data["poolName"]),
            device_name=str(data["deviceName"]),
            cdi_device_ids=tuple(data.get("cdiDeviceIDs", [])),
            uuid=str(data.get("uuid", "")),
            device_type=str(data.get("type", "gpu")),
            share_id=str(data.get("shareID", "")),
        )


@dataclass(frozen=True)
class TimeSliceSetting:
    """Whole GPUs whose time slice a claim changed (undone by resetting to Default)."""

    gpu_uuids: tuple[str, ...]
    interval: TimeSliceInterval

    def to_json(self) -> dict[str, Any]:
        return {"gpuUUIDs": list(self.gpu_uuids), "interval": self.interval.value}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TimeSliceSetting:
        return cls(tuple(data.get("gpuUUIDs", [])), TimeSliceInterval(data["interval"]))


@dataclass(frozen=True)
class PreparedClaim:
    """Everything needed to answer a repeated prepare and to undo it without the API server."""

    uid: str
    namespace: str
    name: str
    devices: tuple[PreparedDevice, ...] = ()
    time_slicing: tuple[TimeSliceSetting, ...] = ()
    mps_daemons: tuple[MpsDaemon, ...] = ()
    cdi_spec_file: str = ""
    mps_by_device: Mapping[str, str] = field(default_factory=dict)  # device name -> MPS daemon id
    state: str = "PrepareCompleted"  # PrepareStarted while sharing is being applied

    def to_json(self) -> dict[str, Any]:
        return {
            "uid": self.uid,
            "namespace": self.namespace,
            "name": self.name,
            "devices": [d.to_json() for d in self.devices],
            "timeSlicing": [t.to_json() for t in self.time_slicing],
            "mpsDaemons": [m.to_json() for m in self.mps_daemons],
            "cdiSpecFile": self.cdi_spec_file,
            "mpsByDevice": dict(sorted(self.mps_by_device.items())),
            "state": self.state,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PreparedClaim:
        return cls(
            uid=str(data["uid"]),
            namespace=str(data.get("namespace", "")),
            name=str(data.get("name", "")),
            devices=tuple(PreparedDevice.from_json(d) for d in data.get("devices", [])),
            time_slicing=tuple(TimeSliceSetting.from_json(t) for t in data.get("timeSlicing", [])),
            mps_daemons=tuple(MpsDaemon.from_json(m) for m in data.get("mpsDaemons", [])),
            cdi_spec_file=str(data.get("cdiSpecFile", "")),
            mps_by_device={str(k): str(v) for k, v in (data.get("mpsByDevice") or {}).items()},
            state=str(data.get("state", "PrepareCompleted")),
        )


@dataclass
class Checkpoint:
    """The whole file's content: prepared claims keyed by claim UID."""

    claims: dict[str, PreparedClaim] = field(default_factory=dict)

    def data(self) -> dict[str, Any]:
        return {"preparedClaims": {uid: c.to_json() for uid, c in sorted(self.claims.items())}}


def checksum(data: Any) -> str:
    """SHA-256 of the canonical JSON form (sorted keys, no whitespace)."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def encode(cp: Checkpoint) -> str:
    data = cp.data()
    return (
        json.dumps({"version": CHECKPOINT_VERSION, "checksum": checksum(data), "data": data}, indent=2) + "\n"
    )


def decode(text: str, *, source: str = "checkpoint") -> Checkpoint:
    """Parse and verify; raises :class:`CheckpointError` on anything untrustworthy."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{source}: not valid JSON ({exc})") from exc
    if not isinstance(doc, dict) or "data" not in doc or "checksum" not in doc:
        raise CheckpointError(f"{source}: missing 'data' or 'checksum'")
    if doc.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{source}: unsupported version {doc.get('version')!r}")
    if checksum(doc["data"]) != doc["checksum"]:
        raise CheckpointError(f"{source}: checksum mismatch, the file was corrupted or edited")
    try:
        claims = {uid: PreparedClaim.from_json(c) for uid, c in doc["data"].get("preparedClaims", {}).items()}
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{source}: malformed prepared claim ({exc})") from exc
    return Checkpoint(claims)


def atomic_write(path: Path, text: str) -> None:
    """Write via a temp file in the same directory + fsync + rename (atomic on POSIX)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass
class CheckpointStore:
    """Load/save the checkpoint at one path."""

    path: Path

    def load(self) -> Checkpoint:
        """The saved checkpoint; empty if the file does not exist yet."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return Checkpoint()
        return decode(text, source=str(self.path))

    def save(self, cp: Checkpoint) -> None:
        atomic_write(self.path, encode(cp))

    def quarantine(self) -> Path:
        """Move an untrusted checkpoint aside (kept for forensics) and return its new path."""
        n = 0
        while True:
            target = self.path.with_name(f"{self.path.name}.corrupt.{n}")
            if not target.exists():
                break
            n += 1
        os.replace(self.path, target)
        return target
