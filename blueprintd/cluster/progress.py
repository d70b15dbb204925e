"""What a running add-on step waits for on the member: observed while the step runs.

A ``helm upgrade --install`` with a pre-install hook Job, or an add-on whose workloads take
minutes to become ready, used to leave the MemberCluster status silent for as long as it
lasted. While a step runs, :class:`StepWatch` looks at the member every few seconds
(``OperatorSettings.progress_interval_seconds``) and hands what it waits for to the
controller, which writes it into ``status.blueprints[].current`` only when it changed.

:func:`waiting_for` is pure (observed objects → ``WaitItem`` list); its rules:

* **Hook Jobs**: a Job in the release namespace with a ``helm.sh/hook`` annotation that is
  not Complete: ``"<hook> hook Job not complete"`` (or ``failed``). Helm does not mark hooks
  with the release's ownership annotations, so a hook whose ``app.kubernetes.io/instance``
  label names another release is not this release's.
* **Workloads and CRDs of the release**: objects carrying Helm's ownership annotations
  (``meta.helm.sh/release-name`` / ``-namespace``) for this release, and the gated objects of
  a manifest add-on, that are not ready by ``readiness.object_ready`` (Deployments,
  DaemonSets, StatefulSets, Jobs; CRDs not Established). A gated manifest object that does not
  exist yet is ``"not created yet"``.
* Order: hook Jobs, then CRDs, then workloads, each by name; at most ``MAX_ITEMS``.
* Nothing observed for a Helm step: the release itself, ``"helm is applying the release"``,
  so the list says what is going on even before the first object exists.

The observer never fails a step: an observation error keeps the last list.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from blueprintd.api.membercluster import AddonProgress, WaitItem
from blueprintd.cluster.readiness import gated_refs, object_ready

if TYPE_CHECKING:
    from blueprintd.cluster.session import MemberSession
    from blueprintd.render.desired import Step

log = logging.getLogger("blueprintd.progress")

StepKind = Literal["install", "upgrade", "apply", "wait"]
Publish = Callable[[AddonProgress | None], Awaitable[None]]

HOOK_ANNOTATION = "helm.sh/hook"
RELEASE_NAME = "meta.helm.sh/release-name"
RELEASE_NAMESPACE = "meta.helm.sh/release-namespace"
INSTANCE_LABEL = "app.kubernetes.io/instance"
WORKLOADS = ("Deployment", "DaemonSet", "StatefulSet", "Job")
CRD = "CustomResourceDefinition"
MAX_ITEMS = 64


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("metadata") or {}


def _qualified(obj: dict[str, Any]) -> str:
    meta = _meta(obj)
    ns = meta.get("namespace") or ""
    return f"{ns}/{meta.get('name', '')}" if ns else str(meta.get("name", ""))


def _job_state(obj: dict[str, Any]) -> str:
    """"complete", "failed" or "running"."""
    conds = {c.get("type"): c.get("status") for c in (obj.get("status") or {}).get("conditions") or []}
    if conds.get("Complete") == "True":
        return "complete"
    return "failed" if conds.get("Failed") == "True" else "running"


def _owned(obj: dict[str, Any], release: str, namespace: str) -> bool:
    ann = _meta(obj).get("annotations") or {}
    return bool(release) and ann.get(RELEASE_NAME) == release and ann.get(RELEASE_NAMESPACE) == namespace


def _why(obj: dict[str, Any]) -> str | None:
    """Why a workload/CRD is not ready, without the "Kind name: " prefix; None when ready."""
    if obj.get("kind") == CRD:
        ok, _ = object_ready(obj)
        return None if ok else "not Established"
    ok, why = object_ready(obj)
    if ok:
        return None
    prefix = f"{obj.get('kind')} {_meta(obj).get('name', '')}: "
    return why.removeprefix(prefix)


def waiting_for(
    objects: Iterable[dict[str, Any]],
    *,
    release: str = "",
    namespace: str = "",
    expected: Iterable[tuple[dict[str, Any], dict[str, Any] | None]] = (),
) -> list[WaitItem]:
    """What an add-on step waits for, from the member's objects (see the module docstring).

    ``objects``: Jobs, workloads and CRDs listed on the member (others are ignored);
    ``release``/``namespace``: the Helm release of the step ("" for a manifest add-on);
    ``expected``: a manifest add-on's gated objects, each with its live object or None."""
    hooks: list[WaitItem] = []
    crds: list[WaitItem] = []
    workloads: list[WaitItem] = []
    seen: set[tuple[str, str]] = set()

    def add(obj: dict[str, Any], why: str) -> None:
        item = WaitItem(kind=str(obj.get("kind", "")), name=_qualified(obj), reason=why)
        if (item.kind, item.name) in seen:
            return
        seen.add((item.kind, item.name))
        (crds if item.kind == CRD else workloads).append(item)

    for obj in objects:
        meta = _meta(obj)
        kind = obj.get("kind")
        hook = (meta.get("annotations") or {}).get(HOOK_ANNOTATION)
        if kind == "Job" and hook and release:
            instance = (meta.get("labels") or {}).get(INSTANCE_LABEL)
            if meta.get("namespace") != namespace or (instance and instance != release):
                continue
            state = _job_state(obj)
            if state != "complete":
                name = _qualified(obj)
                seen.add(("Job", name))
                hooks.append(WaitItem(kind="Job", name=name, reason=f"{hook} hook Job {state}"))
            continue
        if (kind in WORKLOADS or kind == CRD) and _owned(obj, release, namespace):
            why = _why(obj)
            if why is not None:
                add(obj, why)
    for ref, live in expected:
        if ref.get("kind") not in (*WORKLOADS, CRD):
            continue
        if live is None:
            add(ref, "not created yet")
            continue
        why = _why(live)
        if why is not None:
            add(live, why)
    items = [
        *sorted(hooks, key=lambda i: i.name),
        *sorted(crds, key=lambda i: i.name),
        *sorted(workloads, key=lambda i: (i.name, i.kind)),
    ]
    if not items and release:
        items = [WaitItem(kind="HelmRelease", name=f"{namespace}/{release}", reason="helm is applying the release")]
    return items[:MAX_ITEMS]


