"""ResourceSlices from a node's GPU inventory, and the pure plan to publish them (no I/O).

What a node offers to the scheduler is a set of ``resource.k8s.io/v1`` ResourceSlices: one
pool per node (pool name = node name), devices named and attributed exactly like NVIDIA's DRA
driver for GPUs, so DeviceClasses and CEL selectors written for that driver
(``device.attributes['gpu.nvidia.com'].productName``) select the same devices here.

Decisions worth knowing:

* **MIG-enabled GPUs publish their MIG devices, not themselves.** A GPU in MIG mode cannot run
  a full-GPU workload, so advertising it would invite allocations that fail at prepare time.
  This matches NVIDIA's driver. A MIG-enabled GPU with no MIG devices publishes nothing.
* **GPUs with a pending MIG mode change are not published**: the pending reset would yank the
  device from under any pod it was allocated to; the next resync after the reset publishes
  whatever the GPU became.
* ``version`` attributes must be semantic versions; NVML reports ``9.0``, ``12.4`` or
  ``535.104.05`` (a leading zero is not valid semver), so they are normalised
  (``9.0.0``, ``12.4.0``, ``535.104.5``) the way NVIDIA's driver does.
* Device names are DNS labels: MIG profiles lose their dots and ``+`` becomes ``-``
  (``1g.10gb+me`` -> ``1g10gb-me``).
* More than 128 devices are split into several slices of one pool, each carrying
  ``resourceSliceCount`` so consumers know when they have seen the whole pool.
* ``spec.pool.generation`` is bumped whenever anything in the pool has to be rewritten (a
  device set change, or a slice someone deleted): consumers only trust the highest generation,
  so a bump on every write can never leave a stale device visible. Nothing to change means no
  write at all.
* **Time-slicing is consumable capacity.** On a node whose pool is time-sliced (the
  ``time-slicing`` overlay labels it ``blueprintd.io/time-slicing-replicas: "<replicas>"``),
  every whole GPU is published with ``allowMultipleAllocations: true`` and a capacity
  ``timeSlices`` of ``replicas`` whose request policy consumes 1 per claim by default (a claim
  may ask for up to ``replicas`` with ``capacity.requests.timeSlices``). The scheduler then
  places at most ``replicas`` claims on one GPU (Kubernetes 1.37 DRA consumable capacity,
  beta and on by default: feature gate ``DRAConsumableCapacity``). ``memory`` stays the GPU's
  full memory but a claim consumes none of it unless it asks: time-slicing does not partition
  memory. MIG devices are never shared this way: a MIG device is a whole device per claim.
"""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from blueprintd.api.facts import GpuInfo, MigDeviceInfo, NodeGpuInventory

RESOURCE_API_VERSION = "resource.k8s.io/v1"
MAX_DEVICES_PER_SLICE = 128
PCIE_ROOT_ATTRIBUTE = "resource.kubernetes.io/pcieRoot"
MAX_STRING_ATTRIBUTE = 64
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "blueprintd-dra-driver"
TIME_SLICING_LABEL = "blueprintd.io/time-slicing-replicas"
TIME_SLICES = "timeSlices"

# Resolves a PCI bus id (as NVML reports it) to the PCIe root complex ("pci0000:00").
PcieRootResolver = Callable[[str], "str | None"]

Json = dict[str, Any]

_BUS_ID = re.compile(r"^(?:(?P<domain>[0-9a-fA-F]{1,8}):)?(?P<bus>[0-9a-fA-F]{2}):[0-9a-fA-F]{2}\.[0-7]$")


# --- attribute helpers -------------------------------------------------------------------


def to_semver(raw: str) -> str | None:
    """``9.0`` -> ``9.0.0``, ``535.104.05`` -> ``535.104.5``; None when not numeric.

    The API server rejects a ``version`` attribute that is not strict semver; padding to three
    components and dropping leading zeros is what NVIDIA's driver (Masterminds/semver) does.
    """
    parts = raw.strip().lstrip("vV").split(".")
    if not raw.strip() or len(parts) > 3 or not all(p.isdigit() for p in parts):
        return None
    nums = [int(p) for p in parts] + [0] * (3 - len(parts))
    return ".".join(str(n) for n in nums)


