"""The inventory a fully applied DesiredState leaves behind (pure)."""

from __future__ import annotations

from typing import Any

from blueprintd.api.inventory import Inventory, InventoryObject, InventoryRelease, object_key

__all__ = ["Inventory", "InventoryObject", "InventoryRelease", "inventory_of", "object_key"]


def inventory_of(desired: Any) -> Inventory:
    """The inventory a fully applied ``DesiredState`` leaves behind."""
    inv = Inventory(blueprint=desired.blueprint)
    for step in desired.steps:
        if step.helm is not None:
            inv.releases.append(
                InventoryRelease(namespace=step.helm.namespace, name=step.helm.release_name, addon=step.addon)
            )
        for obj in step.manifests or []:
            inv.objects.append(InventoryObject(key=object_key(obj), addon=step.addon))
    inv.node_label_keys = sorted({k for g in desired.node_labels for k in g.labels})
    return inv
