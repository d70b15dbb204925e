"""Kubernetes dynamic clients with a private discovery cache.

The kubernetes library's DynamicClient caches API discovery in a file named after the server
in the system temp directory. Every client of the same server shares that file: threads and
processes (the reconcile, the drift monitor, a second operator) overwrite it under each other
(``load cache error: Extra data``), and any local user could write into it. blueprintd gives
each client its own file in a private (0700) directory that is removed at exit.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
import uuid
from typing import Any

_lock = threading.Lock()
_dir: str | None = None


def _cache_dir() -> str:
    global _dir
    with _lock:
        if _dir is None:
            _dir = tempfile.mkdtemp(prefix="blueprintd-discovery-")
            atexit.register(shutil.rmtree, _dir, True)
        return _dir


def dynamic_client(api_client: Any) -> Any:
    """A ``kubernetes.dynamic.DynamicClient`` whose discovery cache no other client shares."""
    from kubernetes import dynamic

    return dynamic.DynamicClient(api_client, cache_file=os.path.join(_cache_dir(), f"{uuid.uuid4().hex}.json"))


class Discovery:
    """One API client's discovery, shared by everything that uses that client, thread-safe.

    Every ``DynamicClient`` holds its own copy of the member's API discovery (about 200 KiB
    for the built-in APIs alone), and the operator used four per member: the reconcile's
    objects, the drift restorer's and guard's, and the watch's paths. One per member is
    enough: discovery does not depend on the field manager that writes. The library's cache
    is not thread-safe either (an invalidation empties it while another thread reads it:
    ``KeyError: 'resources'``), so every lookup holds the lock. The client is built on first
    use: building it costs three GETs (version, core and group lists).
    """

    def __init__(self, api_client: Any) -> None:
        self.api_client = api_client
        self._dyn: Any = None
        self._lock = threading.RLock()

    def resource(self, api_version: str, kind: str) -> Any:
        """The library's ``Resource`` for a kind; raises ``ResourceNotFoundError`` when the
        cluster does not serve it. A kind missing from the cache (a CRD created since) makes
        the library rediscover once by itself before it gives up."""
        with self._lock:
            if self._dyn is None:
                self._dyn = dynamic_client(self.api_client)
            return self._dyn.resources.get(api_version=api_version, kind=kind)
