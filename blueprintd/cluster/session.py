"""One connection to one member cluster: the Kubernetes client, helm, and the reads/writes a
reconcile needs, each a small method the reconciler composes.

Reads (``observe``) fill the plain ``LiveState`` the pure planner consumes; writes
(``execute_step`` …) carry out a ``ClusterPlan``. Blocking client calls run in worker
threads so one slow member never stalls the operator's event loop for the others.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blueprintd.api.ref import ObjectRef
from blueprintd.cluster.discovery import Discovery
from blueprintd.cluster.fence import WriteCheck, unfenced
from blueprintd.cluster.helm import HelmClient, HelmError
from blueprintd.cluster.kubeconfig import write_private
from blueprintd.cluster.objects import FIELD_MANAGER, ApplyError, ObjectClient
from blueprintd.cluster.readiness import CHECK_API, gated_refs, object_ready
from blueprintd.cluster.writes import Writes
from blueprintd.errors import ClusterError
from blueprintd.plan.inventory import Inventory, object_key
from blueprintd.plan.live import LiveState
from blueprintd.plan.planner import Action, StepPlan
from blueprintd.render.desired import DesiredState, Step


class StepFailed(ClusterError):
    """An add-on could not be applied or did not become ready; later add-ons were not touched."""

    def __init__(self, addon: str, message: str) -> None:
        self.addon = addon
        super().__init__(f"add-on {addon}: {message}")
        self.detail = message


@dataclass
class MemberSession:
    name: str
    api_client: Any
    kubeconfig_file: Path
    helm_binary: Path
    # Called right before every write to this member, by every client the session hands out
    # (the reconcile's and the drift monitor's): a sharded replica's fence raises FencedOut.
    fence: WriteCheck = unfenced

    @classmethod
    def open(
        cls,
        name: str,
        cfg: dict[str, Any],
        helm_binary: Path,
        workdir: Path,
        user_agent: str = "",
        fence: WriteCheck = unfenced,
    ) -> MemberSession:
        """``user_agent``: what the member's audit log records for our calls (the operator puts
        its replica id there, so a write can be traced to the replica that made it)."""
        from blueprintd.cluster.kubeconfig import api_client

        client = api_client(cfg)
        if user_agent:
            client.user_agent = user_agent
        return cls(name, client, write_private(cfg, workdir / name), helm_binary, fence)

    def close(self) -> None:
        """Close the connection; the kubeconfig file goes once no helm command still reads it."""
        self.api_client.close()
        if hasattr(self, "_helm"):
            self._helm.when_idle(self._remove_kubeconfig)
        else:
            self._remove_kubeconfig()

    def _remove_kubeconfig(self) -> None:
        self.kubeconfig_file.unlink(missing_ok=True)

    @property
    def objects(self) -> ObjectClient:
        if not hasattr(self, "_objects"):
            self._objects = self.object_client()
        return self._objects

    @property
    def discovery(self) -> Discovery:
        """The member's API discovery, one copy for every client of this session."""
        if not hasattr(self, "_discovery"):
            self._discovery = Discovery(self.api_client)
        return self._discovery

    def object_client(self, field_manager: str = FIELD_MANAGER) -> ObjectClient:
        """A client for this member's objects that writes as ``field_manager``, behind the fence."""
        return ObjectClient(self.api_client, field_manager, before_write=self.fence, discovery=self.discovery)

    @property
    def helm(self) -> HelmClient:
        if not hasattr(self, "_helm"):
            self._helm = HelmClient(
                self.helm_binary, self.kubeconfig_file, api_client=self.api_client, before_write=self.fence
            )
        return self._helm

    async def version(self) -> str:
        from kubernetes import client

        info = await asyncio.to_thread(client.VersionApi(self.api_client).get_code)
        return str(info.git_version)

    # --- observe ---------------------------------------------------------------------------

    async def observe(self, desired: DesiredState | None, inventory: Inventory) -> LiveState:
        """Read everything the plan compares: releases, objects, node labels (reads only)."""
        live = LiveState()
        releases = {(r.namespace, r.name) for r in inventory.releases}
        keys: dict[str, dict[str, Any]] = {o.key: o.ref() for o in inventory.objects}
        for step in desired.steps if desired else []:
            if step.helm is not None:
                releases.add((step.helm.namespace, step.helm.release_name))
            for obj in step.manifests or []:
                keys[object_key(obj)] = obj
        for ns, name in sorted(releases):
            live.releases[(ns, name)] = await self.helm.release(name, ns)
        for key, obj in sorted(keys.items()):
            live.objects[key] = await asyncio.to_thread(self._get_or_none, obj)
        nodes = await asyncio.to_thread(self.objects.list_nodes)
        live.node_labels = {n["metadata"]["name"]: dict(n["metadata"].get("labels") or {}) for n in nodes}
        return live

    def _get_or_none(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        try:
            return self.objects.get(ObjectRef.of(obj))
        except ApplyError:
            return None  # its kind is not served (yet): the object does not exist

    # --- act -----------------------------------------------------------------------------------

    async def execute_step(self, step: Step, plan: StepPlan, timeout_default: float = 300.0) -> Writes:
        """Apply one add-on's actions, then wait until the add-on is ready. Returns the
        versions its applies left (drift waits for its watch to deliver them)."""
        made = Writes()
        try:
            if step.namespace and not plan.empty:
                await asyncio.to_thread(self.objects.ensure_namespace, step.namespace)
            for action in plan.actions:
                made |= await self._act(step, action)
        except (HelmError, ApplyError) as exc:
            raise StepFailed(step.addon, str(exc)) from exc
        timeout = float(step.readiness.timeout_seconds) if step.readiness else timeout_default
        await self.wait_ready(step, timeout)
        return made

    async def _act(self, step: Step, action: Action) -> Writes:
        if action.kind in ("helm-install", "helm-upgrade"):
            h = step.helm
            assert h is not None
            await self.helm.install_or_upgrade(h.release_name, h.namespace, h.repo, h.chart, h.version, h.values)
        elif action.kind == "apply":
            assert action.object is not None
            applied = await asyncio.to_thread(self._apply_with_retry, action.object)
            version = str((applied.get("metadata") or {}).get("resourceVersion") or "")
            return Writes.written(ObjectRef.of(applied), version)
        return Writes()  # a release change is already in Writes.of(action), listed before it ran

    def _apply_with_retry(self, obj: dict[str, Any], attempts: int = 20) -> dict[str, Any]:
        # A CRD installed by the previous add-on can take a moment to be served.
        for _ in range(attempts - 1):
            try:
                return self.objects.apply(obj)
            except ApplyError as exc:
                if "does not serve" not in str(exc):
                    raise
                time.sleep(0.25)
        return self.objects.apply(obj)  # the last attempt: its error is the step's

    async def wait_ready(self, step: Step, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        reason = ""
        while True:
            ok, reason = await self.step_ready(step)
            if ok:
                return
            if time.monotonic() > deadline:
                raise StepFailed(step.addon, f"not ready after {timeout:.0f}s: {reason}")
            await asyncio.sleep(0.5)

    async def step_ready(self, step: Step) -> tuple[bool, str]:
        """Readiness of one add-on now: release deployed, rendered workloads ready, checks pass."""
        refs: list[dict[str, Any]] = []
        if step.helm is not None:
            rel = await self.helm.release(step.helm.release_name, step.helm.namespace)
            if rel is None or rel.status != "deployed":
                return False, f"release {step.helm.release_name} is {rel.status if rel else 'not installed'}"
            rendered = await self.helm.manifest(step.helm.release_name, step.helm.namespace)
            for o in gated_refs(rendered):
                o.setdefault("metadata", {}).setdefault("namespace", step.helm.namespace)
                if o["kind"] == "CustomResourceDefinition":
                    o["metadata"].pop("namespace", None)
                refs.append(o)
        refs += gated_refs(list(step.manifests or []))
        for check in step.readiness.checks if step.readiness else []:
            api_version, kind = CHECK_API[check.kind]
            meta: dict[str, Any] = {"name": check.name}
            if kind != "CustomResourceDefinition":
                meta["namespace"] = check.namespace or step.namespace or "default"
            refs.append({"apiVersion": api_version, "kind": kind, "metadata": meta})
        for ref in refs:
            live = await asyncio.to_thread(self._get_or_none, ref)
            ok, why = object_ready(live)
            if not ok:
                return False, why
        return True, "ready"

    async def prune(self, action: Action) -> None:
        try:
            ref = _ref_of(action)
            if action.kind == "delete-object":
                await asyncio.to_thread(self.objects.delete, ref)
            elif action.kind == "helm-uninstall":
                await self.helm.uninstall(ref.name, ref.namespace)
        except (HelmError, ApplyError) as exc:
            raise StepFailed(action.addon or "prune", str(exc)) from exc

    async def label_nodes(self, action: Action) -> Writes:
        """Set the action's labels on its node; returns the version the write left."""
        assert action.labels is not None
        ref = _ref_of(action)
        try:
            version = await asyncio.to_thread(self.objects.label_node, ref.name, action.labels)
        except ApplyError as exc:
            raise StepFailed("node-labels", str(exc)) from exc
        return Writes.written(ref, version)


def _ref_of(action: Action) -> ObjectRef:
    """What a planned write targets; the planner sets it on every action it makes."""
    if action.ref is None:
        raise StepFailed(action.addon or "plan", f"planned {action.kind} of {action.target} names no object")
    return action.ref
