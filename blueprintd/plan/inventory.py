"""The inventory a fully applied DesiredState leaves behind (pure).

Besides *what* was applied, it records a content hash of each object, release and of the node
labels. With it the planner tells the two reasons a live object can differ from the render
apart: the Blueprint changed (apply it) or someone changed the cluster while the Blueprint
did not (drift: the add-on's drift mode decides, so ``notify`` and ``block`` add-ons are not
silently overwritten by the next periodic reconcile).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from blueprintd.api.inventory import Inventory, InventoryObject, InventoryRelease, object_key

__all__ = [
    "Inventory",
    "InventoryObject",
    "InventoryRelease",
    "content_hash",
    "inventory_of",
    "node_labels_hash",
    "object_key",
    "release_hash",
]


def content_hash(value: Any) -> str:
    """Short, stable hash of JSON-able content (sorted keys)."""
    raw = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def release_hash(helm: Any) -> str:
    """Hash of what a Helm step installs: chart, version and values (not the repository URL,
    which a chart mirror may change without changing the release)."""
    return content_hash({"chart": helm.chart, "version": helm.version, "values": helm.values})


def node_labels_hash(wanted: dict[str, dict[str, str]]) -> str:
    return content_hash(wanted) if wanted else ""


def inventory_of(desired: Any) -> Inventory:
    """The inventory a fully applied ``DesiredState`` leaves behind."""
    from blueprintd.plan.planner import desired_objects, wanted_node_labels

    inv = Inventory(blueprint=desired.blueprint)
    for step in desired.steps:
        if step.helm is not None:
            inv.releases.append(
                InventoryRelease(
                    namespace=step.helm.namespace,
                    name=step.helm.release_name,
                    addon=step.addon,
                    hash=release_hash(step.helm),
                )
            )
        for obj in desired_objects(desired, step):
            inv.objects.append(InventoryObject(key=object_key(obj), addon=step.addon, hash=content_hash(obj)))
    inv.node_label_keys = sorted({k for g in desired.node_labels for k in g.labels})
    inv.node_labels_hash = node_labels_hash(wanted_node_labels(desired))
    return inv
