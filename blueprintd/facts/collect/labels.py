"""Facts from Node objects: GPU Feature Discovery labels, the node agent's annotation, and
plain Node fields (capacity, GPU Operator labels).

All functions take a Node as the API returns it (a dict, camelCase) and do no I/O.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from blueprintd.api.facts import FactSource, WorkloadConfig
from blueprintd.errors import ValidationError
from blueprintd.facts import catalog
from blueprintd.facts.annotation import ANNOTATION_KEY, decode_inventory, summarize
from blueprintd.facts.collect.model import Observation
from blueprintd.facts.collect.normalize import gfd_product, to_int

log = logging.getLogger(__name__)

GFD = "nvidia.com/"
_MIG_COUNT = re.compile(r"^nvidia\.com/mig-(?P<profile>[0-9]+g\.[0-9]+gb(?:\+me)?)\.count$")
#: Extended resources on a Node that are not one GPU each, or not GPUs at all.
_NOT_PASSTHROUGH = {"gpu", "pgpu", "gpu.shared", "vgpu"}


def node_name(node: Mapping[str, Any]) -> str:
    return str((node.get("metadata") or {}).get("name", ""))


def node_labels(node: Mapping[str, Any]) -> dict[str, str]:
    return dict((node.get("metadata") or {}).get("labels") or {})


def _capacity(node: Mapping[str, Any]) -> dict[str, Any]:
    status = node.get("status") or {}
    return dict(status.get("capacity") or status.get("allocatable") or {})


SHARED_SUFFIX = "-SHARED"


def split_gfd_product(product: str) -> tuple[str, str, bool]:
    """GFD's product label -> (GPU product, MIG profile or '', shared).

    GFD builds the label as ``<GPU>[-MIG-<profile>][-SHARED]``: the MIG part under MIG
    strategy single, ``-SHARED`` when time-slicing or MPS hands out replicas without renaming
    the resource. Both describe the current configuration, not the hardware, so the product
    is what is left (``NVIDIA-L4-SHARED`` is an L4) and the rest becomes facts of its own.
    """
    shared = product.endswith(SHARED_SUFFIX)
    base, _, profile = product.removesuffix(SHARED_SUFFIX).partition("-MIG-")
    return base, profile, shared


def _driver_version(labels: Mapping[str, str]) -> str:
    # GFD's cuda.driver.* labels carry the *NVIDIA driver* version (550 / 54 / 15), the newer
    # cuda.driver-version.* the same with a clearer name; the CUDA version is cuda.runtime*.
    full = labels.get(GFD + "cuda.driver-version.full", "")
    if full:
        return full
    for prefix, rev in (("cuda.driver-version.", "revision"), ("cuda.driver.", "rev")):
        major = labels.get(GFD + prefix + "major", "")
        minor = labels.get(GFD + prefix + "minor", "")
        if major:
            parts = [major, minor, labels.get(GFD + prefix + rev, "")]
            return ".".join(p for p in parts if p)
    return ""


def _cuda_version(labels: Mapping[str, str]) -> str:
    full = labels.get(GFD + "cuda.runtime-version.full", "")
    if full:
        return full
    for prefix in ("cuda.runtime-version.", "cuda.runtime."):
        major = labels.get(GFD + prefix + "major", "")
        if major:
            return f"{major}.{labels.get(GFD + prefix + 'minor', '0') or '0'}"
    return ""


def gfd_observation(node: Mapping[str, Any]) -> Observation | None:
    """What GPU Feature Discovery's labels say; None when the node carries none.

    A ``-SHARED`` product suffix (sharing without renaming) is removed and recorded as
    ``sharing_strategy``. With MIG strategy ``single`` GFD describes the MIG *devices*: the
    product gets a ``-MIG-<profile>`` suffix and ``gpu.count`` / ``gpu.memory`` count and
    size MIG devices. The GPU count is then recovered by dividing by the profile's instances per GPU (exact
    for the ``all-<profile>`` layouts that strategy is used with); GPU memory is left to the
    catalog.
    """
    labels = node_labels(node)
    product_label = labels.get(GFD + "gpu.product", "")
    if not product_label and GFD + "gpu.count" not in labels:
        return None
    obs = Observation(node_name(node), FactSource.GFD)
    base, mig_profile, shared = split_gfd_product(product_label)
    strategy = labels.get(GFD + "mig.strategy", "")
    obs.put("gpu_product", gfd_product(base))
    count = to_int(labels.get(GFD + "gpu.count"))
    if mig_profile:
        obs.put("mig_enabled", True)
        obs.put("mig_capable", True)
        product = catalog.lookup(base)
        profiles = product.mig_profiles if product else ()
        per_gpu = next((p.max_count for p in profiles if p.name == mig_profile), 0)
        if count is not None and per_gpu and count % per_gpu == 0:
            count //= per_gpu
        # Otherwise the label is not GFD's MIG-device count (seen with hand-made labels): a
        # GPU count is the only reading that is not certainly wrong.
        obs.put("gpu_count", count)
    else:
        obs.put("gpu_count", count)
        obs.put("gpu_memory_mib", to_int(labels.get(GFD + "gpu.memory")))
        if strategy == "mixed":
            mig_devices = sum(to_int(v) or 0 for k, v in labels.items() if _MIG_COUNT.match(k))
            obs.put("mig_enabled", mig_devices > 0)
        elif strategy == "single":
            obs.put("mig_enabled", False)
    obs.put("gpu_family", labels.get(GFD + "gpu.family", ""))
    major, minor = labels.get(GFD + "gpu.compute.major", ""), labels.get(GFD + "gpu.compute.minor", "")
    if major:
        obs.put("compute_capability", f"{major}.{minor or '0'}")
    capable = labels.get(GFD + "mig.capable", "")
    if capable in ("true", "false"):
        obs.put("mig_capable", capable == "true")
    obs.put("mig_strategy", strategy)
    sharing = labels.get(GFD + "gpu.sharing-strategy", "")
    if shared and sharing in ("", "none"):
        # GFD releases before the sharing-strategy label only shared by time-slicing.
        sharing = "time-slicing"
    obs.put("sharing_strategy", sharing)
    obs.put("driver_version", _driver_version(labels))
    obs.put("cuda_driver_version", _cuda_version(labels))
    return obs


def agent_observation(node: Mapping[str, Any]) -> Observation | None:
    """What the blueprintd node agent published in its annotation; None without one.

    A malformed annotation, or one in a format version this code does not know, is ignored
    (logged): the other sources still describe the node.
    """
    name = node_name(node)
    raw = ((node.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_KEY)
    if raw is None:
        return None
    try:
        inventory = decode_inventory(str(raw), name)
    except ValidationError as err:
        log.warning("ignoring node agent annotation: %s", err)
        return None
    obs = Observation(name, FactSource.NODE_AGENT)
    obs.put("driver_version", inventory.driver_version)
    obs.put("cuda_driver_version", inventory.cuda_driver_version)
    summary = summarize(inventory)
    if summary is None:
        if not inventory.partial:  # NVML ran fine and found no GPU: that is a fact too
            obs.put("gpu_count", 0)
        return obs
    obs.put("gpu_product", summary.gpu_product)
    obs.put("gpu_count", summary.gpu_count)
    obs.put("gpu_memory_mib", summary.gpu_memory_mib or None)
    obs.put("gpu_family", summary.gpu_family)
    obs.put("compute_capability", summary.compute_capability)
    obs.put("pci_device_id", summary.pci_device_id)
    obs.put("mig_capable", summary.mig_capable)
    obs.put("mig_enabled", summary.mig_enabled)
    return obs


def passthrough_product(resource: str) -> catalog.GpuProduct | None:
    """The catalog product behind a sandbox device plugin resource name.

    NVIDIA's sandbox (VFIO) device plugin advertises one resource per PCI device name, e.g.
    ``nvidia.com/GH100_H100_SXM5_80GB`` or ``nvidia.com/GA100_A100_SXM4_80GB``: the chip
    code name, then words of the marketing name. The product sharing the most words with
    the catalog's NVML name wins (the chip code, ``NVIDIA`` and ``Tesla`` do not count).
    """
    words = {w for w in re.split(r"[_\-\s\[\]]+", resource.upper()) if w}
    best: tuple[int, int, catalog.GpuProduct | None] = (0, 0, None)
    for product in catalog.PRODUCTS:
        name_words = {w for w in re.split(r"[\s\-]+", product.nvml_name.upper()) if w} - {"NVIDIA", "TESLA"}
        score = len(words & name_words)
        # Tie-break: the product with fewer unmatched words (H100 SXM5 80GB -> "H100 80GB HBM3"
        # over "H100 96GB HBM3").
        rank = (score, -len(name_words - words), product)
        if score and (rank[0], rank[1]) > (best[0], best[1]):
            best = rank
    return best[2]


def node_observation(node: Mapping[str, Any]) -> Observation:
    """Plain Node facts: GPU Operator labels and extended-resource capacity.

    ``nvidia.com/gpu`` capacity counts what the device plugin hands out, which is MIG devices
    under MIG strategy single and GPUs x replicas under time-slicing; it is only read as a GPU
    count when neither applies.
    """
    labels = node_labels(node)
    capacity = _capacity(node)
    obs = Observation(node_name(node), FactSource.NODE)
    workload = labels.get(GFD + "gpu.workload.config", "")
    if workload in {w.value for w in WorkloadConfig}:
        obs.put("workload_config", workload)
        obs.put("sandbox", workload != WorkloadConfig.CONTAINER.value)
    mig_config = labels.get(GFD + "mig.config", "")
    obs.put("mig_config", mig_config)
    if mig_config and labels.get(GFD + "mig.config.state") == "success":
        obs.put("mig_enabled", mig_config != "all-disabled")
    _, mig_profile, _ = split_gfd_product(labels.get(GFD + "gpu.product", ""))
    gpus = to_int(capacity.get(GFD + "gpu"))
    replicas = to_int(labels.get(GFD + "gpu.replicas")) or 1
    if gpus and not mig_profile:
        obs.put("gpu_count", gpus // replicas if gpus % replicas == 0 else gpus)
    passthrough = 0
    for resource, value in capacity.items():
        name = resource.removeprefix(GFD)
        if not resource.startswith(GFD) or name in _NOT_PASSTHROUGH or name.startswith("mig-"):
            continue
        product = passthrough_product(name)
        if product is not None and (to_int(value) or 0) > 0:
            obs.put("gpu_product", product.gfd_product)
            passthrough += to_int(value) or 0
    if not passthrough:
        passthrough = to_int(capacity.get(GFD + "pgpu")) or 0
    if passthrough:
        obs.put("gpu_count", passthrough)
    return obs