# --- I/O: observe the member while a step runs ----------------------------------------------


def _list_release_objects(api_client: Any, namespace: str) -> list[dict[str, Any]]:
    """Jobs and workloads in the release namespace and every CRD (the pure rules filter them)."""
    from kubernetes import client

    batch, apps = client.BatchV1Api(api_client), client.AppsV1Api(api_client)
    ext = client.ApiextensionsV1Api(api_client)
    listings = [
        ("Job", "batch/v1", batch.list_namespaced_job(namespace)),
        ("Deployment", "apps/v1", apps.list_namespaced_deployment(namespace)),
        ("DaemonSet", "apps/v1", apps.list_namespaced_daemon_set(namespace)),
        ("StatefulSet", "apps/v1", apps.list_namespaced_stateful_set(namespace)),
        (CRD, "apiextensions.k8s.io/v1", ext.list_custom_resource_definition()),
    ]
    out: list[dict[str, Any]] = []
    for kind, api_version, listing in listings:
        for item in listing.items or []:
            obj: dict[str, Any] = api_client.sanitize_for_serialization(item)
            obj["kind"], obj["apiVersion"] = kind, api_version
            out.append(obj)
    return out


async def observe(session: MemberSession, step: Step) -> list[WaitItem]:
    """What ``step`` waits for on the member now (reads only)."""
    objects: list[dict[str, Any]] = []
    release = namespace = ""
    if step.helm is not None:
        release, namespace = step.helm.release_name, step.helm.namespace
        objects = await asyncio.to_thread(_list_release_objects, session.api_client, namespace)
    expected: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
    for ref in gated_refs(list(step.manifests or [])):  # final objects: namespaces filled in
        expected.append((ref, await asyncio.to_thread(session._get_or_none, ref)))
    return waiting_for(objects, release=release, namespace=namespace, expected=expected)


def step_kind(actions: Iterable[str]) -> StepKind:
    """How a step's planned action kinds read in status: install, upgrade, apply or (none) wait."""
    kinds = set(actions)
    if "helm-install" in kinds:
        return "install"
    if "helm-upgrade" in kinds:
        return "upgrade"
    return "apply" if kinds else "wait"


class StepWatch:
    """Watches each add-on step of one reconcile and publishes its progress.

    ``publish`` gets the ``AddonProgress`` when the step starts, again whenever what it waits
    for changed, and None when it ends; the controller folds and writes it."""

    def __init__(
        self,
        session: MemberSession,
        version: str,
        publish: Publish,
        interval: float,
        observe_fn: Callable[[MemberSession, Step], Awaitable[list[WaitItem]]] = observe,
    ) -> None:
        self.session = session
        self.version = version
        self.publish = publish
        self.interval = max(interval, 0.5)  # a zero setting must not spin
        self._observe = observe_fn

    async def _publish(self, current: AddonProgress | None) -> None:
        try:
            await self.publish(current)
        except Exception as exc:  # the management cluster is away: the step goes on regardless
            log.warning("progress of %s: status write failed: %s", current.addon if current else "step end", exc)

    async def _look(self, step: Step, last: list[WaitItem]) -> list[WaitItem]:
        try:
            return await self._observe(self.session, step)
        except Exception as exc:  # never fail the step for its progress report
            log.debug("progress of %s: observing failed: %s", step.addon, exc)
            return last

    @contextlib.asynccontextmanager
    async def step(self, step: Step, kind: StepKind) -> AsyncIterator[None]:
        since = datetime.now(UTC).replace(microsecond=0)
        current = AddonProgress(addon=step.addon, step=kind, version=self.version, since=since)
        current = current.model_copy(update={"waiting_for": await self._look(step, [])})
        await self._publish(current)

        async def loop() -> None:
            nonlocal current
            while True:
                await asyncio.sleep(self.interval)
                items = await self._look(step, current.waiting_for)
                if items != current.waiting_for:
                    current = current.model_copy(update={"waiting_for": items})
                    await self._publish(current)

        task = asyncio.create_task(loop())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            await self._publish(None)
