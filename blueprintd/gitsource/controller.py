"""When to sync each GitSource: the operator's integration point (kopf only calls ``tick``).

kopf timers have a fixed interval per handler, but every GitSource has its own
``spec.interval``. So kopf calls ``tick`` on a short fixed period (``TICK_SECONDS``) and this
runner decides whether the source is due:

* never synced by this process (start-up, or another replica owned it before), or
* ``metadata.generation`` differs from ``status.observedGeneration`` (the spec changed), or
* ``spec.interval`` has passed since this process last synced it, or
* a push webhook asked for it.

The schedule is soft state kept in memory on purpose: losing it costs one extra sync after a
restart, while writing "last polled at" into the object on every poll would make an idle
fleet write forever. Everything that matters (applied and fetched commit, errors) is in the
GitSource's status. A lock per source keeps the timer and a webhook from syncing the same
source at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from blueprintd.cluster.management import ManagementStore
from blueprintd.gitsource.sync import WEBHOOK_KEY, SyncOptions, read_secret, sync_gitsource

log = logging.getLogger("blueprintd.gitsource")

TICK_SECONDS = 5.0
_DURATION = re.compile(r"(\d+)([smh])")


class SettingsLike(Protocol):
    """The operator settings this module reads."""

    @property
    def workdir(self) -> Path: ...

    @property
    def webhook_port(self) -> int: ...

    @property
    def git_allow_file_urls(self) -> bool: ...


def parse_interval(text: str) -> float:
    """``"1h30m"`` → 5400.0 seconds (the CRD pattern guarantees the shape)."""
    total = sum(int(n) * {"s": 1, "m": 60, "h": 3600}[u] for n, u in _DURATION.findall(text or ""))
    return float(total) if total > 0 else 300.0


def is_due(source: dict[str, Any], last_sync: float | None, now: float) -> bool:
    """Whether ``source`` should be synced now (pure; ``last_sync``/``now`` are monotonic seconds)."""
    if last_sync is None:
        return True
    meta = source.get("metadata") or {}
    status = source.get("status") or {}
    if meta.get("generation") != status.get("observedGeneration"):
        return True
    interval = parse_interval(str((source.get("spec") or {}).get("interval", "5m")))
    return now - last_sync >= interval


class GitSourceRunner:
    """Per-operator state for GitSources: schedule, locks, and the optional webhook server."""

    def __init__(
        self,
        store: ManagementStore,
        cache_dir: Path,
        options: SyncOptions | None = None,
        webhook_port: int = 0,
        webhook_host: str = "0.0.0.0",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.cache_dir = cache_dir
        self.options = options or SyncOptions()
        self.webhook_port = webhook_port
        self.webhook_host = webhook_host
        self.clock = clock
        self._last: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Task[None] | None = None
        self.bound_port = 0

    @classmethod
    def from_settings(cls, store: ManagementStore, settings: SettingsLike) -> GitSourceRunner:
        return cls(
            store,
            Path(settings.workdir) / "git",
            SyncOptions(allow_file_urls=settings.git_allow_file_urls),
            webhook_port=settings.webhook_port,
        )

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    async def tick(self, source: dict[str, Any]) -> None:
        """The kopf timer body: sync when due, otherwise return without any API call."""
        name = source["metadata"]["name"]
        if not is_due(source, self._last.get(name), self.clock()):
            return
        lock = self._lock(name)
        if lock.locked():
            return  # a webhook-triggered sync is running right now
        async with lock:
            await self._run(source)

    async def _run(self, source: dict[str, Any]) -> None:
        name = source["metadata"]["name"]
        self._last[name] = self.clock()
        try:
            await sync_gitsource(self.store, source, self.cache_dir, datetime.now(UTC), self.options)
        except Exception:  # recorded and retried at the next interval; never kill the timer
            log.exception("GitSource %s: sync failed unexpectedly", name)

    async def trigger(self, name: str) -> None:
        """Sync ``name`` now, in the background (a webhook answers without waiting for git)."""
        task = asyncio.create_task(self._triggered(name))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _triggered(self, name: str) -> None:
        async with self._lock(name):
            # Read under the lock: a sync that just finished is then seen in the status.
            source = await self.store.get("GitSource", name)
            if source is not None:
                await self._run(source)

    async def webhook_secret(self, name: str) -> bytes | None:
        source = await self.store.get("GitSource", name)
        if source is None:
            return None
        ref = (source.get("spec") or {}).get("webhookSecretRef") or {}
        if not ref.get("name"):
            return None
        data = await read_secret(self.store, str(ref["name"]), ref.get("namespace"))
        token = data.get(WEBHOOK_KEY, "")
        return token.encode() if token else None

    async def start_webhook(self) -> None:
        """Serve push webhooks on ``webhook_port`` (no-op when 0); a bind failure is raised."""
        if not self.webhook_port or self._server is not None:
            return
        from aiohttp import web

        from blueprintd.gitsource.webhook import WebhookReceiver

        runner = web.AppRunner(WebhookReceiver(self.webhook_secret, self.trigger).app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.webhook_host, self.webhook_port)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        self.bound_port = int(sockets[0].getsockname()[1]) if sockets else self.webhook_port
        log.info("GitSource webhooks on %s:%d (POST /hooks/<name>)", self.webhook_host, self.bound_port)

        async def serve() -> None:
            try:
                await asyncio.Event().wait()
            finally:
                await runner.cleanup()

        self._server = asyncio.create_task(serve())

    async def stop_webhook(self) -> None:
        if self._server is not None:
            self._server.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._server
            self._server = None


async def gitsource_timer(runner: GitSourceRunner, body: dict[str, Any]) -> None:
    """What the operator's kopf timer for ``gitsources`` calls every ``TICK_SECONDS``."""
    await runner.tick(body)
