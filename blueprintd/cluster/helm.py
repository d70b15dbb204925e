"""Helm releases in a member cluster: read from Helm's storage Secrets, changed through pyhelm3
and the pinned helm binary.

Reading a release (chart, version, user-supplied values, status) is what planning and drift
detection need, on every resync of every member: it is one label-selected list of the
release's storage Secrets, decoded in-process (``cluster.helmrecords``), not three ``helm``
subprocesses (``status``, ``show chart``, ``get values``), which made a quiet fleet cost most of
a core. Installing/upgrading/uninstalling is what applying needs and runs helm itself. Charts
are looked up once per (repo, chart, version) per process: ``helm show chart`` is a network
round trip to the repository and the answer never changes for a pinned version.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from blueprintd.cluster import helmrecords
from blueprintd.cluster.fence import WriteCheck, unfenced
from blueprintd.errors import ClusterError
from blueprintd.plan.inventory import content_hash
from blueprintd.plan.live import OPERATOR_DESCRIPTION, ReleaseState


def revision_description(chart: str, version: str, values: dict[str, Any]) -> str:
    """The ``--description`` of every revision blueprintd installs (``helm history`` shows it):
    drift detection tells the operator's own upgrades from a person's ``helm upgrade`` by it."""
    return f"{OPERATOR_DESCRIPTION} {chart} {version} values={content_hash(values)}"


class HelmError(ClusterError):
    """A helm operation failed; the message carries helm's own error text."""