def bus_id_pcie_root(bus_id: str) -> str | None:
    """The PCIe root named after the device's own domain and bus: ``pci<domain>:<bus>``.

    Used when sysfs cannot tell the real root complex (fake NVML, containers without /sys):
    a device's own bus is never shared with a GPU behind another root, so this can only
    under-report alignment (two GPUs behind one switch look unaligned), never fake it.
    """
    m = _BUS_ID.match(bus_id.strip())
    if not m:
        return None
    domain = int(m.group("domain") or "0", 16)
    return f"pci{domain:04x}:{m.group('bus').lower()}"


def mig_device_name(parent_minor: int, mig: MigDeviceInfo) -> str:
    """NVIDIA's MIG device name: ``gpu-<parentMinor>-mig-<profile>-<giProfileId>-<start>``."""
    profile = mig.profile.lower().replace(".", "").replace("+", "-")
    return f"gpu-{parent_minor}-mig-{profile}-{mig.gi_profile_id}-{mig.placement_start}"


def gpu_device_name(gpu: GpuInfo) -> str:
    return f"gpu-{gpu.minor}"


def bytes_quantity(n: int) -> str:
    """Bytes as a Kubernetes Quantity, binary suffix when exact (``80Gi``), else plain."""
    if n > 0 and n % (1 << 30) == 0:
        return f"{n >> 30}Gi"
    if n > 0 and n % (1 << 20) == 0:
        return f"{n >> 20}Mi"
    return str(n)


_SUFFIX: Mapping[str, Decimal] = {
    "": Decimal(1),
    "Ki": Decimal(1 << 10),
    "Mi": Decimal(1 << 20),
    "Gi": Decimal(1 << 30),
    "Ti": Decimal(1 << 40),
    "Pi": Decimal(1 << 50),
    "Ei": Decimal(1 << 60),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal(10**3),
    "M": Decimal(10**6),
    "G": Decimal(10**9),
    "T": Decimal(10**12),
    "P": Decimal(10**15),
    "E": Decimal(10**18),
}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]{0,2})$")


def quantity_value(q: str | int) -> Decimal:
    """A Quantity's numeric value, so ``80Gi`` and ``85899345920`` compare equal.

    The API server rewrites quantities into canonical form (``81559552000`` comes back as
    ``81559552k``); comparing values instead of strings keeps the publisher from rewriting
    unchanged slices forever.
    """
    text = str(q).strip()
    m = _QUANTITY.match(text)
    if not m or m.group(2) not in _SUFFIX:
        raise ValueError(f"not a Kubernetes quantity: {q!r}")
    try:
        return Decimal(m.group(1)) * _SUFFIX[m.group(2)]
    except InvalidOperation as exc:  # pragma: no cover - regex admits only numbers
        raise ValueError(f"not a Kubernetes quantity: {q!r}") from exc


def _string(value: str) -> Json:
    return {"string": value[:MAX_STRING_ATTRIBUTE]}


def _common_attributes(inv: NodeGpuInventory, gpu: GpuInfo, pcie_root: PcieRootResolver) -> Json:
    attrs: Json = {}
    if gpu.product_name:
        attrs["productName"] = _string(gpu.product_name)
    if gpu.brand:
        attrs["brand"] = _string(gpu.brand)
    if gpu.architecture:
        attrs["architecture"] = _string(gpu.architecture)
    for key, raw in (
        ("cudaComputeCapability", gpu.compute_capability),
        ("driverVersion", inv.driver_version),
        ("cudaDriverVersion", inv.cuda_driver_version),
    ):
        version = to_semver(raw) if raw else None
        if version:
            attrs[key] = {"version": version}
    if gpu.pci_bus_id:
        attrs["pcieBusID"] = _string(gpu.pci_bus_id.lower())
        root = pcie_root(gpu.pci_bus_id)
        if root:
            attrs[PCIE_ROOT_ATTRIBUTE] = _string(root)
    return attrs


def time_slicing_replicas(labels: Mapping[str, str]) -> int | None:
    """The node's time-slicing replicas from its label; None when absent or not a count >= 2
    (one replica is no sharing)."""
    raw = labels.get(TIME_SLICING_LABEL, "").strip()
    if not raw.isdigit() or int(raw) < 2:
        return None
    return int(raw)


