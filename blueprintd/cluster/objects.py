"""Plain Kubernetes objects in a member cluster: read, server-side apply, delete, label nodes.

Manifests and policies are applied with server-side apply under blueprintd's own field
manager, so the API server records exactly which fields the blueprint owns; drift detection
and pruning rely on that. Reads go through the same dynamic client so one code path serves
every kind, including CRDs an add-on installed a moment ago.
"""

from __future__ import annotations

import contextlib
from typing import Any

from blueprintd.api.ref import ObjectRef as ObjectRef  # re-exported: the adapters name objects with it
from blueprintd.cluster.discovery import Discovery
from blueprintd.cluster.fence import WriteCheck, unfenced
from blueprintd.errors import ClusterError

FIELD_MANAGER = "blueprintd"


class ApplyError(ClusterError):
    """The API server refused an object; the message carries its reason."""


class ObjectClient:
    """Typed-by-GVK access to one cluster through the dynamic client."""

    def __init__(
        self,
        api_client: Any,
        field_manager: str = FIELD_MANAGER,
        *,
        before_write: WriteCheck = unfenced,
        discovery: Discovery | None = None,
    ) -> None:
        """``before_write``: called right before every write is sent (the shard fence,
        ``blueprintd.cluster.fence``); it raises to stop the write. ``discovery``: the API
        discovery of ``api_client``, shared with the client's other users (a session's)."""
        self.api_client = api_client
        self.field_manager = field_manager
        self.before_write = before_write
        self.discovery = discovery or Discovery(api_client)

    def _resource(self, api_version: str, kind: str) -> Any:
        from kubernetes.dynamic.exceptions import ResourceNotFoundError

        try:
            return self.discovery.resource(api_version, kind)
        except ResourceNotFoundError:
            raise ApplyError(
                f"the cluster does not serve {kind} ({api_version}); is the add-on that installs its CRD "
                "listed in dependsOn?"
            ) from None

    def namespaced(self, api_version: str, kind: str) -> bool:
        return bool(self._resource(api_version, kind).namespaced)

    def get(self, ref: ObjectRef) -> dict[str, Any] | None:
        from kubernetes.client.rest import ApiException

        res = self._resource(ref.api_version, ref.kind)
        try:
            obj = res.get(name=ref.name, namespace=ref.namespace or None)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise ApplyError(f"reading {ref}: {_reason(exc)}") from None
        out: dict[str, Any] = obj.to_dict()
        return out

    def apply(self, obj: dict[str, Any], force: bool = True) -> dict[str, Any]:
        """Server-side apply ``obj`` as blueprintd; ``force`` takes fields back from other managers."""
        from kubernetes.client.rest import ApiException

        ref = ObjectRef.of(obj)
        res = self._resource(ref.api_version, ref.kind)
        self.before_write()
        try:
            result = res.server_side_apply(
                body=obj,
                name=ref.name,
                namespace=ref.namespace or None,
                field_manager=self.field_manager,
                force_conflicts=force,
            )
        except ApiException as exc:
            raise ApplyError(f"applying {ref}: {_reason(exc)}") from None
        out: dict[str, Any] = result.to_dict()
        return out

    def delete(self, ref: ObjectRef) -> bool:
        """Delete; False when it was already gone."""
        from kubernetes.client.rest import ApiException

        try:
            res = self._resource(ref.api_version, ref.kind)
        except ApplyError:
            return False  # its CRD is gone, so is the object
        self.before_write()
        try:
            res.delete(name=ref.name, namespace=ref.namespace or None)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise ApplyError(f"deleting {ref}: {_reason(exc)}") from None
        return True

    def ensure_namespace(self, name: str) -> bool:
        """Create the namespace if missing; True when a write happened."""
        if not name or self.get(ObjectRef("v1", "Namespace", "", name)) is not None:
            return False
        with contextlib.suppress(ApplyError):
            self.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        return True

    def list_nodes(self) -> list[dict[str, Any]]:
        res = self._resource("v1", "Node")
        return [n.to_dict() for n in res.get().items]

    def label_node(self, name: str, labels: dict[str, str | None]) -> str:
        """Set (or with None remove) node labels with a merge patch: nodes are shared with
        kubelets and other controllers, so blueprintd touches only its own keys. Returns the
        node's new ``resourceVersion``."""
        from kubernetes.client.rest import ApiException

        res = self._resource("v1", "Node")
        self.before_write()
        try:
            node = res.patch(
                name=name,
                body={"metadata": {"labels": labels}},
                content_type="application/merge-patch+json",
                field_manager=self.field_manager,
            )
        except ApiException as exc:
            raise ApplyError(f"labelling node {name}: {_reason(exc)}") from None
        return str(node.metadata.resourceVersion or "")


def _reason(exc: Any) -> str:
    import json

    try:
        body = json.loads(exc.body)
        return str(body.get("message") or exc.reason)
    except (TypeError, ValueError):
        return f"{exc.status} {exc.reason}"
