"""CDI (Container Device Interface) specs: how the container runtime injects prepared GPUs.

The kubelet hands the runtime the CDI device ids NodePrepareResources returned; the runtime
looks them up in spec files under the CDI directory (default ``/var/run/cdi``). Two kinds of
spec, vendor ``k8s.gpu.nvidia.com`` as NVIDIA's driver uses, so tooling that knows those ids
keeps working:

* ``k8s.gpu.nvidia.com/device``: one node-wide spec with every published device: the GPU's
  device node (``/dev/nvidiaN``; for a MIG device its parent's node plus the
  ``/dev/nvidia-caps`` access nodes of its GPU and compute instance) and the control nodes
  every CUDA process needs. Rewritten on every discovery, so a MIG re-layout updates it.
* ``k8s.gpu.nvidia.com/claim``: one spec per prepared claim (file named after the claim UID,
  removed by unprepare) with what is specific to that claim: the visible device UUIDs and,
  for MPS sharing, the daemon's pipe directory.

Each prepared device gets both ids: ``k8s.gpu.nvidia.com/device=gpu-0`` and
``k8s.gpu.nvidia.com/claim=<claimUID>-gpu-0``.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from blueprintd.api.facts import GpuInfo, MigDeviceInfo, NodeGpuInventory
from blueprintd.dra.checkpoint import atomic_write
from blueprintd.dra.executor import MpsDaemon
from blueprintd.dra.slices import gpu_device_name, mig_device_name

log = logging.getLogger(__name__)

CDI_VERSION = "0.6.0"
CDI_VENDOR = "k8s.gpu.nvidia.com"
DEVICE_CLASS = "device"
CLAIM_CLASS = "claim"
MPS_PIPE_IN_CONTAINER = "/tmp/nvidia-mps"
CONTROL_DEVICE_NODES = ("/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools")

# (parent GPU, MIG device) -> /dev/nvidia-caps/nvidia-capN paths granting access to it.
MigCapsResolver = Callable[[GpuInfo, MigDeviceInfo], list[str]]

Json = dict[str, Any]


def no_mig_caps(gpu: GpuInfo, mig: MigDeviceInfo) -> list[str]:
    """Resolver for machines without the NVIDIA kernel module (fake NVML, tests)."""
    return []


def device_cdi_id(device_name: str) -> str:
    return f"{CDI_VENDOR}/{DEVICE_CLASS}={device_name}"


def claim_device_name(claim_uid: str, device_name: str) -> str:
    return f"{claim_uid}-{device_name}"


def claim_cdi_id(claim_uid: str, device_name: str) -> str:
    return f"{CDI_VENDOR}/{CLAIM_CLASS}={claim_device_name(claim_uid, device_name)}"


def _env_name(device_name: str) -> str:
    return "NVIDIA_DRA_DEVICE_" + re.sub(r"[^A-Za-z0-9]", "_", device_name).upper()


def device_spec(inventory: NodeGpuInventory, mig_caps: MigCapsResolver = no_mig_caps) -> Json:
    """The node-wide ``device`` class spec for every GPU and MIG device in ``inventory``.

    Lists all devices, published or not (a GPU with a pending MIG change too): a spec entry
    for a device nobody was allocated is harmless, a missing one breaks a container start.
    """
    devices: list[Json] = []
    for gpu in sorted(inventory.gpus, key=lambda g: g.minor):
        parent_node = {"path": f"/dev/nvidia{gpu.minor}"}
        devices.append({"name": gpu_device_name(gpu), "containerEdits": {"deviceNodes": [parent_node]}})
        for mig in gpu.mig_devices:
            nodes = [parent_node] + [{"path": p} for p in mig_caps(gpu, mig)]
            devices.append(
                {"name": mig_device_name(gpu.minor, mig), "containerEdits": {"deviceNodes": nodes}}
            )
    return {
        "cdiVersion": CDI_VERSION,
        "kind": f"{CDI_VENDOR}/{DEVICE_CLASS}",
        "devices": devices,
        "containerEdits": {"deviceNodes": [{"path": p} for p in CONTROL_DEVICE_NODES]},
    }


@dataclass(frozen=True)
class ClaimDevice:
    """One prepared device as the claim spec needs it."""

    device_name: str
    uuid: str
    mps: MpsDaemon | None = None


def claim_spec(claim_uid: str, devices: Sequence[ClaimDevice]) -> Json:
    """The per-claim ``claim`` class spec.

    ``NVIDIA_VISIBLE_DEVICES`` (claim-wide, every UUID of the claim) is what CUDA images and
    the NVIDIA container toolkit read; each device also exports its own UUID under
    ``NVIDIA_DRA_DEVICE_<NAME>`` (CDI requires a non-empty edit per device, and a container
    given one request of a multi-request claim can tell which device is its own). MPS devices
    mount their daemon's pipe directory where CUDA looks for it.
    """
    entries: list[Json] = []
    for dev in devices:
        edits: Json = {"env": [f"{_env_name(dev.device_name)}={dev.uuid}"]}
        if dev.mps is not None:
            edits["env"].append(f"CUDA_MPS_PIPE_DIRECTORY={MPS_PIPE_IN_CONTAINER}")
            edits["mounts"] = [
                {
                    "hostPath": dev.mps.pipe_dir,
                    "containerPath": MPS_PIPE_IN_CONTAINER,
                    "options": ["rw", "nosuid", "nodev", "bind"],
                }
            ]
        entries.append({"name": claim_device_name(claim_uid, dev.device_name), "containerEdits": edits})
    uuids = ",".join(dict.fromkeys(d.uuid for d in devices if d.uuid))
    return {
        "cdiVersion": CDI_VERSION,
        "kind": f"{CDI_VENDOR}/{CLAIM_CLASS}",
        "devices": entries,
        "containerEdits": {"env": [f"NVIDIA_VISIBLE_DEVICES={uuids or 'void'}"]},
    }


def _dump(spec: Json) -> str:
    return json.dumps(spec, indent=2, sort_keys=True) + "\n"


@dataclass
class CdiWriter:
    """Writes and removes spec files in the CDI directory, atomically."""

    root: Path

    @property
    def device_spec_path(self) -> Path:
        return self.root / f"{CDI_VENDOR}-{DEVICE_CLASS}.json"

    def claim_spec_path(self, claim_uid: str) -> Path:
        return self.root / f"{CDI_VENDOR}-{CLAIM_CLASS}_{claim_uid}.json"

    def _write(self, path: Path, spec: Json) -> bool:
        text = _dump(spec)
        try:
            if path.read_text() == text:
                return False  # unchanged: keep the runtime's spec cache warm
        except FileNotFoundError:
            pass
        atomic_write(path, text)
        return True

    def write_device_spec(self, inventory: NodeGpuInventory, mig_caps: MigCapsResolver = no_mig_caps) -> bool:
        """Write the node-wide device spec; returns whether the file changed.

        A node without GPUs gets no file: a CDI spec without devices is invalid and would
        make the runtime reject the whole spec directory's cache refresh noisily.
        """
        if not inventory.gpus:
            existed = self.device_spec_path.exists()
            self.device_spec_path.unlink(missing_ok=True)
            return existed
        return self._write(self.device_spec_path, device_spec(inventory, mig_caps))

    def write_claim_spec(self, claim_uid: str, devices: Sequence[ClaimDevice]) -> Path:
        """Write the claim's spec (none for a claim with no devices of this driver)."""
        path = self.claim_spec_path(claim_uid)
        if devices:
            self._write(path, claim_spec(claim_uid, devices))
        else:
            path.unlink(missing_ok=True)
        return path

    def remove_claim_spec(self, claim_uid: str) -> None:
        self.claim_spec_path(claim_uid).unlink(missing_ok=True)


