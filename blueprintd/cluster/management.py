"""The management cluster: where Blueprints, revisions, MemberClusters and reports live.

All operator state is in these objects (never only in memory), so any replica can pick up
where another stopped. Status writes go through ``patch_status``, which first compares with
what is stored and makes no call when nothing changed: an idle fleet causes no writes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from typing import Any

from blueprintd.api import GROUP, VERSION
from blueprintd.api.mergepatch import apply_merge_patch, merge_patch
from blueprintd.errors import ClusterError

PLURALS = {
    "Blueprint": "blueprints",
    "BlueprintRevision": "blueprintrevisions",
    "MemberCluster": "memberclusters",
    "GitSource": "gitsources",
    "DriftReport": "driftreports",
}



class AlreadyExists(ClusterError):
    """The object to create exists already (HTTP 409): someone else created it first."""


class ManagementStore:
    """Typed reads and minimal writes of blueprintd objects in one namespace."""

    def __init__(self, api_client: Any, namespace: str) -> None:
        from kubernetes import client

        self.api_client = api_client
        self.namespace = namespace
        self._custom = client.CustomObjectsApi(api_client)
        self._core = client.CoreV1Api(api_client)

    async def list(self, kind: str) -> list[dict[str, Any]]:
        res = await asyncio.to_thread(
            self._custom.list_namespaced_custom_object, GROUP, VERSION, self.namespace, PLURALS[kind]
        )
        return list(res.get("items", []))

    async def get(self, kind: str, name: str) -> dict[str, Any] | None:
        from kubernetes.client.rest import ApiException

        try:
            obj: dict[str, Any] = await asyncio.to_thread(
                self._custom.get_namespaced_custom_object, GROUP, VERSION, self.namespace, PLURALS[kind], name
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise ClusterError(f"reading {kind} {self.namespace}/{name}: {exc.reason}") from None
        return obj

    async def create(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        from kubernetes.client.rest import ApiException

        body = dict(body, metadata=dict(body.get("metadata") or {}, namespace=self.namespace))
        try:
            obj: dict[str, Any] = await asyncio.to_thread(
                self._custom.create_namespaced_custom_object, GROUP, VERSION, self.namespace, PLURALS[kind], body
            )
        except ApiException as exc:
            message = f"creating {kind} {body['metadata'].get('name')}: {_reason(exc)}"
            if exc.status == 409:
                raise AlreadyExists(message) from None
            raise ClusterError(message) from None
        return obj

    async def patch_spec(self, kind: str, name: str, patch: dict[str, Any]) -> None:
        await asyncio.to_thread(
            self._custom.patch_namespaced_custom_object, GROUP, VERSION, self.namespace, PLURALS[kind], name, patch
        )

    async def patch_status(self, kind: str, obj: dict[str, Any], status: dict[str, Any]) -> bool:
        """Bring the keys of ``status`` in the object's status to these values (nested keys that
        are gone are removed); no call when nothing differs. True when a write happened."""
        patch = merge_patch(obj.get("status"), status, status.keys())
        if not patch:
            return False
        await self.write_status(kind, obj, patch)
        return True

    async def write_status(self, kind: str, obj: dict[str, Any], patch: dict[str, Any]) -> None:
        """Send a status merge patch computed by the caller (``operator.status.status_patch``)
        and keep ``obj`` equal to what the server now stores."""
        name = obj["metadata"]["name"]
        await asyncio.to_thread(
            self._custom.patch_namespaced_custom_object_status,
            GROUP,
            VERSION,
            self.namespace,
            PLURALS[kind],
            name,
            {"status": patch},
        )
        obj["status"] = apply_merge_patch(obj.get("status"), patch)

    async def write_status_if_unchanged(self, kind: str, obj: dict[str, Any], patch: dict[str, Any]) -> bool:
        """``write_status`` only if the object still has ``obj``'s resourceVersion (optimistic
        concurrency: of two replicas writing from the same read, one wins). False when it
        changed meanwhile; ``obj`` then stays as it was."""
        from kubernetes.client.rest import ApiException

        meta = obj["metadata"]
        body = {"metadata": {"resourceVersion": meta.get("resourceVersion")}, "status": patch}
        try:
            res = await asyncio.to_thread(
                self._custom.patch_namespaced_custom_object_status,
                GROUP,
                VERSION,
                self.namespace,
                PLURALS[kind],
                meta["name"],
                body,
            )
        except ApiException as exc:
            if exc.status in (404, 409):
                return False
            raise ClusterError(f"writing {kind} {self.namespace}/{meta['name']} status: {_reason(exc)}") from None
        obj["status"] = apply_merge_patch(obj.get("status"), patch)
        meta["resourceVersion"] = (res.get("metadata") or {}).get("resourceVersion", meta.get("resourceVersion"))
        return True

    async def secret_value(self, name: str, key: str, namespace: str | None = None) -> str:
        from kubernetes.client.rest import ApiException

        ns = namespace or self.namespace
        try:
            secret = await asyncio.to_thread(self._core.read_namespaced_secret, name, ns)
        except ApiException as exc:
            raise ClusterError(f"Secret {ns}/{name}: {exc.reason}") from None
        data = (secret.data or {}).get(key)
        if data is None:
            raise ClusterError(f"Secret {ns}/{name} has no key {key!r}")
        return base64.b64decode(data).decode()

    async def event(self, obj: dict[str, Any], reason: str, message: str, type_: str = "Normal") -> None:
        """A Kubernetes Event on ``obj`` (best effort: events must never fail a reconcile)."""
        import datetime

        from kubernetes.client.rest import ApiException

        meta = obj["metadata"]
        now = datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")
        body = {
            "metadata": {"generateName": f"{meta['name']}.", "namespace": self.namespace},
            "involvedObject": {
                "apiVersion": obj.get("apiVersion"),
                "kind": obj.get("kind"),
                "name": meta["name"],
                "namespace": self.namespace,
                "uid": meta.get("uid"),
            },
            "reason": reason,
            "message": message[:1024],
            "type": type_,
            "source": {"component": "blueprintd"},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        with contextlib.suppress(ApiException):
            await asyncio.to_thread(self._core.create_namespaced_event, self.namespace, body)


def _reason(exc: Any) -> str:
    try:
        return str(json.loads(exc.body).get("message") or exc.reason)
    except (TypeError, ValueError):
        return f"{exc.status} {exc.reason}"
