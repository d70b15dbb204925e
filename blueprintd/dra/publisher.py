"""Publishing the node's ResourceSlices to the API server (thin adapter over the pure plan).

All decisions (what to create, update, delete, which generation) are made by
:func:`blueprintd.dra.slices.plan_publication`; this module only lists this driver's slices
for this node (field selectors ``spec.nodeName`` and ``spec.driver``), executes the plan, and
retries when another writer got in between (409 conflict on a stale resourceVersion). A
publication that finds nothing to change makes no write call at all.

The Node's ``blueprintd.io/time-slicing-replicas`` label is read at every publication: whole
GPUs of a time-sliced node are published shareable (see ``slices``).

Slices are owned by their Node (owner reference), so deleting a Node garbage-collects its
slices even if the plugin never runs again. When the Node cannot be read (no permission,
or an API server without Nodes) the slices are published without an owner.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from kubernetes import client
from kubernetes.client.rest import ApiException

from blueprintd.api.facts import NodeGpuInventory
from blueprintd.dra.slices import (
    PcieRootResolver,
    PublishPlan,
    build_slices,
    bus_id_pcie_root,
    plan_publication,
    time_slicing_replicas,
)

log = logging.getLogger(__name__)

Json = dict[str, Any]


class SliceStore(Protocol):
    """The API calls the publisher needs."""

    def list(self, driver: str, node: str) -> list[Json]: ...

    def create(self, body: Json) -> None: ...

    def update(self, body: Json) -> None: ...

    def delete(self, name: str) -> None: ...

    def node_metadata(self, node: str) -> Json | None: ...


class ConflictError(RuntimeError):
    """Someone else changed a slice between list and write."""


@dataclass
class KubeSliceStore:
    """SliceStore over ``ResourceV1Api`` with raw JSON (no model round-trip)."""

    api_client: client.ApiClient
    timeout_s: float = 20.0
    writes: int = 0  # write calls made; tests and benchmarks assert "no write when unchanged"

    @property
    def _api(self) -> client.ResourceV1Api:
        return client.ResourceV1Api(self.api_client)

    def list(self, driver: str, node: str) -> list[Json]:
        resp = self._api.list_resource_slice(
            field_selector=f"spec.nodeName={node},spec.driver={driver}",
            _preload_content=False,
            _request_timeout=self.timeout_s,
        )
        items: list[Json] = json.loads(resp.data).get("items") or []
        return items

    def _write(self, fn: Callable[[], object]) -> None:
        self.writes += 1
        try:
            fn()
        except ApiException as exc:
            if exc.status == 409:
                raise ConflictError(str(exc.reason)) from exc
            raise

    def create(self, body: Json) -> None:
        self._write(lambda: self._api.create_resource_slice(body, _preload_content=False))

    def update(self, body: Json) -> None:
        name = body["metadata"]["name"]
        self._write(lambda: self._api.replace_resource_slice(name, body, _preload_content=False))

    def delete(self, name: str) -> None:
        try:
            self._write(lambda: self._api.delete_resource_slice(name, _preload_content=False))
        except ApiException as exc:
            if exc.status != 404:
                raise

    def node_metadata(self, node: str) -> Json | None:
        """The Node's metadata (labels, uid); None when it cannot be read (no permission, or an
        API server without Nodes): the slices then get no owner and GPUs are published unshared."""
        try:
            resp = client.CoreV1Api(self.api_client).read_node(node, _preload_content=False)
        except ApiException as exc:
            log.warning(
                "cannot read Node %s (%s %s): slices get no owner reference, GPUs are published unshared",
                node,
                exc.status,
                exc.reason,
            )
            return None
        meta: Json = json.loads(resp.data)["metadata"]
        return meta


def _owner_reference(node: Json) -> Json:
    return {"apiVersion": "v1", "kind": "Node", "name": node["name"], "uid": node["uid"], "controller": True}


@dataclass
class SlicePublisher:
    """Reconciles the API server's slices for (driver, node) with an inventory."""

    store: SliceStore
    driver_name: str
    node_name: str
    pcie_root: PcieRootResolver = bus_id_pcie_root
    max_attempts: int = 3
    _owner: Json | None = field(default=None, init=False)
    _owner_looked_up: bool = field(default=False, init=False)

    def desired(self, inventory: NodeGpuInventory) -> list[Json]:
        # Read on every publication: the time-slicing overlay may change the label any time.
        # The same read gives the owner reference, looked up once.
        node = self.store.node_metadata(self.node_name)
        replicas = time_slicing_replicas((node or {}).get("labels") or {})
        slices = build_slices(
            inventory, self.driver_name, self.node_name, pcie_root=self.pcie_root, time_slicing_replicas=replicas
        )
        if not self._owner_looked_up:
            self._owner = _owner_reference(node) if node else None
            self._owner_looked_up = True
        if self._owner is not None:
            for s in slices:
                s["metadata"]["ownerReferences"] = [dict(self._owner)]
        return slices

    def publish(self, inventory: NodeGpuInventory) -> PublishPlan:
        """Make the API server match ``inventory``; returns the plan that was executed."""
        desired = self.desired(inventory)
        for attempt in range(1, self.max_attempts + 1):
            existing = self.store.list(self.driver_name, self.node_name)
            plan = plan_publication(desired, existing)
            if plan.empty:
                return plan
            try:
                for body in plan.create:
                    self.store.create(body)
                for body in plan.update:
                    self.store.update(body)
                for name in plan.delete:
                    self.store.delete(name)
            except ConflictError as exc:
                if attempt == self.max_attempts:
                    raise
                log.info("slice conflict (%s), re-listing (attempt %d)", exc, attempt)
                continue
            log.info(
                "published pool %s generation %d: %d created, %d updated, %d deleted",
                self.node_name,
                plan.generation,
                len(plan.create),
                len(plan.update),
                len(plan.delete),
            )
            return plan
        raise AssertionError("unreachable")  # pragma: no cover