@dataclass
class ProcMigCaps:
    """Real MIG caps resolver: NVML GPU/compute instance ids + ``/proc`` mig-minors table.

    Access to a MIG device inside a container needs the ``nvidia-capN`` nodes of its GPU
    instance and compute instance; the driver publishes which N belongs to which
    ``gpu<minor>/gi<id>/ci<id>`` in ``/proc/driver/nvidia-caps/mig-minors``. Best effort: when
    anything is missing the device keeps only its parent's node and a warning is logged.
    """

    nvml: Any
    minors_file: Path = Path("/proc/driver/nvidia-caps/mig-minors")
    dev_dir: Path = Path("/dev/nvidia-caps")
    _warned: set[str] = field(default_factory=set, init=False, repr=False)

    def _table(self) -> dict[str, int]:
        table: dict[str, int] = {}
        for line in self.minors_file.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1].isdigit():
                table[parts[0]] = int(parts[1])
        return table

    def __call__(self, gpu: GpuInfo, mig: MigDeviceInfo) -> list[str]:
        try:
            handle = self.nvml.nvmlDeviceGetHandleByUUID(mig.uuid)
            gi = int(self.nvml.nvmlDeviceGetGpuInstanceId(handle))
            ci = int(self.nvml.nvmlDeviceGetComputeInstanceId(handle))
            table = self._table()
            keys = (f"gpu{gpu.minor}/gi{gi}/access", f"gpu{gpu.minor}/gi{gi}/ci{ci}/access")
            return [str(self.dev_dir / f"nvidia-cap{table[k]}") for k in keys]
        except Exception as exc:  # NVML errors, missing /proc file, unknown keys
            if mig.uuid not in self._warned:  # once per device, not once per resync
                self._warned.add(mig.uuid)
                log.warning("no nvidia-caps device nodes for MIG device %s: %s", mig.uuid, exc)
            return []
