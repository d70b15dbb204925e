"""Prepare/unprepare logic with an in-memory claim source and a recording sharing executor.

The API-server-backed versions of these flows are in ``test_dra_fleet.py``; these pin the
details (config precedence, rollback, crash recovery) that are awkward to set up there.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from blueprintd.api.facts import NodeGpuInventory
from blueprintd.dra.cdi import CdiWriter
from blueprintd.dra.checkpoint import CheckpointStore
from blueprintd.dra.executor import RecordingExecutor
from blueprintd.dra.prepare import PREPARE_STARTED, ClaimRef, Preparer

V = "resource.nvidia.com/v1beta1"


def _preparer(tmp: Path, claims: Any, inv: NodeGpuInventory, ex: RecordingExecutor) -> Preparer:
    return Preparer(
        driver_name="gpu.nvidia.com",
        node_name="node-a",
        claims=claims,
        cdi=CdiWriter(tmp / "cdi"),
        executor=ex,
        checkpoints=CheckpointStore(tmp / "plugin" / "checkpoint.json"),
        mps_root=tmp / "plugin" / "mps",
        inventory=inv,
    )


def _cfg(
    source: str, requests: list[str], params: dict[str, Any], driver: str = "gpu.nvidia.com"
) -> dict[str, Any]:
    return {"source": source, "requests": requests, "opaque": {"driver": driver, "parameters": params}}


def _ts(interval: str) -> dict[str, Any]:
    return {
        "apiVersion": V,
        "kind": "GpuConfig",
        "sharing": {"strategy": "TimeSlicing", "timeSlicingConfig": {"interval": interval}},
    }


def test_prepare_full_gpu_and_idempotence(
    tmp_path: Path,
    memory_claims: Any,
    make_claim: Callable[..., Any],
    inventory: Callable[..., NodeGpuInventory],
) -> None:
    memory_claims.add(make_claim("c1", "uid-1", [("gpu", "gpu-3")]))
    ex = RecordingExecutor()
    p = _preparer(tmp_path, memory_claims, inventory(), ex)
    out = p.prepare([ClaimRef("default", "c1", "uid-1")])["uid-1"]
    assert out.error == ""
    (dev,) = out.devices
    assert dev.device_name == "gpu-3" and dev.pool_name == "node-a" and dev.request_names == ("gpu",)
    assert dev.cdi_device_ids == ("k8s.gpu.nvidia.com/device=gpu-3", "k8s.gpu.nvidia.com/claim=uid-1-gpu-3")
    spec = json.loads((tmp_path / "cdi" / "k8s.gpu.nvidia.com-claim_uid-1.json").read_text())
    assert spec["devices"][0]["name"] == "uid-1-gpu-3"
    assert ex.calls == []  # no sharing requested
    again = p.prepare([ClaimRef("default", "c1", "uid-1")])["uid-1"]
    assert again == out and memory_claims.reads == 1, "repeat answered from the checkpoint"
    assert p.unprepare([ClaimRef("default", "c1", "uid-1")]) == {"uid-1": ""}
    assert not (tmp_path / "cdi" / "k8s.gpu.nvidia.com-claim_uid-1.json").exists()
    assert p.unprepare([ClaimRef("default", "c1", "uid-1")]) == {"uid-1": ""}, "unknown claim: already done"


def test_errors_are_per_claim(
    tmp_path: Path,
    memory_claims: Any,
    make_claim: Callable[..., Any],
    inventory: Callable[..., NodeGpuInventory],
) -> None:
    memory_claims.add(make_claim("ok", "uid-ok", [("gpu", "gpu-0")]))
    memory_claims.add(make_claim("gone", "uid-gone", [("gpu", "gpu-42")]))
    memory_claims.add(make_claim("other", "uid-new", [("gpu", "gpu-1")]))
    unallocated = make_claim("pending", "uid-p", [])
    unallocated["status"] = {}
    memory_claims.add(unallocated)
    p = _preparer(tmp_path, memory_claims, inventory(), RecordingExecutor())
    out = p.prepare(
        [
            ClaimRef("default", "ok", "uid-ok"),
            ClaimRef("default", "gone", "uid-gone"),
            ClaimRef("default", "other", "uid-old"),
            ClaimRef("default", "missing", "uid-m"),
            ClaimRef("default", "pending", "uid-p"),
        ]
    )
    assert out["uid-ok"].error == "" and len(out["uid-ok"].devices) == 1
    assert (
        "device gpu-42" in out["uid-gone"].error and "not available on node node-a" in out["uid-gone"].error
    )
    assert "has UID uid-new" in out["uid-old"].error
    assert "not found" in out["uid-m"].error
    assert "is not allocated" in out["uid-p"].error
    assert set(p.prepared_claims) == {"uid-ok"}


def test_other_drivers_and_pools_are_ignored(
    tmp_path: Path,
    memory_claims: Any,
    make_claim: Callable[..., Any],
    inventory: Callable[..., NodeGpuInventory],
) -> None:
    claim = make_claim("c", "u", [("gpu", "gpu-0")])
    results = claim["status"]["allocation"]["devices"]["results"]
    results.append({"request": "nic", "driver": "nic.example.com", "pool": "node-a", "device": "eth0"})
    results.append({"request": "gpu", "driver": "gpu.nvidia.com", "pool": "node-b", "device": "gpu-0"})
    memory_claims.add(claim)
    out = _preparer(tmp_path, memory_claims, inventory(), RecordingExecutor()).prepare(
        [ClaimRef("default", "c", "u")]
    )
    assert [d.device_name for d in out["u"].devices] == ["gpu-0"]


def test_config_precedence_time_slicing(
    tmp_path: Path,
    memory_claims: Any,
    make_claim: Callable[..., Any],
    inventory: Callable[..., NodeGpuInventory],
) -> None:
    config = [
        _cfg("FromClaim", ["a"], _ts("Long")),  # claim configs win over class configs...
        _cfg("FromClass", ["a", "b"], _ts("Short")),
        _cfg("FromClaim", [], _ts("Medium")),  # ...and later claim entries win (applies to all gpus)
        _cfg("FromClaim", [], {"not": "ours"}, driver="other.example.com"),
    ]
    memory_claims.add(make_claim("c", "u", [("a", "gpu-0"), ("b", "gpu-1")], config=config))
    ex = RecordingExecutor()
    p = _preparer(tmp_path, memory_claims, inventory(), ex)
    assert p.prepare([ClaimRef("default", "c", "u")])["u"].error == ""
    assert sorted(ex.calls) == [
        (
            "set_time_slice",
            (
                ("GPU-00000000-1111-2222-3333-444444444444", "GPU-00000001-1111-2222-3333-444444444444"),
                "Medium",
            ),
        )
    ]
    ex.calls.clear()
    p.unprepare([ClaimRef("default", "c", "u")])
    assert ex.calls == [
        (
            "set_time_slice",
            (
                ("GPU-00000000-1111-2222-3333-444444444444", "GPU-00000001-1111-2222-3333-444444444444"),
                "Default",
            ),
        )
    ]


def test_request_scoped_configs_and_subrequests(
    tmp_path: Path,
    memory_claims: Any,
    make_claim: Callable[..., Any],
    inventory: Callable[..., NodeGpuInventory],
) -> None:
    config = [_cfg("FromClaim", ["a"], _ts("Long")), _cfg("FromClaim", ["b"], _ts("Short"))]
    memory_claims.add(make_claim("c", "u", [("a/first", "gpu-0"), ("b", "gpu-1")], config=config))
    ex = RecordingExecutor()
    _preparer(tmp_path, memory_claims, inventory(), ex).prepare([ClaimRef("default", "c", "u")])
    assert sorted(ex.calls) == [
        ("set_time_slice", (("GPU-00000000-1111-2222-3333-444444444444",), "Long")),
        ("set_time_slice", (("GPU-00000001-1111-2222-3333-444444444444",), "Short")),
    ]


def test_mps_on_mig_devices(
    tmp_path: Path,
    memory_claims: Any,
    make_claim: Callable[..., Any],
    inventory: Callable[..., NodeGpuInventory],
) -> None:
    mps = {
        "apiVersion": V,
        "kind": "MigDeviceConfig",
        "sharing": {"strategy": "MPS", "mpsConfig": {"defaultActiveThreadPercentage": 25}},
    }
    devices = [("mig", f"gpu-0-mig-1g10gb-19-{i}") for i in range(2)]
    memory_claims.add(make_claim("c", "u", devices, config=[_cfg("FromClaim", ["mig"], mps)]))
    ex = RecordingExecutor()
    p = _preparer(tmp_path, memory_claims, inventory(mig_per_gpu=7), ex)
    out = p.prepare([ClaimRef("default", "c", "u")])["u"]
    assert out.error == "" and len(out.devices) == 2
    ((name, (daemon, cfg)),) = ex.calls
    assert name == "start_mps" and daemon.daemon_id == "u-0" and len(daemon.device_uuids) == 2
    assert cfg.default_active_thread_percentage == 25
    spec = json.loads((tmp_path / "cdi" / "k8s.gpu.nvidia.com-claim_u.json").read_text())
    assert all(d["containerEdits"]["mounts"][0]["hostPath"] == daemon.pipe_dir for d in spec["devices"])
    p.unprepare([ClaimRef("default", "c", "u")])
    assert ex.calls[-1] == ("stop", daemon) and ex.running == {}


@pytest.mark.parametrize(
    ("params", "devices", "message"),
    [
        (
            {"apiVersion": V, "kind": "GpuConfig", "sharing": {"strategy": "TimeSlicing", "bogus": 1}},
            [("g", "gpu-0")],
            "unknown field 'sharing.bogus'",
        ),
        (
            {"apiVersion": V, "kind": "MigDeviceConfig"},
            [("g", "gpu-0")],
            "MigDeviceConfig cannot configure gpu",
        ),
    ],
)
def test_invalid_config_fails_only_that_claim(
    tmp_path: Path,
    memory_claims: Any,
    make_claim: Callable[..., Any],
    inventory: Callable[..., NodeGpuInventory],
    params: Any,
    devices: Any,
    message: str,
) -> None:
    memory_claims.add(make_claim("bad", "u-bad", devices, config=[_cfg("FromClaim", ["g"], params)]))
    memory_claims.add(make_claim("good", "u-good", [("g", "gpu-5")]))
    p = _preparer(tmp_path, memory_claims, inventory(), RecordingExecutor())
    out = p.prepare([ClaimRef("default", "bad", "u-bad"), ClaimRef("default", "good", "u-good")])
    assert message in out["u-bad"].error and "status.allocation.devices.config[0]" in out["u-bad"].error
    assert out["u-good"].error == ""
    assert set(p.prepared_claims) == {"u-good"}


def test_executor_failure_rolls_back(
    tmp_path: Path,
    memory_claims: Any,
    make_claim: Callable[..., Any],
    inventory: Callable[..., NodeGpuInventory],
) -> None:
    memory_claims.add(make_claim("c", "u", [("g", "gpu-0")], config=[_cfg("FromClaim", [], _ts("Long"))]))
    ex = RecordingExecutor(fail_with="nvidia-smi: insufficient permissions")
    p = _preparer(tmp_path, memory_claims, inventory(), ex)
    out = p.prepare([ClaimRef("default", "c", "u")])["u"]
    assert "insufficient permissions" in out.error
    assert p.prepared_claims == {}
    assert not (tmp_path / "cdi" / "k8s.gpu.nvidia.com-claim_u.json").exists()


def test_restart_unprepares_from_checkpoint(
    tmp_path: Path,
    memory_claims: Any,
    make_claim: Callable[..., Any],
    inventory: Callable[..., NodeGpuInventory],
) -> None:
    memory_claims.add(make_claim("c", "u", [("g", "gpu-0")], config=[_cfg("FromClaim", [], _ts("Short"))]))
    _preparer(tmp_path, memory_claims, inventory(), RecordingExecutor()).prepare(
        [ClaimRef("default", "c", "u")]
    )
    memory_claims.claims.clear()  # the claim is gone from the API server by now
    ex = RecordingExecutor()
    fresh = _preparer(tmp_path, memory_claims, inventory(), ex)
    assert set(fresh.prepared_claims) == {"u"}
    assert fresh.unprepare([ClaimRef("default", "c", "u")]) == {"u": ""}
    assert ex.calls == [("set_time_slice", (("GPU-00000000-1111-2222-3333-444444444444",), "Default"))]
    assert fresh.prepared_claims == {}


def test_interrupted_prepare_is_undone_and_redone(
    tmp_path: Path,
    memory_claims: Any,
    make_claim: Callable[..., Any],
    inventory: Callable[..., NodeGpuInventory],
) -> None:
    memory_claims.add(make_claim("c", "u", [("g", "gpu-0")], config=[_cfg("FromClaim", [], _ts("Long"))]))
    p = _preparer(tmp_path, memory_claims, inventory(), RecordingExecutor())
    p.prepare([ClaimRef("default", "c", "u")])
    # Simulate a crash between "intent recorded" and "completed".
    cp = p.checkpoints.load()
    from dataclasses import replace

    cp.claims["u"] = replace(cp.claims["u"], state=PREPARE_STARTED)
    p.checkpoints.save(cp)
    ex = RecordingExecutor()
    fresh = _preparer(tmp_path, memory_claims, inventory(), ex)
    assert fresh.prepare([ClaimRef("default", "c", "u")])["u"].error == ""
    g0 = ("GPU-00000000-1111-2222-3333-444444444444",)
    assert ex.calls == [("set_time_slice", (g0, "Default")), ("set_time_slice", (g0, "Long"))]
    assert fresh.prepared_claims["u"].state == "PrepareCompleted"


def test_missing_claim_cdi_spec_is_rewritten_on_repeat(
    tmp_path: Path,
    memory_claims: Any,
    make_claim: Callable[..., Any],
    inventory: Callable[..., NodeGpuInventory],
) -> None:
    memory_claims.add(make_claim("c", "u", [("g", "gpu-0")]))
    p = _preparer(tmp_path, memory_claims, inventory(), RecordingExecutor())
    p.prepare([ClaimRef("default", "c", "u")])
    spec = tmp_path / "cdi" / "k8s.gpu.nvidia.com-claim_u.json"
    spec.unlink()  # /var/run is tmpfs: a reboot wipes it
    p.prepare([ClaimRef("default", "c", "u")])
    assert spec.exists()
