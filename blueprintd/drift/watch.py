"""Event-driven watching of a member cluster (adapter): list, then watch from that resourceVersion.

One stream per (kind, namespace, selector) that blueprintd owns something in. Each stream is
a daemon thread doing the Kubernetes list-then-watch protocol itself: a list delivers the
complete current set (``Synced``), a watch from the list's resourceVersion delivers every
change (``Changed``). Bookmarks keep the resourceVersion fresh; ``410 Gone`` (the version
expired) and any lost connection lead to a relist, and the relist is what catches changes
made while the stream was down — so a member API server that stops and comes back is
reconnected with backoff and its drift still found. A stopped member never raises out of
here: the stream reports ``Lost`` and keeps trying.

Why threads and raw HTTP instead of the client's ``Watch`` helper: a stream must be stoppable
at once (``forget``, a relist request) rather than at its next event, so the thread keeps its
response and another thread shuts the socket down; and the streams get their own connection
pool, so long-lived watches never starve the operator's own requests. Every request is
counted client-side (``ApiCounter``): the benchmark reports API calls per minute from it.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import random
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from blueprintd.cluster.discovery import Discovery

log = logging.getLogger("blueprintd.drift.watch")


@dataclass(frozen=True, order=True)
class StreamSpec:
    """What one stream lists and watches."""

    api_version: str
    kind: str
    namespace: str = ""  # "" for cluster-scoped kinds
    label_selector: str = ""
    field_selector: str = ""

    def __str__(self) -> str:
        where = f" in {self.namespace}" if self.namespace else ""
        sel = f" ({self.label_selector})" if self.label_selector else ""
        return f"{self.kind}{where}{sel}"


@dataclass(frozen=True)
class Synced:
    """A (re)list: ``items`` is everything the stream selects now."""

    spec: StreamSpec
    items: list[dict[str, Any]]


@dataclass(frozen=True)
class Changed:
    """One watch event (``type``: ADDED, MODIFIED or DELETED)."""

    spec: StreamSpec
    type: str
    obj: dict[str, Any]


@dataclass(frozen=True)
class Lost:
    """The stream lost its connection (or cannot list); it reconnects with backoff and relists."""

    spec: StreamSpec
    error: str


WatchMessage = Synced | Changed | Lost


@dataclass
class ApiCounter:
    """Requests made to one member cluster, by verb (thread-safe)."""

    counts: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, verb: str, n: int = 1) -> None:
        with self._lock:
            self.counts[verb] = self.counts.get(verb, 0) + n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self.counts.values())


class _HttpError(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:300]}")
        self.status = status


class _NotServed(Exception):
    """The member does not serve the kind (its CRD is not installed)."""


class MemberWatch:
    """All streams of one member cluster, delivering messages through ``deliver`` (any thread)."""

    def __init__(
        self,
        cluster: str,
        configuration: Any,
        deliver: Callable[[WatchMessage], None],
        *,
        counter: ApiCounter | None = None,
        watch_timeout: int = 240,
        backoff: tuple[float, float] = (0.25, 5.0),
        discovery: Discovery | None = None,
    ) -> None:
        """``discovery``: the member's API discovery, shared with the session's clients (the
        watch needs a kind's path and scope, nothing it would not also know)."""
        from kubernetes import client

        from blueprintd.cluster.tls import share_tls_context

        cfg = copy.deepcopy(configuration)
        cfg.connection_pool_maxsize = 64  # one long-lived connection per stream, plus lists
        self.cluster = cluster
        self.deliver = deliver
        self.counter = counter or ApiCounter()
        self.watch_timeout = watch_timeout
        self.backoff = backoff
        self._api = client.ApiClient(cfg)
        share_tls_context(self._api)  # one context for every stream's connection, not one each
        self._discovery = discovery or Discovery(self._api)
        self._paths: dict[tuple[str, str], tuple[str, bool]] = {}
        self._ns_paths: dict[tuple[str, str], str] = {}
        self._paths_lock = threading.Lock()
        self._streams: dict[StreamSpec, _Stream] = {}
        self._closed = False

    # --- streams --------------------------------------------------------------------------

    @property
    def specs(self) -> set[StreamSpec]:
        return set(self._streams)

    def set_streams(self, specs: Iterable[StreamSpec]) -> None:
        """Watch exactly ``specs``: new streams start (list first), dropped ones stop."""
        wanted = set(specs)
        for spec in list(self._streams):
            if spec not in wanted:
                self._streams.pop(spec).stop()
        for spec in sorted(wanted - set(self._streams)):
            if self._closed:
                return
            stream = _Stream(self, spec)
            self._streams[spec] = stream
            stream.start()

    def relist(self, spec: StreamSpec | None = None) -> None:
        """Ask one stream (or all) to list again: the periodic full resync."""
        for s, stream in list(self._streams.items()):
            if spec is None or s == spec:
                stream.request_relist()

    def stop(self) -> None:
        self._closed = True
        for stream in self._streams.values():
            stream.stop()
        self._streams.clear()

    # --- HTTP -----------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        cfg = self._api.configuration
        for auth in (cfg.auth_settings() or {}).values():
            if auth.get("in") == "header" and auth.get("value"):
                headers[str(auth["key"])] = str(auth["value"])
        return headers

    def path_of(self, api_version: str, kind: str, namespace: str) -> str:
        """The collection URL path of a kind (discovery, cached). Raises ``_NotServed``."""
        from kubernetes.dynamic.exceptions import ResourceNotFoundError

        key = (api_version, kind)
        with self._paths_lock:
            if key not in self._paths:
                self.counter.add("discovery")
                try:  # a kind missing from the cache (a new CRD) is rediscovered by the library
                    res = self._discovery.resource(api_version, kind)
                except ResourceNotFoundError:
                    raise _NotServed(f"{kind} ({api_version}) is not served") from None
                self._paths[key] = (str(res.path()), bool(res.namespaced))
                if res.namespaced:
                    self._ns_paths[key] = str(res.path(namespace="NAMESPACE"))
            plural_path, namespaced = self._paths[key]
        if namespaced and namespace:
            return self._ns_paths[key].replace("/namespaces/NAMESPACE/", f"/namespaces/{namespace}/")
        return plural_path

    def open(self, path: str, params: dict[str, str], read_timeout: float) -> Any:
        import urllib3

        url = self._api.configuration.host + path + "?" + urllib.parse.urlencode(params)
        return self._api.rest_client.pool_manager.request(
            "GET",
            url,
            headers=self._headers(),
            preload_content=False,
            retries=False,
            timeout=urllib3.Timeout(connect=5.0, read=read_timeout),
        )

    def close(self) -> None:
        self.stop()
        self._api.close()


class _Stream(threading.Thread):
    def __init__(self, owner: MemberWatch, spec: StreamSpec) -> None:
        super().__init__(name=f"drift-watch-{owner.cluster}-{spec.kind}-{spec.namespace}", daemon=True)
        self.owner = owner
        self.spec = spec
        self._stop_event = threading.Event()
        self._relist = threading.Event()
        self._lock = threading.Lock()
        self._resp: Any = None

    def stop(self) -> None:
        self._stop_event.set()
        self._interrupt()

    def request_relist(self) -> None:
        self._relist.set()
        self._interrupt()

    def _interrupt(self) -> None:
        with self._lock:
            resp = self._resp
        if resp is not None:
            with contextlib.suppress(Exception):  # the response may be closing already
                resp.shutdown()  # wakes the thread blocked reading this watch

    def _params(self) -> dict[str, str]:
        p: dict[str, str] = {}
        if self.spec.label_selector:
            p["labelSelector"] = self.spec.label_selector
        if self.spec.field_selector:
            p["fieldSelector"] = self.spec.field_selector
        return p

    def run(self) -> None:
        delay = self.owner.backoff[0]
        rv: str | None = None
        down = False
        while not self._stop_event.is_set():
            try:
                path = self.owner.path_of(self.spec.api_version, self.spec.kind, self.spec.namespace)
                if rv is None or self._relist.is_set():
                    self._relist.clear()
                    items, rv = self._list(path)
                    if self._stop_event.is_set():
                        return
                    self.owner.deliver(Synced(self.spec, items))
                    if down:
                        log.info("member %s: %s reconnected", self.owner.cluster, self.spec)
                    down = False
                    delay = self.owner.backoff[0]
                rv = self._watch(path, rv)
            except _NotServed as exc:
                # Nothing of this kind can exist: say so (targets read as deleted), look again later.
                self.owner.deliver(Synced(self.spec, []))
                log.debug("member %s: %s", self.owner.cluster, exc)
                rv = None
                if self._stop_event.wait(self.owner.backoff[1]):
                    return
            except Exception as exc:
                if self._stop_event.is_set():
                    return
                if self._relist.is_set():
                    rv = None  # we cut the watch short ourselves: relist now
                    continue
                if isinstance(exc, _HttpError) and exc.status == 410:
                    rv = None  # expired resourceVersion: relist at once
                    continue
                if not down:
                    log.warning("member %s: watch %s lost: %s", self.owner.cluster, self.spec, _short(exc))
                    self.owner.deliver(Lost(self.spec, _short(exc)))
                down = True
                rv = None  # relist after reconnecting: it finds what changed while we were away
                if self._stop_event.wait(delay * random.uniform(0.8, 1.2)):
                    return
                delay = min(delay * 2, self.owner.backoff[1])

    def _list(self, path: str) -> tuple[list[dict[str, Any]], str]:
        self.owner.counter.add("list")
        resp = self.owner.open(path, self._params(), read_timeout=60.0)
        try:
            data = resp.read()
            if resp.status != 200:
                raise _HttpError(resp.status, data.decode(errors="replace"))
        finally:
            resp.release_conn()
        body = json.loads(data)
        items = body.get("items") or []
        for item in items:  # list items carry no apiVersion/kind
            item.setdefault("apiVersion", self.spec.api_version)
            item.setdefault("kind", self.spec.kind)
        return items, str((body.get("metadata") or {}).get("resourceVersion", ""))

    def _watch(self, path: str, rv: str) -> str | None:
        """Watch from ``rv`` until the server ends the watch; returns the last resourceVersion
        (None: relist)."""
        params = dict(self._params())
        params.update(
            watch="true",
            resourceVersion=rv,
            allowWatchBookmarks="true",
            timeoutSeconds=str(int(self.owner.watch_timeout * random.uniform(0.9, 1.1))),
        )
        self.owner.counter.add("watch")
        resp = self.owner.open(path, params, read_timeout=self.owner.watch_timeout * 1.2 + 30)
        with self._lock:
            self._resp = resp
        try:
            if resp.status != 200:
                raise _HttpError(resp.status, resp.read().decode(errors="replace"))
            for line in _lines(resp):
                if self._stop_event.is_set():
                    return None
                event = json.loads(line)
                etype, obj = event.get("type"), event.get("object") or {}
                if etype == "ERROR":
                    code = int(obj.get("code") or 0)
                    if code == 410:
                        return None
                    raise _HttpError(code, str(obj.get("message", "")))
                new_rv = (obj.get("metadata") or {}).get("resourceVersion")
                if new_rv:
                    rv = str(new_rv)
                if etype == "BOOKMARK":
                    continue
                obj.setdefault("apiVersion", self.spec.api_version)
                obj.setdefault("kind", self.spec.kind)
                self.owner.deliver(Changed(self.spec, str(etype), obj))
                if self._relist.is_set():
                    return None
        finally:
            with self._lock:
                self._resp = None
            with contextlib.suppress(Exception):
                resp.close()
        if self._relist.is_set():
            return None
        return rv


def _lines(resp: Any) -> Iterator[bytes]:
    """Newline-delimited JSON events as they arrive (the body is chunked and never ends on its own)."""
    buf = b""
    for chunk in resp.stream(amt=None, decode_content=True):
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if line.strip():
                yield line
    if buf.strip():
        yield buf


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"{type(exc).__name__}: {text[:200]}"
