"""The node agent's wire format: one versioned annotation plus a few queryable labels.

The operator summarizes a whole cluster from a single Node list call, so everything the node
agent learned must ride on the Node object itself (no per-node custom objects to fetch).

* ``blueprintd.io/gpu-facts`` (annotation): the full ``NodeGpuInventory`` as compact JSON,
  camelCase like every API object, default-valued fields omitted, keys sorted, plus
  ``"v": 1``. It is the source of truth; readers must reject a ``v`` they do not know and
  ignore fields they do not know within a ``v`` (fields may be added, never renamed).
* ``blueprintd.io/gpu.*`` / ``blueprintd.io/mig.*`` (labels): a summary for selectors and
  ``kubectl get nodes -L``. Labels cannot hold the detail (63 characters, restricted
  alphabet), so they are derived from the annotation and never read back by blueprintd.

Nothing in the format changes unless the hardware does: no timestamps, no counters. That
is what lets the agent compare and skip the write when nothing changed.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from blueprintd.api.facts import GpuInfo, MigDeviceInfo, NodeGpuInventory
from blueprintd.errors import ValidationError
from blueprintd.facts.catalog import gfd_product_name

ANNOTATION_KEY = "blueprintd.io/gpu-facts"
FORMAT_VERSION = 1

LABEL_PRODUCT = "blueprintd.io/gpu.product"
LABEL_COUNT = "blueprintd.io/gpu.count"
LABEL_MEMORY = "blueprintd.io/gpu.memory"
LABEL_FAMILY = "blueprintd.io/gpu.family"
LABEL_MIG_CAPABLE = "blueprintd.io/mig.capable"
LABEL_MIG_ENABLED = "blueprintd.io/mig.enabled"
LABEL_PARTIAL = "blueprintd.io/gpu-facts.partial"

#: Every label the agent owns; labels in this set that the inventory no longer implies are
#: removed from the Node.
AGENT_LABELS: tuple[str, ...] = (
    LABEL_PRODUCT,
    LABEL_COUNT,
    LABEL_MEMORY,
    LABEL_FAMILY,
    LABEL_MIG_CAPABLE,
    LABEL_MIG_ENABLED,
    LABEL_PARTIAL,
)

MIB = 1 << 20
_LABEL_VALUE_BAD = re.compile(r"[^A-Za-z0-9._-]+")


def inventory_document(inventory: NodeGpuInventory) -> dict[str, Any]:
    """The annotation's JSON object (the node name is the Node's own, so it is left out)."""
    doc = inventory.model_dump(by_alias=True, exclude_defaults=True, exclude={"node_name"}, mode="json")
    doc["v"] = FORMAT_VERSION
    return doc


def encode_inventory(inventory: NodeGpuInventory) -> str:
    """The annotation value: compact, key-sorted JSON, identical for identical hardware."""
    return json.dumps(inventory_document(inventory), separators=(",", ":"), sort_keys=True)


def _known_fields(model: type[BaseModel], data: Mapping[str, Any]) -> dict[str, Any]:
    """Keep the keys ``model`` knows (by alias or name): newer agents may add fields."""
    known = {f.alias or n for n, f in model.model_fields.items()} | set(model.model_fields)
    return {k: v for k, v in data.items() if k in known}


def decode_inventory(value: str, node_name: str = "") -> NodeGpuInventory:
    """Parse an annotation value; ``ValidationError`` for malformed JSON or an unknown ``v``."""
    try:
        doc = json.loads(value)
    except ValueError as exc:
        raise ValidationError(f"not JSON: {exc}", path=ANNOTATION_KEY, source=node_name) from exc
    if not isinstance(doc, dict):
        raise ValidationError("must be a JSON object", path=ANNOTATION_KEY, source=node_name)
    version = doc.get("v")
    if version != FORMAT_VERSION:
        raise ValidationError(
            f"format version {version!r} is not supported (this blueprintd reads v{FORMAT_VERSION})",
            path=ANNOTATION_KEY,
            source=node_name,
        )
    body = _known_fields(NodeGpuInventory, doc)
    gpus = []
    for raw in body.get("gpus") or []:
        if not isinstance(raw, dict):
            raise ValidationError("gpus[] entries must be objects", path=ANNOTATION_KEY, source=node_name)
        gpu = _known_fields(GpuInfo, raw)
        gpu["migDevices"] = [
            _known_fields(MigDeviceInfo, m) for m in raw.get("migDevices") or [] if isinstance(m, dict)
        ]
        gpus.append(gpu)
    body["gpus"] = gpus
    try:
        inventory = NodeGpuInventory.model_validate(body)
    except PydanticValidationError as exc:
        raise ValidationError(f"invalid inventory: {exc}", path=ANNOTATION_KEY, source=node_name) from exc
    inventory.node_name = node_name
    return inventory


# --- node-level summary ------------------------------------------------------------------


@dataclass(frozen=True)
class InventorySummary:
    """What a node's inventory says at node granularity (the unit pools are made of).

    A node with mixed GPU models is summarized by its most common model; the annotation keeps
    the per-GPU truth.
    """

    gpu_product: str  # GFD form, e.g. NVIDIA-H100-80GB-HBM3
    gpu_count: int | None  # None when discovery was partial and the true count is unknown
    gpu_memory_mib: int
    gpu_family: str
    compute_capability: str
    pci_device_id: str
    mig_capable: bool
    mig_enabled: bool


def summarize(inventory: NodeGpuInventory) -> InventorySummary | None:
    """Node-level facts from an inventory; None when it describes no GPU at all."""
    if not inventory.gpus:
        return None
    common = Counter(g.product_name for g in inventory.gpus).most_common()
    top = min(name for name, n in common if n == common[0][1])
    first = next(g for g in inventory.gpus if g.product_name == top)
    count: int | None
    if inventory.device_count:
        count = inventory.device_count
    elif not inventory.partial:
        count = len(inventory.gpus)
    else:
        count = None
    return InventorySummary(
        gpu_product=gfd_product_name(first.product_name),
        gpu_count=count,
        gpu_memory_mib=first.memory_bytes // MIB,
        gpu_family=first.architecture,
        compute_capability=first.compute_capability,
        pci_device_id=first.pci_device_id,
        mig_capable=any(g.mig_capable for g in inventory.gpus),
        mig_enabled=any(g.mig_enabled for g in inventory.gpus),
    )


def label_value(raw: str) -> str:
    """``raw`` made a valid label value: allowed characters only, ≤ 63, alphanumeric ends."""
    value = _LABEL_VALUE_BAD.sub("-", raw.strip())[:63]
    return value.strip("-_.")


def inventory_labels(inventory: NodeGpuInventory) -> dict[str, str]:
    """The agent's labels for this inventory (absent keys are to be removed from the Node)."""
    labels: dict[str, str] = {}
    summary = summarize(inventory)
    if summary is not None:
        labels[LABEL_PRODUCT] = label_value(summary.gpu_product)
        if summary.gpu_memory_mib:
            labels[LABEL_MEMORY] = str(summary.gpu_memory_mib)
        if summary.gpu_family:
            labels[LABEL_FAMILY] = summary.gpu_family
        labels[LABEL_MIG_CAPABLE] = "true" if summary.mig_capable else "false"
        labels[LABEL_MIG_ENABLED] = "true" if summary.mig_enabled else "false"
    labels[LABEL_COUNT] = str(inventory.device_count or len(inventory.gpus))
    if inventory.partial:
        labels[LABEL_PARTIAL] = "true"
    return {k: v for k, v in labels.items() if v}
