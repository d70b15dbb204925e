"""The identity of one object in a cluster: the one type every part of blueprintd names objects with.

The planner's actions, the inventory kept in MemberCluster status, the manifest checks and the
render engine, the cluster adapters and drift detection all say "which object" with
:class:`ObjectRef`. It is a named tuple, so it unpacks and compares like the
``(apiVersion, kind, namespace, name)`` tuples it replaced, and hashes for use as a key.
Text forms are for output and storage only and are produced here: ``str(ref)`` for people
(``ConfigMap ns/name``, ``HelmRelease ns/name``, ``Node name``) and :attr:`ObjectRef.key` for
the inventory's wire format (``apiVersion|Kind|namespace|name``), parsed back only by
:meth:`ObjectRef.from_key` when status is read. No identity is recovered from display text.

It is also a pydantic field type: API models (the DriftReport's ``object`` and ``protected``)
store it as ``{apiVersion, kind, namespace, name}`` (namespace left out when cluster-scoped),
so the wire model and the identity the code uses are the same value, with no conversions.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

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

    @classmethod
    def from_wire(cls, data: Any) -> ObjectRef:
        """Parse the stored object form (:meth:`to_wire`); raises ValueError naming the bad field.
        A missing or null namespace is cluster-scoped (""); snake_case keys are accepted too,
        as for every API model."""
        if isinstance(data, cls):
            return data
        if not isinstance(data, dict):
            raise ValueError(f"object reference must be a mapping with apiVersion, kind and name, not {data!r}")
        keys = {"apiVersion": "api_version", "kind": "kind", "namespace": "namespace", "name": "name"}
        unknown = sorted(k for k in data if k not in keys and k not in keys.values())
        if unknown:
            raise ValueError(f"object reference: unknown field(s) {', '.join(unknown)}; allowed: {', '.join(keys)}")
        parts: dict[str, str] = {}
        for wire, attr in keys.items():
            value = data.get(wire, data.get(attr))
            if value is None and attr == "namespace":
                value = ""
            if value is None:
                raise ValueError(f"object reference: {wire} is required")
            if not isinstance(value, str):
                raise ValueError(f"object reference: {wire} must be a string, not {value!r}")
            parts[attr] = value
        return cls(**parts)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        """Validated by :meth:`from_wire`, serialised by :meth:`to_wire` (in Python and JSON mode)."""
        return core_schema.no_info_plain_validator_function(
            cls.from_wire, serialization=core_schema.plain_serializer_function_ser_schema(cls.to_wire)
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        """The stored form's schema (what the CRD publishes and ``kubectl explain`` shows)."""
        return {
            "type": "object",
            "properties": {
                "apiVersion": {
                    "type": "string",
                    "description": "apiVersion, e.g. apps/v1 (helm.sh/v3 for a Helm release).",
                },
                "kind": {"type": "string", "description": "Kind, e.g. DaemonSet (HelmRelease for a Helm release)."},
                "name": {"type": "string", "description": "Name."},
                "namespace": {"type": "string", "description": "Namespace, for namespaced kinds."},
            },
            "required": ["apiVersion", "kind", "name"],
            "description": "A Kubernetes object in the member cluster.",
        }

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
