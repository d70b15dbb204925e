"""The identity of one object in a cluster: the one type every part of blueprintd names objects with.

The planner's actions, the inventory kept in MemberCluster status, the manifest checks and the
render engine, the cluster adapters and drift detection all say "which object" with
:class:`ObjectRef`. It is a named tuple, so it unpacks and compares like the
``(apiVersion, kind, namespace, name)`` tuples it replaced, and hashes for use as a key.
Text forms are for output and storage only and are produced here: ``str(ref)`` for people
(``ConfigMap ns/name``, ``HelmRelease ns/name``, ``Node name``) and :attr:`ObjectRef.key` for
the inventory's wire format (``apiVersion|Kind|namespace|name``), parsed back only by
:meth:`ObjectRef.from_key` when status is read. No identity is recovered from display text.
"""

from __future__ import annotations

from typing import Any, NamedTuple

RELEASE_API_VERSION = "helm.sh/v3"  # what a Helm release is called when it is a drift target
RELEASE_KIND = "HelmRelease"


class ObjectRef(NamedTuple):
    """apiVersion, kind, namespace ("" for cluster-scoped) and name of an object (or of a Helm
    release or node, for plan actions and drift targets)."""

    api_version: str
    kind: str
    namespace: str
    name: str

    @classmethod
    def of(cls, obj: dict[str, Any]) -> ObjectRef:
        """The identity of a manifest or live object (missing parts are '')."""
        meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
        assert isinstance(meta, dict)
        return cls(
            str(obj.get("apiVersion", "")),
            str(obj.get("kind", "")),
            str(meta.get("namespace") or ""),
            str(meta.get("name", "")),
        )

    @classmethod
    def release(cls, namespace: str, name: str) -> ObjectRef:
        return cls(RELEASE_API_VERSION, RELEASE_KIND, namespace, name)

    @classmethod
    def node(cls, name: str) -> ObjectRef:
        return cls("v1", "Node", "", name)

    @classmethod
    def from_key(cls, key: str) -> ObjectRef:
        """Parse the inventory's stored form (:attr:`key`); raises ValueError on anything else."""
        parts = key.split("|", 3)
        if len(parts) != 4:
            raise ValueError(f"inventory object key {key!r}: expected apiVersion|Kind|namespace|name")
        return cls(*parts)

    @property
    def key(self) -> str:
        """``apiVersion|Kind|namespace|name``: how the inventory in MemberCluster status stores it."""
        return "|".join(self)

    def __str__(self) -> str:
        ns = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {ns}{self.name}"

    def to_wire(self) -> dict[str, Any]:
        out = {"apiVersion": self.api_version, "kind": self.kind, "name": self.name}
        if self.namespace:
            out["namespace"] = self.namespace
        return out

    def manifest(self) -> dict[str, Any]:
        """A minimal object naming this one (what get/delete calls need)."""
        meta: dict[str, Any] = {"name": self.name}
        if self.namespace:
            meta["namespace"] = self.namespace
        return {"apiVersion": self.api_version, "kind": self.kind, "metadata": meta}
