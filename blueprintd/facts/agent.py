"""The node agent: discover this node's GPUs and publish them on its own Node object.

Runs as a DaemonSet on GPU nodes (chart ``charts/blueprintd-node-agent``). Each cycle it:

1. runs NVML discovery (``blueprintd.facts.nvml.discover``); a missing driver is published as
   an empty, ``partial`` inventory carrying the error, so the operator can tell "no GPUs" from
   "driver not ready";
2. reads its Node (one GET) and computes, purely, the merge patch that would make the
   ``blueprintd.io/gpu-facts`` annotation and the ``blueprintd.io/`` labels match
   (``plan_node_update``);
3. sends that patch only if it is not empty. Steady state is one GET per interval and **zero
   writes**, which matters on clusters with thousands of GPU nodes.

The agent touches nothing but its own annotation and labels (a JSON merge patch of those
keys), so it coexists with GFD, the GPU Operator and kubelet writing the same Node. Kubernetes
I/O lives in ``KubeNodeApi``, a thin adapter; everything else is testable without a cluster.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from blueprintd.api.facts import NodeGpuInventory
from blueprintd.errors import ClusterError
from blueprintd.facts.annotation import (
    AGENT_LABELS,
    ANNOTATION_KEY,
    encode_inventory,
    inventory_document,
    inventory_labels,
)
from blueprintd.facts.nvml.discovery import discover
from blueprintd.facts.nvml.interface import NvmlLibrary

log = logging.getLogger(__name__)

Json = dict[str, Any]
MERGE_PATCH = "application/merge-patch+json"
FIELD_MANAGER = "blueprintd-node-agent"


def _current_document(node: Mapping[str, Any]) -> Any:
    raw = ((node.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_KEY)
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw  # garbage on the Node: differs from anything we would write


def plan_node_update(node: Mapping[str, Any], inventory: NodeGpuInventory) -> Json | None:
    """The JSON merge patch bringing ``node`` in line with ``inventory``; None if it already is.

    The annotation is compared as parsed JSON, not as text, so a Node whose annotation was
    written by another agent version with different key order or spacing is not rewritten
    unless the content differs. Agent labels no longer implied (e.g. ``mig.enabled`` after
    the driver went away) are removed with ``null``.
    """
    meta = node.get("metadata") or {}
    labels: Mapping[str, str] = meta.get("labels") or {}
    desired_labels = inventory_labels(inventory)
    label_patch: dict[str, str | None] = {}
    for key in AGENT_LABELS:
        want = desired_labels.get(key)
        if labels.get(key) != want:
            label_patch[key] = want
    metadata_patch: Json = {}
    if _current_document(node) != inventory_document(inventory):
        metadata_patch["annotations"] = {ANNOTATION_KEY: encode_inventory(inventory)}
    if label_patch:
        metadata_patch["labels"] = label_patch
    return {"metadata": metadata_patch} if metadata_patch else None


class NodeApi(Protocol):
    """The two calls the agent makes; ``KubeNodeApi`` implements them against a cluster."""

    def get_node(self, name: str) -> Json: ...

    def patch_node(self, name: str, patch: Json) -> None: ...


@dataclass
class KubeNodeApi:
    """``NodeApi`` over the kubernetes client, raw JSON in and out (no model round-trip)."""

    api_client: Any
    timeout_s: float = 20.0

    def _core(self) -> Any:
        from kubernetes import client

        return client.CoreV1Api(self.api_client)

    def get_node(self, name: str) -> Json:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            resp = self._core().read_node(name, _preload_content=False, _request_timeout=self.timeout_s)
        except ApiException as exc:
            raise ClusterError(f"cannot read Node {name}: {exc.status} {exc.reason}") from exc
        except (HTTPError, OSError) as exc:
            raise ClusterError(f"cannot read Node {name}: {type(exc).__name__}: {exc}") from exc
        node: Json = json.loads(resp.data)
        return node

    def patch_node(self, name: str, patch: Json) -> None:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            self._core().patch_node(
                name,
                patch,
                field_manager=FIELD_MANAGER,
                _content_type=MERGE_PATCH,
                _preload_content=False,
                _request_timeout=self.timeout_s,
            )
        except ApiException as exc:
            raise ClusterError(f"cannot patch Node {name}: {exc.status} {exc.reason}") from exc
        except (HTTPError, OSError) as exc:
            raise ClusterError(f"cannot patch Node {name}: {type(exc).__name__}: {exc}") from exc


@dataclass
class CycleResult:
    """What one agent cycle did (logged, and asserted on by tests)."""

    inventory: NodeGpuInventory
    patch: Json | None

    @property
    def wrote(self) -> bool:
        return self.patch is not None


def publish(api: NodeApi, node_name: str, inventory: NodeGpuInventory) -> Json | None:
    """Read the Node, patch it if its facts differ; returns the patch sent (None: no write)."""
    node = api.get_node(node_name)
    patch = plan_node_update(node, inventory)
    if patch is not None:
        api.patch_node(node_name, patch)
    return patch


@dataclass
class NodeAgent:
    """Discovery + publication on a timer; one instance per node."""

    api: NodeApi
    nvml: NvmlLibrary
    node_name: str
    interval_s: float = 60.0
    on_cycle: Callable[[CycleResult], None] | None = None
    _stop: threading.Event = field(default_factory=threading.Event, init=False)

    def run_once(self) -> CycleResult:
        """One discovery + compare + (maybe) patch. Cluster errors propagate."""
        inventory = discover(self.nvml, self.node_name, raise_on_unavailable=False)
        if inventory.errors:
            log.warning("discovery on %s was partial: %s", self.node_name, "; ".join(inventory.errors))
        patch = publish(self.api, self.node_name, inventory)
        result = CycleResult(inventory, patch)
        if patch is None:
            log.debug("GPU facts of %s unchanged; no write", self.node_name)
        else:
            log.info(
                "published GPU facts of %s: %d GPU(s)%s",
                self.node_name, len(inventory.gpus), " (partial)" if inventory.partial else "",
            )
        if self.on_cycle is not None:
            self.on_cycle(result)
        return result

    def run_forever(self) -> None:
        """Cycle every ``interval_s`` until ``stop()``; a failed cycle is logged and retried."""
        while not self._stop.is_set():
            try:
                self.run_once()
            except ClusterError as err:
                log.error("cycle failed, retrying in %.0fs: %s", self.interval_s, err)
            except Exception:  # keep the DaemonSet pod alive; the next cycle starts afresh
                log.exception("unexpected error in node agent cycle")
            self._stop.wait(self.interval_s)

    def stop(self) -> None:
        self._stop.set()
