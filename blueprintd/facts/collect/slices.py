"""Facts from DRA ResourceSlices published by NVIDIA's GPU driver (or the bundled one).

Schema (``resource.k8s.io/v1``, NVIDIA's attribute names): devices ``gpu-N`` with
``type=gpu``, ``gpu-N-mig-…`` with ``type=mig`` and ``parentUUID``, ``gpu-vfio-N`` with
``type=vfio``; attributes ``productName``, ``architecture``, ``cudaComputeCapability``,
``driverVersion``, ``cudaDriverVersion``, ``pcieBusID`` (unqualified names belong to the
driver's domain; fully qualified ``<driver>/<name>`` is accepted too); capacity ``memory``.

Consumers must only trust the highest ``spec.pool.generation`` of each pool: older slices are
leftovers of a publisher that has not finished replacing them. ``v1beta1`` slices (devices
nested under ``basic``) are read too, for clusters older than 1.34.
"""

from __future__ import annotations

import contextlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from blueprintd.api.facts import FactSource
from blueprintd.facts import catalog
from blueprintd.facts.collect.model import Observation
from blueprintd.facts.collect.normalize import bytes_to_mib, family, gfd_product, major_minor, quantity

DEFAULT_DRA_DRIVER = "gpu.nvidia.com"
_BUS_ID_ATTRIBUTES = ("pcieBusID", "pciBusID", "resource.kubernetes.io/pciBusID")


def latest_generation(slices: Iterable[Mapping[str, Any]], driver: str) -> list[Mapping[str, Any]]:
    """The slices of ``driver`` that belong to the newest generation of their pool."""
    by_pool: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    newest: dict[str, int] = {}
    for s in slices:
        spec = s.get("spec") or {}
        if spec.get("driver") != driver:
            continue
        pool = spec.get("pool") or {}
        name = str(pool.get("name", ""))
        gen = int(pool.get("generation", 0) or 0)
        by_pool[name].append(s)
        newest[name] = max(newest.get(name, gen), gen)
    return [
        s
        for name, items in sorted(by_pool.items())
        for s in items
        if int(((s.get("spec") or {}).get("pool") or {}).get("generation", 0) or 0) == newest[name]
    ]


def _attr_value(raw: Any) -> Any:
    if isinstance(raw, Mapping):
        for kind in ("string", "version", "int", "bool"):
            if kind in raw:
                return raw[kind]
        return None
    return raw


def device_attributes(device: Mapping[str, Any], driver: str) -> dict[str, Any]:
    """A device's attributes as plain values, driver-domain names unqualified."""
    body = device.get("basic") if isinstance(device.get("basic"), Mapping) else device
    out: dict[str, Any] = {}
    for key, raw in ((body or {}).get("attributes") or {}).items():
        name = str(key).removeprefix(f"{driver}/")
        out[name] = _attr_value(raw)
    return out


def device_capacity(device: Mapping[str, Any], driver: str) -> dict[str, Any]:
    body = device.get("basic") if isinstance(device.get("basic"), Mapping) else device
    out: dict[str, Any] = {}
    for key, raw in ((body or {}).get("capacity") or {}).items():
        value = raw.get("value") if isinstance(raw, Mapping) else raw
        out[str(key).removeprefix(f"{driver}/")] = value
    return out


def _dynamic(device: Mapping[str, Any]) -> bool:
    """A device drawn from shared counters: a MIG *possibility*, not an existing MIG device."""
    body = device.get("basic") if isinstance(device.get("basic"), Mapping) else device
    return bool((body or {}).get("consumesCounters"))


def _most_common(values: list[Any]) -> Any:
    if not values:
        return None
    counts = Counter(values).most_common()
    top = counts[0][1]
    return min((v for v, n in counts if n == top), key=str)


def slice_observations(
    slices: Iterable[Mapping[str, Any]], driver: str = DEFAULT_DRA_DRIVER
) -> dict[str, Observation]:
    """Per node name, what its ResourceSlices of ``driver`` say.

    The GPU count is the number of distinct physical GPUs behind the devices (a full GPU, the
    parent of MIG devices and a VFIO device of the same GPU count once, matched by PCI bus id
    or UUID). ``mig_enabled`` is true when a GPU is published as existing MIG devices, false
    when only full GPUs are published; counter-based (dynamic MIG) devices say nothing about
    the current mode.
    """
    devices_by_node: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for s in latest_generation(slices, driver):
        spec = s.get("spec") or {}
        node = spec.get("nodeName")
        if not node:
            continue  # network-attached or multi-node pools are not one node's hardware
        devices_by_node[str(node)].extend(spec.get("devices") or [])

    out: dict[str, Observation] = {}
    for node, devices in sorted(devices_by_node.items()):
        physical: set[str] = set()
        products, families, ccs, drivers, cudas, memories = [], [], [], [], [], []
        static_mig = dynamic_mig = full_gpu = False
        for device in devices:
            attrs = device_attributes(device, driver)
            kind = attrs.get("type")
            if kind not in ("gpu", "mig", "vfio"):
                continue
            bus = next((str(attrs[a]).lower() for a in _BUS_ID_ATTRIBUTES if attrs.get(a)), "")
            identity = attrs.get("parentUUID") if kind == "mig" else attrs.get("uuid")
            physical.add(bus or str(identity or device.get("name")))
            name = str(attrs.get("productName") or "")
            if kind == "vfio":
                known = catalog.lookup(name, str(attrs.get("deviceID") or ""))
                name = known.nvml_name if known else name
            if name:
                products.append(gfd_product(name))
            if attrs.get("architecture"):
                families.append(family(str(attrs["architecture"])))
            if attrs.get("cudaComputeCapability"):
                ccs.append(major_minor(str(attrs["cudaComputeCapability"])))
            if attrs.get("driverVersion"):
                drivers.append(str(attrs["driverVersion"]))
            if attrs.get("cudaDriverVersion"):
                cudas.append(major_minor(str(attrs["cudaDriverVersion"])))
            if kind == "gpu":
                full_gpu = True
                mem = device_capacity(device, driver).get("memory")
                if mem is not None:
                    with contextlib.suppress(ValueError):  # a malformed quantity: no memory fact
                        memories.append(bytes_to_mib(quantity(mem)))
            elif kind == "mig":
                if _dynamic(device):
                    dynamic_mig = True
                else:
                    static_mig = True
        if not physical:
            continue
        obs = Observation(node, FactSource.RESOURCE_SLICE)
        obs.put("gpu_product", _most_common(products))
        obs.put("gpu_count", len(physical))
        obs.put("gpu_memory_mib", _most_common(memories))
        obs.put("gpu_family", _most_common(families))
        obs.put("compute_capability", _most_common(ccs))
        obs.put("driver_version", _most_common(drivers))
        obs.put("cuda_driver_version", _most_common(cudas))
        if static_mig or dynamic_mig:
            obs.put("mig_capable", True)
        if static_mig:
            obs.put("mig_enabled", True)
        elif full_gpu and not dynamic_mig:
            obs.put("mig_enabled", False)
        out[node] = obs
    return out