def gpu_device(
    inv: NodeGpuInventory,
    gpu: GpuInfo,
    pcie_root: PcieRootResolver = bus_id_pcie_root,
    replicas: int | None = None,
) -> Json:
    """The v1 Device for a whole GPU; shareable by up to ``replicas`` claims when given."""
    attrs: Json = {"type": _string("gpu"), "uuid": _string(gpu.uuid)}
    attrs.update(_common_attributes(inv, gpu, pcie_root))
    memory: Json = {"value": bytes_quantity(gpu.memory_bytes)}
    device: Json = {"name": gpu_device_name(gpu), "attributes": attrs, "capacity": {"memory": memory}}
    if replicas:
        device["allowMultipleAllocations"] = True
        memory["requestPolicy"] = {"default": "0", "validRange": {"min": "0"}}
        device["capacity"][TIME_SLICES] = {
            "value": str(replicas),
            "requestPolicy": {"default": "1", "validRange": {"min": "1", "max": str(replicas), "step": "1"}},
        }
    return device


def mig_device(
    inv: NodeGpuInventory, gpu: GpuInfo, mig: MigDeviceInfo, pcie_root: PcieRootResolver = bus_id_pcie_root
) -> Json:
    """The v1 Device for one existing MIG device of ``gpu``."""
    attrs: Json = {
        "type": _string("mig"),
        "uuid": _string(mig.uuid),
        "parentUUID": _string(gpu.uuid),
        "profile": _string(mig.profile),
    }
    attrs.update(_common_attributes(inv, gpu, pcie_root))
    capacity = {
        "multiprocessors": mig.multiprocessors,
        "copyEngines": mig.copy_engines,
        "decoders": mig.decoders,
        "encoders": mig.encoders,
        "jpegEngines": mig.jpeg_engines,
        "ofaEngines": mig.ofa_engines,
    }
    cap: Json = {k: {"value": str(v)} for k, v in capacity.items()}
    cap["memory"] = {"value": bytes_quantity(mig.memory_bytes)}
    return {"name": mig_device_name(gpu.minor, mig), "attributes": attrs, "capacity": cap}


def published_devices(inv: NodeGpuInventory) -> Iterator[tuple[str, GpuInfo, MigDeviceInfo | None]]:
    """``(device name, GPU, MIG device or None)`` for every device the node offers.

    The single statement of the publication rules (MIG mode publishes MIG devices, pending
    MIG changes publish nothing), shared by slice building and by prepare, which must refuse
    exactly the devices that are not published. Stable order: GPU minor, then MIG placement.
    """
    for gpu in sorted(inv.gpus, key=lambda g: g.minor):
        if gpu.mig_pending:
            continue
        if gpu.mig_enabled:
            for mig in sorted(gpu.mig_devices, key=lambda m: (m.placement_start, m.gi_profile_id, m.uuid)):
                yield mig_device_name(gpu.minor, mig), gpu, mig
        else:
            yield gpu_device_name(gpu), gpu, None


def inventory_devices(
    inv: NodeGpuInventory, pcie_root: PcieRootResolver = bus_id_pcie_root, replicas: int | None = None
) -> list[Json]:
    """Every published device as a v1 Device dict (whole GPUs shareable when ``replicas``)."""
    return [
        gpu_device(inv, gpu, pcie_root, replicas) if mig is None else mig_device(inv, gpu, mig, pcie_root)
        for _, gpu, mig in published_devices(inv)
    ]


# --- slices ------------------------------------------------------------------------------


def slice_name(node_name: str, driver_name: str, index: int) -> str:
    """Deterministic slice name, so a restarted plugin finds and updates its own slices.

    ``<node>-<driver>-<index>``, shortened with a hash when it would pass the 253-character
    DNS-subdomain limit.
    """
    name = f"{node_name}-{driver_name}-{index}".lower()
    if len(name) <= 253:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    return f"{name[: 253 - 12]}-{digest}-{index}"[:253]


