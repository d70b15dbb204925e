"""A local Helm chart repository for the test bed and the demo.

Nothing can be downloaded here, so the upstream charts a blueprint installs are replaced by the
small stand-ins under ``charts/standins/`` (same chart names and version formats). This module
packages chart directories into a repository folder with ``helm package`` + ``helm repo index``
and serves that folder over HTTP on 127.0.0.1; a Blueprint's chart mirror points at the URL.

* ``build_chart_repo`` is incremental: each chart directory is hashed and its package is reused
  while the files are unchanged; packages of charts no longer listed are removed. Concurrent
  builds into the same folder are serialised with a lock file.
* The index's ``urls`` are relative (``gpu-operator-v25.10.0.tgz``), so the folder can move or be
  served from any address.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.server
import json
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from blueprintd.errors import DevFleetError

_MANIFEST = ".blueprintd-chart-sources.json"
_LOCK = ".blueprintd-chart-repo.lock"
_HELM_TIMEOUT_S = 120
# Editor and OS litter that must not force a repackage (helm package skips it via .helmignore).
_IGNORED_NAMES = {".DS_Store", "__pycache__", ".git"}


def build_chart_repo(src_dirs: Sequence[Path], out_dir: Path, helm: Path) -> Path:
    """Package every chart into ``out_dir`` and (re)write its ``index.yaml``; returns ``out_dir``.

    Each entry of ``src_dirs`` is a chart directory (holding ``Chart.yaml``) or a folder whose
    immediate subdirectories are charts. A chart whose files did not change since the last build
    into ``out_dir`` is not packaged again. Two charts with the same name and version are an
    error, since the repository could only serve one of them.
    """
    charts = _expand(src_dirs)
    out_dir.mkdir(parents=True, exist_ok=True)
    with _locked(out_dir / _LOCK), tempfile.TemporaryDirectory(prefix="blueprintd-helm-") as home:
        env = _helm_env(Path(home))
        manifest = _read_manifest(out_dir)
        new_manifest: dict[str, dict[str, str]] = {}
        changed = False
        for chart in charts:
            digest = _hash_dir(chart)
            package = _reusable(manifest, digest, out_dir)
            if package is None:
                package = _package(chart, out_dir, helm, env)
                changed = True
            if package in new_manifest:
                raise DevFleetError(
                    f"two charts package to {package}: {new_manifest[package]['source']} and {chart}; "
                    "give one of them another name or version"
                )
            new_manifest[package] = {"hash": digest, "source": str(chart)}
        for stale in out_dir.glob("*.tgz"):
            if stale.name not in new_manifest:
                stale.unlink()
                changed = True
        index = out_dir / "index.yaml"
        if changed or not index.is_file() or set(manifest) != set(new_manifest):
            _helm(helm, ["repo", "index", str(out_dir)], env)
        _write_manifest(out_dir, new_manifest)
    return out_dir


class ChartRepoServer:
    """Serves a chart repository folder over HTTP on 127.0.0.1 (a free port) in a daemon thread.

    Use as a context manager or call ``start()`` / ``stop()``; ``url`` is the repository URL to
    give ``helm --repo`` or a Blueprint's chart mirror.
    """

    def __init__(self, directory: Path, host: str = "127.0.0.1", port: int = 0) -> None:
        self.directory = directory
        self._host = host
        self._port = port
        self._server: _QuietServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise DevFleetError("the chart repository server is not running; call start() first")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}"

    def start(self) -> ChartRepoServer:
        if self._server is not None:
            return self
        if not (self.directory / "index.yaml").is_file():
            raise DevFleetError(
                f"{self.directory} is not a chart repository (no index.yaml); build it with build_chart_repo"
            )
        root = str(self.directory)

        class Handler(_QuietHandler):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, directory=root, **kwargs)

        try:
            server = _QuietServer((self._host, self._port), Handler)
        except OSError as exc:
            raise DevFleetError(
                f"cannot serve the chart repository on {self._host}:{self._port}: {exc}"
            ) from exc
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name=f"chart-repo-{server.server_address[1]}",
            daemon=True,
        )
        thread.start()
        self._server, self._thread = server, thread
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> ChartRepoServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".tgz": "application/gzip",
        ".yaml": "application/yaml",
    }

    def log_message(self, format: str, *args: Any) -> None:
        """Tests and the demo do not want an access log on stderr."""


class _QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that hang up mid-download are normal for a test server: no traceback."""


def _expand(src_dirs: Sequence[Path]) -> list[Path]:
    charts: list[Path] = []
    for src in src_dirs:
        src = src.resolve()
        if (src / "Chart.yaml").is_file():
            charts.append(src)
            continue
        found = sorted(p.parent for p in src.glob("*/Chart.yaml")) if src.is_dir() else []
        if not found:
            raise DevFleetError(f"{src} is neither a Helm chart (no Chart.yaml) nor a folder of charts")
        charts.extend(found)
    return charts


def _hash_dir(chart: Path) -> str:
    """Content hash of a chart directory: every file's relative path and bytes."""
    h = hashlib.sha256()
    for root, dirs, files in os.walk(chart):
        dirs[:] = sorted(d for d in dirs if d not in _IGNORED_NAMES)
        for name in sorted(files):
            if name in _IGNORED_NAMES:
                continue
            path = Path(root) / name
            rel = path.relative_to(chart).as_posix()
            h.update(rel.encode() + b"\0")
            h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def _reusable(manifest: dict[str, dict[str, str]], digest: str, out_dir: Path) -> str | None:
    for package, entry in manifest.items():
        if entry.get("hash") == digest and (out_dir / package).is_file():
            return package
    return None


def _package(chart: Path, out_dir: Path, helm: Path, env: dict[str, str]) -> str:
    staging = Path(tempfile.mkdtemp(prefix=".package-", dir=out_dir))
    try:
        _helm(helm, ["package", str(chart), "--destination", str(staging)], env)
        produced = list(staging.glob("*.tgz"))
        if len(produced) != 1:
            raise DevFleetError(f"helm package {chart} produced {len(produced)} archives, expected one")
        target = out_dir / produced[0].name
        os.replace(produced[0], target)
        return target.name
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _helm(helm: Path, args: list[str], env: dict[str, str]) -> None:
    cmd = [str(helm), *args]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=_HELM_TIMEOUT_S)
    except FileNotFoundError as exc:
        raise DevFleetError(f"helm not found at {helm}") from exc
    except subprocess.TimeoutExpired as exc:
        raise DevFleetError(f"`{' '.join(cmd)}` did not finish within {_HELM_TIMEOUT_S}s") from exc
    if proc.returncode != 0:
        raise DevFleetError(f"`{' '.join(cmd)}` failed (exit {proc.returncode}):\n{proc.stderr.strip()}")


def _helm_env(home: Path) -> dict[str, str]:
    """The caller's environment with Helm's config, cache and data kept out of the user's home."""
    env = dict(os.environ)
    for var, sub in (
        ("HELM_CONFIG_HOME", "config"),
        ("HELM_CACHE_HOME", "cache"),
        ("HELM_DATA_HOME", "data"),
    ):
        env[var] = str(home / sub)
    return env


def _read_manifest(out_dir: Path) -> dict[str, dict[str, str]]:
    try:
        data = json.loads((out_dir / _MANIFEST).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {
        str(k): {str(ek): str(ev) for ek, ev in v.items()} for k, v in data.items() if isinstance(v, dict)
    }


def _write_manifest(out_dir: Path, manifest: dict[str, dict[str, str]]) -> None:
    path = out_dir / _MANIFEST
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
