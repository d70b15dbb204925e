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