class HelmClient:
    """One member cluster's helm, bound to a kubeconfig file readable only by the operator."""

    _charts: dict[tuple[str, str, str], Any] = {}
    _chart_lock = asyncio.Lock()

    def __init__(
        self,
        helm: Path,
        kubeconfig: Path,
        timeout: str = "5m",
        *,
        api_client: Any = None,
        before_write: WriteCheck = unfenced,
    ) -> None:
        """``api_client``: the member's Kubernetes client (the session's); one is made from
        ``kubeconfig`` when not given. ``before_write``: called right before a helm command
        that writes is started (the shard fence, ``blueprintd.cluster.fence``)."""
        from pyhelm3 import Client

        self.helm = helm
        self.kubeconfig = kubeconfig
        self.before_write = before_write
        if api_client is None:
            from kubernetes import config

            api_client = config.new_client_from_config(config_file=str(kubeconfig))
        self.api_client = api_client
        self._client = Client(executable=str(helm), kubeconfig=kubeconfig, default_timeout=timeout)
        # One helm operation per release at a time: the reconcile and the drift monitor share
        # this client, and two concurrent upgrades of one release make helm fail with
        # "another operation is in progress".
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        # helm commands running now, and what to do once none is (``when_idle``): a session
        # closed mid-upgrade (its member moved to another replica) must not delete the
        # kubeconfig file under a running helm.
        self._running = 0
        self._idle: list[Callable[[], None]] = []

    @contextlib.contextmanager
    def _command(self) -> Iterator[None]:
        self._running += 1
        try:
            yield
        finally:
            self._running -= 1
            if not self._running:
                idle, self._idle = self._idle, []
                for fn in idle:
                    fn()

    def when_idle(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` now if no helm command is running, else once the last one ends."""
        if self._running:
            self._idle.append(fn)
        else:
            fn()

    def _lock(self, name: str, namespace: str) -> asyncio.Lock:
        return self._locks.setdefault((namespace, name), asyncio.Lock())

    async def release(self, name: str, namespace: str) -> ReleaseState | None:
        """The current revision of a release (what ``helm status`` shows), or None if there is none."""
        records = await asyncio.to_thread(self._records, name, namespace)
        cur = helmrecords.current(records)
        return cur.state() if cur is not None else None

    def _records(self, name: str, namespace: str) -> list[helmrecords.ReleaseRecord]:
        from kubernetes import client
        from kubernetes.client.rest import ApiException

        try:
            items = (
                client.CoreV1Api(self.api_client)
                .list_namespaced_secret(
                    namespace,
                    label_selector=f"{helmrecords.LABEL_SELECTOR},name={name}",
                    field_selector=helmrecords.FIELD_SELECTOR,
                )
                .items
            )
        except ApiException as exc:
            if exc.status == 404:
                return []
            raise HelmError(f"reading release {namespace}/{name}: {exc.status} {exc.reason}") from exc
        wire = self.api_client.sanitize_for_serialization
        records = [rec for item in items if (rec := helmrecords.decode(wire(item))) is not None]
        if items and not records:
            raise HelmError(f"release {namespace}/{name}: its storage Secrets cannot be decoded")
        return records

    async def _chart(self, repo: str, chart: str, version: str) -> Any:
        from pyhelm3 import errors

        key = (repo, chart, version)
        async with self._chart_lock:
            if key not in self._charts:
                ref, repo_arg = _chart_ref(repo, chart)
                try:
                    with self._command():
                        self._charts[key] = await self._client.get_chart(ref, repo=repo_arg, version=version or None)
                except errors.Error as exc:
                    raise HelmError(f"chart {chart} {version} not found in {repo}: {_msg(exc)}") from exc
            return self._charts[key]

    async def install_or_upgrade(
        self,
        name: str,
        namespace: str,
        repo: str,
        chart: str,
        version: str,
        values: dict[str, Any],
    ) -> ReleaseState:
        """Install or upgrade to exactly ``values`` (no reuse of values left from earlier revisions)."""
        async with self._lock(name, namespace):
            return await self._install_or_upgrade(name, namespace, repo, chart, version, values)

    async def _install_or_upgrade(
        self, name: str, namespace: str, repo: str, chart: str, version: str, values: dict[str, Any]
    ) -> ReleaseState:
        from pyhelm3 import errors

        current = await self.release(name, namespace)
        if current is not None and current.pending:
            await self.recover(current)
        ch = await self._chart(repo, chart, version)
        self.before_write()
        try:
            with self._command():
                await self._client.install_or_upgrade_release(
                    name,
                    ch,
                    values,
                    namespace=namespace,
                    create_namespace=True,
                    reset_values=True,
                    wait=False,
                    description=revision_description(chart, version, values),
                )
        except errors.Error as exc:
            raise HelmError(f"helm upgrade --install {namespace}/{name} ({chart} {version}): {_msg(exc)}") from exc
        state = await self.release(name, namespace)
        if state is None:
            raise HelmError(f"release {namespace}/{name} vanished right after install")
        if state.status == "failed":
            raise HelmError(f"release {namespace}/{name} ({chart} {version}) is in state failed")
        return state

    async def recover(self, state: ReleaseState) -> None:
        """Unstick a release a crash left pending: helm refuses any operation on it otherwise.

        A pending install has nothing worth keeping and is uninstalled; a pending upgrade or
        rollback is rolled back to the last good revision so the next upgrade starts clean.
        """
        from pyhelm3 import errors

        self.before_write()
        try:
            with self._command():
                if state.status == "pending-install" or state.revision <= 1:
                    await self._client.uninstall_release(state.name, namespace=state.namespace, wait=False)
                else:
                    await self._client._command.rollback(state.name, None, namespace=state.namespace)
        except errors.Error as exc:
            raise HelmError(f"recovering pending release {state.namespace}/{state.name}: {_msg(exc)}") from exc

    async def uninstall(self, name: str, namespace: str) -> None:
        from pyhelm3 import errors

        try:
            async with self._lock(name, namespace):
                self.before_write()
                with self._command():
                    await self._client.uninstall_release(name, namespace=namespace, wait=False)
        except errors.Error as exc:
            raise HelmError(f"helm uninstall {namespace}/{name}: {_msg(exc)}") from exc

    async def manifest(self, name: str, namespace: str) -> list[dict[str, Any]]:
        """The objects the release's current revision rendered (what ``helm get manifest``
        prints), read from its storage Secret: readiness asks this on every resync, and a
        ``helm`` process per add-on per member per resync was most of a quiet fleet's CPU."""
        records = await asyncio.to_thread(self._records, name, namespace)
        cur = helmrecords.current(records)
        return helmrecords.manifest_objects(cur.manifest) if cur is not None else []


def _chart_ref(repo: str, chart: str) -> tuple[str, str | None]:
    """``helm`` wants OCI charts as one reference and HTTP charts as (name, --repo URL)."""
    if repo.startswith("oci://"):
        return f"{repo.rstrip('/')}/{chart}", None
    return chart, repo


def _msg(exc: BaseException) -> str:
    text = str(exc).strip()
    # helm prefixes everything with "Error: "; keep the useful part, bounded for status fields.
    text = text.removeprefix("Error: ")
    return text[:2000] if text else type(exc).__name__
