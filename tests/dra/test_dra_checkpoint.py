"""Checkpoint round trip, atomic writes and corruption detection."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from blueprintd.dra.checkpoint import (
    Checkpoint,
    CheckpointError,
    CheckpointStore,
    PreparedClaim,
    PreparedDevice,
    TimeSliceSetting,
)
from blueprintd.dra.config import TimeSliceInterval
from blueprintd.dra.executor import MpsDaemon


def _claim() -> PreparedClaim:
    return PreparedClaim(
        uid="u-1",
        namespace="ns",
        name="c",
        devices=(
            PreparedDevice(("gpu",), "node-a", "gpu-0", ("k8s.gpu.nvidia.com/device=gpu-0",), "GPU-0", "gpu"),
        ),
        time_slicing=(TimeSliceSetting(("GPU-0",), TimeSliceInterval.SHORT),),
        mps_daemons=(MpsDaemon("u-1-0", ("GPU-0",), "/p/pipe", "/p/log"),),
        cdi_spec_file="/var/run/cdi/x.json",
        mps_by_device={"gpu-0": "u-1-0"},
    )


def test_round_trip(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path / "checkpoint.json")
    assert store.load().claims == {}
    store.save(Checkpoint({"u-1": _claim()}))
    assert store.load().claims == {"u-1": _claim()}
    assert list(tmp_path.iterdir()) == [tmp_path / "checkpoint.json"], "no temp files left behind"


def test_corrupted_checksum_is_detected(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path / "checkpoint.json")
    store.save(Checkpoint({"u-1": _claim()}))
    doc = json.loads(store.path.read_text())
    doc["data"]["preparedClaims"]["u-1"]["name"] = "edited"
    store.path.write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        store.load()
    moved = store.quarantine()
    assert moved.name == "checkpoint.json.corrupt.0" and not store.path.exists()
    assert store.load().claims == {}


@pytest.mark.parametrize("text", ["{", '{"version": 1}', '{"version": 9, "checksum": "", "data": {}}'])
def test_truncated_or_foreign_files_are_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "checkpoint.json"
    path.write_text(text)
    with pytest.raises(CheckpointError):
        CheckpointStore(path).load()


def test_failed_write_keeps_the_old_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = CheckpointStore(tmp_path / "checkpoint.json")
    store.save(Checkpoint({"u-1": _claim()}))

    def boom(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", boom)
    with pytest.raises(OSError):
        store.save(Checkpoint())
    monkeypatch.undo()
    assert "u-1" in store.load().claims
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.json"]


def test_share_ids_survive_a_restart_and_old_files_still_load(tmp_path: Path) -> None:
    """A shared allocation's shareID must be answered again after a plugin restart; checkpoints
    written before share IDs existed have none (every device was exclusive then)."""
    shared = PreparedDevice(
        ("small",), "node-a", "gpu-0", ("k8s.gpu.nvidia.com/device=gpu-0",), "GPU-0", "gpu", share_id="share-a"
    )
    claim = PreparedClaim(uid="u-2", namespace="ns", name="c", devices=(shared,))
    store = CheckpointStore(tmp_path / "checkpoint.json")
    store.save(Checkpoint({"u-1": _claim(), "u-2": claim}))
    loaded = store.load().claims
    assert loaded["u-2"].devices[0].share_id == "share-a"
    assert loaded["u-1"].devices[0].share_id == ""
    doc = json.loads(store.path.read_text())
    assert "shareID" not in doc["data"]["preparedClaims"]["u-1"]["devices"][0], "exclusive devices: no key"
