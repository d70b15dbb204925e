"""Chart pre-flight, the I/O part: pull charts into a local cache, run ``helm template``.

* **Cache.** A pulled chart is kept at ``<cache>/<repo key>/<chart>/<version>/`` with its
  archive and the archive's sha256 (``digest``). A pinned version never changes upstream, so
  a cached chart is reused without any network call as long as its archive still matches its
  digest; an archive that does not (a truncated download, a hand edit) is pulled again. The
  repository key is a hash of the repository URL *after* chart mirrors, so a mirror and the
  upstream never share an entry.
* **Pull.** ``helm pull`` (``--repo URL`` for HTTP repositories, ``oci://…/<chart>`` for OCI),
  with Helm's own config and cache in a private folder: nothing in the user's helm setup is
  read or changed. A pull that fails raises ``ChartUnavailable`` naming the chart, version
  and repository, with Helm's message.
* **Template.** ``helm template`` of the cached archive with the values as a file, the
  release name and namespace of the add-on. Its exit status and stderr are the verdict.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from blueprintd.errors import BlueprintdError

_PULL_TIMEOUT_S = 120
_TEMPLATE_TIMEOUT_S = 120


class ChartUnavailable(BlueprintdError):
    """A chart could not be pulled (no network, wrong mirror, missing version) and is not cached."""


def default_cache_dir() -> Path:
    """``$BLUEPRINTD_CHART_CACHE``, else ``$XDG_CACHE_HOME/blueprintd/charts`` (``~/.cache/…``)."""
    env = os.environ.get("BLUEPRINTD_CHART_CACHE")
    if env:
        return Path(env)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "blueprintd" / "charts"


@dataclass(frozen=True)
class CachedChart:
    """A chart archive in the cache, with what the pre-flight reads from it."""

    archive: Path
    defaults: dict[str, Any]
    has_schema: bool


@dataclass(frozen=True)
class TemplateResult:
    ok: bool
    stderr: str
    objects: int


class HelmPreflight:
    """``helm pull`` into the cache and ``helm template`` from it, for one helm binary."""

    def __init__(self, helm: Path, cache_dir: Path | None = None) -> None:
        self.helm = helm
        self.cache_dir = cache_dir or default_cache_dir()

    # --- cache ---------------------------------------------------------------------------

    def entry_dir(self, repo: str, chart: str, version: str) -> Path:
        """``<cache>/<repo key>/<chart>/<version>``, never outside the cache: a chart name or
        version with an empty, ``.`` or ``..`` path part (which helm would refuse to pull
        anyway) is ``ChartUnavailable`` before anything is created."""
        if any(part in ("", ".", "..") for part in f"{chart}/{version}".split("/")):
            raise ChartUnavailable(f"chart {chart} {version} from {repo}: not a chart name and version helm can pull")
        repo_key = hashlib.sha256(repo.rstrip("/").encode()).hexdigest()[:16]
        return self.cache_dir / repo_key / chart / version

    def chart(self, repo: str, chart: str, version: str) -> CachedChart:
        """The cached chart, pulled first when missing or damaged (``ChartUnavailable``)."""
        entry = self.entry_dir(repo, chart, version)
        cached = _read_entry(entry)
        if cached is None:
            self._pull(repo, chart, version, entry)
            cached = _read_entry(entry)
            if cached is None:
                raise ChartUnavailable(f"chart {chart} {version} from {repo}: pulled, but the archive is unreadable")
        return cached

    def _pull(self, repo: str, chart: str, version: str, entry: Path) -> None:
        entry.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".pull-", dir=entry.parent) as tmp:
            work = Path(tmp)
            (work / "out").mkdir()
            if repo.startswith("oci://"):
                args = ["pull", f"{repo.rstrip('/')}/{chart}", "--version", version]
            else:
                args = ["pull", chart, "--repo", repo, "--version", version]
            proc = self._run([*args, "--destination", str(work / "out")], work, _PULL_TIMEOUT_S)
            if proc.returncode != 0:
                raise ChartUnavailable(
                    f"could not get chart {chart} {version} from {repo}: {_helm_message(proc.stderr)}"
                )
            archives = sorted((work / "out").glob("*.tgz"))
            if len(archives) != 1:
                raise ChartUnavailable(f"helm pull {chart} {version} from {repo} produced {len(archives)} archives")
            staged = work / "entry"
            staged.mkdir()
            target = staged / archives[0].name
            shutil.move(str(archives[0]), target)
            (staged / "digest").write_text(_sha256(target) + "\n")
            with contextlib.suppress(FileNotFoundError):
                shutil.rmtree(entry)
            try:
                os.replace(staged, entry)
            except OSError:
                # Another process filled the entry meanwhile; its copy is as good as ours.
                if _read_entry(entry) is None:
                    raise

    # --- template ------------------------------------------------------------------------

    def template(
        self, cached: CachedChart, release: str, namespace: str, values: dict[str, Any]
    ) -> TemplateResult:
        with tempfile.TemporaryDirectory(prefix="blueprintd-preflight-") as tmp:
            work = Path(tmp)
            values_file = work / "values.json"
            values_file.write_text(json.dumps(values))
            proc = self._run(
                [
                    "template", release, str(cached.archive),
                    "--namespace", namespace,
                    "--include-crds",
                    "-f", str(values_file),
                ],
                work,
                _TEMPLATE_TIMEOUT_S,
            )
        if proc.returncode != 0:
            return TemplateResult(False, proc.stderr, 0)
        objects = sum(1 for doc in yaml.safe_load_all(proc.stdout) if doc)
        return TemplateResult(True, "", objects)

    def _run(self, args: list[str], home: Path, timeout: float) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ)
        for var, sub in (("HELM_CONFIG_HOME", "config"), ("HELM_CACHE_HOME", "cache"), ("HELM_DATA_HOME", "data")):
            env[var] = str(home / ".helm" / sub)
        try:
            return subprocess.run(
                [str(self.helm), *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
            )
        except FileNotFoundError as exc:
            raise BlueprintdError(f"helm not found at {self.helm}; install helm or pass its path") from exc
        except subprocess.TimeoutExpired as exc:
            raise ChartUnavailable(f"`helm {' '.join(args[:3])}` did not finish within {timeout:.0f}s") from exc


def _read_entry(entry: Path) -> CachedChart | None:
    """A cache entry whose archive matches its recorded digest, else None."""
    try:
        archives = sorted(entry.glob("*.tgz"))
        digest = (entry / "digest").read_text().strip()
    except OSError:
        return None
    if len(archives) != 1 or _sha256(archives[0]) != digest:
        return None
    try:
        defaults, has_schema = _chart_facts(archives[0])
    except (OSError, tarfile.TarError, yaml.YAMLError):
        return None
    return CachedChart(archives[0], defaults, has_schema)


def _chart_facts(archive: Path) -> tuple[dict[str, Any], bool]:
    """The chart's default values and whether it has a values.schema.json (top-level chart only)."""
    defaults: dict[str, Any] = {}
    has_schema = False
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar.getmembers():
            parts = member.name.split("/")
            if len(parts) != 2 or not member.isfile():
                continue
            if parts[1] == "values.schema.json":
                has_schema = True
            elif parts[1] == "values.yaml":
                fh = tar.extractfile(member)
                loaded = yaml.safe_load(fh.read()) if fh is not None else None
                defaults = loaded if isinstance(loaded, dict) else {}
    return defaults, has_schema


def _sha256(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def _helm_message(stderr: str) -> str:
    text = " ".join(line.strip().removeprefix("Error: ") for line in stderr.strip().splitlines() if line.strip())
    return text[:1000] or "helm gave no reason"
