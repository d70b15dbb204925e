"""CDI spec content for devices and claims."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

from blueprintd.api.facts import NodeGpuInventory
from blueprintd.dra.cdi import (
    CdiWriter,
    ClaimDevice,
    claim_cdi_id,
    claim_spec,
    device_cdi_id,
    device_spec,
)
from blueprintd.dra.executor import MpsDaemon

# CDI: kind = vendor/class, device names alphanumerics plus - _ . :
CDI_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.:-]*$")
Inv = Callable[..., NodeGpuInventory]


def test_ids() -> None:
    assert device_cdi_id("gpu-0") == "k8s.gpu.nvidia.com/device=gpu-0"
    assert claim_cdi_id("1234-abcd", "gpu-0") == "k8s.gpu.nvidia.com/claim=1234-abcd-gpu-0"


def test_device_spec_full_gpus(inventory: Inv) -> None:
    spec = device_spec(inventory(gpus=2))
    assert spec["cdiVersion"] == "0.6.0"
    assert spec["kind"] == "k8s.gpu.nvidia.com/device"
    assert spec["devices"] == [
        {"name": "gpu-0", "containerEdits": {"deviceNodes": [{"path": "/dev/nvidia0"}]}},
        {"name": "gpu-1", "containerEdits": {"deviceNodes": [{"path": "/dev/nvidia1"}]}},
    ]
    assert {"path": "/dev/nvidiactl"} in spec["containerEdits"]["deviceNodes"]


def test_device_spec_mig_uses_parent_node_and_caps(inventory: Inv) -> None:
    def caps(gpu, mig):  # type: ignore[no-untyped-def]
        return [f"/dev/nvidia-caps/nvidia-cap{100 + mig.placement_start}"]

    spec = device_spec(inventory(gpus=2, mig_per_gpu=7), caps)
    by_name = {d["name"]: d for d in spec["devices"]}
    assert len(by_name) == 2 + 14
    assert by_name["gpu-1-mig-1g10gb-19-2"]["containerEdits"]["deviceNodes"] == [
        {"path": "/dev/nvidia1"},
        {"path": "/dev/nvidia-caps/nvidia-cap102"},
    ]
    assert all(CDI_NAME.match(n) for n in by_name)


def test_claim_spec() -> None:
    daemon = MpsDaemon("u-0", ("GPU-b",), "/var/lib/kubelet/plugins/gpu.nvidia.com/mps/u/0/pipe", "/l")
    spec = claim_spec("u", [ClaimDevice("gpu-0", "GPU-a"), ClaimDevice("gpu-1", "GPU-b", daemon)])
    assert spec["kind"] == "k8s.gpu.nvidia.com/claim"
    assert spec["containerEdits"] == {"env": ["NVIDIA_VISIBLE_DEVICES=GPU-a,GPU-b"]}
    first, second = spec["devices"]
    assert first == {"name": "u-gpu-0", "containerEdits": {"env": ["NVIDIA_DRA_DEVICE_GPU_0=GPU-a"]}}
    assert second["name"] == "u-gpu-1"
    assert "CUDA_MPS_PIPE_DIRECTORY=/tmp/nvidia-mps" in second["containerEdits"]["env"]
    assert second["containerEdits"]["mounts"][0]["hostPath"] == daemon.pipe_dir


def test_writer_files_and_idempotence(tmp_path: Path, inventory: Inv) -> None:
    w = CdiWriter(tmp_path)
    assert w.write_device_spec(inventory(gpus=1)) is True
    assert w.write_device_spec(inventory(gpus=1)) is False, "unchanged spec is not rewritten"
    assert w.write_device_spec(inventory(gpus=1, mig_per_gpu=7)) is True
    assert json.loads(w.device_spec_path.read_text())["kind"] == "k8s.gpu.nvidia.com/device"
    assert w.device_spec_path.name == "k8s.gpu.nvidia.com-device.json"
    path = w.write_claim_spec("uid-1", [ClaimDevice("gpu-0", "GPU-a")])
    assert path.name == "k8s.gpu.nvidia.com-claim_uid-1.json"
    w.remove_claim_spec("uid-1")
    w.remove_claim_spec("uid-1")  # idempotent
    assert not path.exists()