def build_slices(
    inventory: NodeGpuInventory,
    driver_name: str,
    node_name: str,
    *,
    generation: int = 1,
    pcie_root: PcieRootResolver = bus_id_pcie_root,
    max_devices: int = MAX_DEVICES_PER_SLICE,
    time_slicing_replicas: int | None = None,
) -> list[Json]:
    """The node's ResourceSlices (``resource.k8s.io/v1`` dicts) for one pool generation.

    A node without devices still gets one empty slice: it tells the scheduler the driver
    runs on the node and has nothing to offer, which differs from "driver not there yet".
    """
    devices = inventory_devices(inventory, pcie_root, time_slicing_replicas)
    chunks = [devices[i : i + max_devices] for i in range(0, len(devices), max_devices)] or [[]]
    slices = []
    for index, chunk in enumerate(chunks):
        slices.append(
            {
                "apiVersion": RESOURCE_API_VERSION,
                "kind": "ResourceSlice",
                "metadata": {
                    "name": slice_name(node_name, driver_name, index),
                    "labels": {MANAGED_BY_LABEL: MANAGED_BY},
                },
                "spec": {
                    "driver": driver_name,
                    "nodeName": node_name,
                    "pool": {"name": node_name, "generation": generation, "resourceSliceCount": len(chunks)},
                    "devices": chunk,
                },
            }
        )
    return slices


# --- publication plan --------------------------------------------------------------------


@dataclass
class PublishPlan:
    """What the publisher must write to make the API server match the desired slices."""

    generation: int
    create: list[Json] = field(default_factory=list)
    update: list[Json] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.create or self.update or self.delete)


def _norm_policy(policy: Mapping[str, Any] | None) -> Json | None:
    if not policy:
        return None
    rng = policy.get("validRange") or {}
    return {
        "default": quantity_value(policy["default"]) if "default" in policy else None,
        "validValues": [quantity_value(v) for v in policy.get("validValues") or []],
        "validRange": {k: quantity_value(v) for k, v in rng.items()},
    }


def _norm_device(dev: Mapping[str, Any]) -> Json:
    capacity = {
        k: (quantity_value(v.get("value", "0")), _norm_policy(v.get("requestPolicy")))
        for k, v in (dev.get("capacity") or {}).items()
    }
    return {
        "name": dev.get("name"),
        "attributes": dev.get("attributes") or {},
        "capacity": capacity,
        "allowMultipleAllocations": bool(dev.get("allowMultipleAllocations")),
    }


def _norm_spec(spec: Mapping[str, Any]) -> Json:
    """The fields this driver owns, comparable across our dicts and API-server responses."""
    pool = spec.get("pool") or {}
    return {
        "driver": spec.get("driver"),
        "nodeName": spec.get("nodeName"),
        "poolName": pool.get("name"),
        "resourceSliceCount": pool.get("resourceSliceCount", 1),
        "devices": [_norm_device(d) for d in spec.get("devices") or []],
    }


def device_names(slices: Sequence[Mapping[str, Any]]) -> set[str]:
    return {str(d.get("name")) for s in slices for d in (s.get("spec", {}).get("devices") or [])}


def plan_publication(desired: Sequence[Json], existing: Sequence[Mapping[str, Any]]) -> PublishPlan:
    """Decide creates/updates/deletes and the pool generation (pure).

    ``desired`` comes from :func:`build_slices` (its generation is ignored); ``existing`` are
    the slices the API server holds for this driver and node. If every desired slice exists
    with identical content at one common generation and nothing extra exists, the plan is
    empty. Otherwise every desired slice is written at ``max(existing generation) + 1`` and
    leftovers are deleted, so consumers never mix old and new devices.
    """
    current = max((int(s.get("spec", {}).get("pool", {}).get("generation", 0)) for s in existing), default=0)
    by_name = {str(s.get("metadata", {}).get("name")): s for s in existing}
    desired_names = [str(s["metadata"]["name"]) for s in desired]
    unchanged = (
        bool(existing)
        and set(by_name) == set(desired_names)
        and all(int(s.get("spec", {}).get("pool", {}).get("generation", 0)) == current for s in existing)
        and all(
            _norm_spec(by_name[n]["spec"]) == _norm_spec(d["spec"])
            for n, d in zip(desired_names, desired, strict=True)
        )
    )
    if unchanged:
        return PublishPlan(generation=current)
    generation = current + 1
    plan = PublishPlan(generation=generation)
    for name, want in zip(desired_names, desired, strict=True):
        body = copy.deepcopy(want)
        body["spec"]["pool"]["generation"] = generation
        if name in by_name:
            rv = by_name[name].get("metadata", {}).get("resourceVersion")
            if rv:
                body["metadata"]["resourceVersion"] = rv
            plan.update.append(body)
        else:
            plan.create.append(body)
    plan.delete = sorted(set(by_name) - set(desired_names))
    return plan
