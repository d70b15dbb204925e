"""Inventory: what blueprintd applied to a cluster for one Blueprint (kept in MemberCluster status).

Pruning needs to know what was applied before, and that knowledge must survive operator
restarts and move between replicas, so it is part of the API, not operator memory.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from blueprintd.api.base import ApiModel
from blueprintd.api.ref import ObjectRef


def object_key(obj: dict[str, Any]) -> str:
    """``apiVersion|Kind|namespace|name``: the stored form of the object's ``ObjectRef``."""
    return ObjectRef.of(obj).key


class InventoryObject(ApiModel):
    key: str = Field(description="apiVersion|Kind|namespace|name")
    addon: str = Field(default="", description="Add-on that owns the object.")
    hash: str = Field(
        default="",
        description=(
            "Content hash of the object as applied: a live difference while the Blueprint still renders the same "
            "content is drift, handled by the add-on's drift mode."
        ),
    )

    @property
    def object_ref(self) -> ObjectRef:
        return ObjectRef.from_key(self.key)

    def ref(self) -> dict[str, Any]:
        """A minimal manifest naming the object (for get and delete)."""
        return self.object_ref.manifest()


class InventoryRelease(ApiModel):
    namespace: str = Field(description="Release namespace.")
    name: str = Field(description="Release name.")
    addon: str = Field(default="", description="Add-on that owns the release.")
    hash: str = Field(default="", description="Content hash of chart, version and values as installed.")


class Inventory(ApiModel):
    """Per Blueprint: the objects, Helm releases and node-label keys blueprintd manages."""

    blueprint: str = Field(default="", description="Blueprint name.")
    objects: list[InventoryObject] = Field(default_factory=list, description="Objects applied server-side.")
    releases: list[InventoryRelease] = Field(default_factory=list, description="Helm releases installed.")
    node_label_keys: list[str] = Field(default_factory=list, description="Node label keys blueprintd sets.")
    node_labels_hash: str = Field(default="", description="Content hash of the node labels as set.")
