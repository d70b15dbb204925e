"""Helm releases read from their storage Secrets (pure).

Helm 3 keeps every revision of a release in a Secret (type ``helm.sh/release.v1``, labels
``owner=helm``, ``name``, ``version``, ``status``) holding the release record: chart, status,
user-supplied values, description and the rendered manifest. Reading those Secrets is how the
Helm adapter (``cluster.helm``) reads a release without running helm, and watching them is how
drift detection sees ``helm uninstall``/``upgrade``/``rollback`` run by someone else the moment
it happens, without running helm: the record already says everything a check needs, including
which objects the release rendered.
"""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import yaml

from blueprintd.plan.live import ReleaseState

SECRET_TYPE = "helm.sh/release.v1"
LABEL_SELECTOR = "owner=helm"
FIELD_SELECTOR = f"type={SECRET_TYPE}"
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class ReleaseRecord:
    """One revision of a release, as its Secret stores it."""

    name: str
    namespace: str
    revision: int
    status: str
    chart: str
    chart_version: str
    values: dict[str, Any]
    description: str = ""
    manifest: str = field(default="", repr=False)
    crds: str = field(default="", repr=False)  # the chart's crds/ files, which helm applies apart

    def state(self) -> ReleaseState:
        return ReleaseState(
            name=self.name,
            namespace=self.namespace,
            chart=self.chart,
            version=self.chart_version,
            status=self.status,
            revision=self.revision,
            values=self.values,
            description=self.description,
        )


def is_release_secret(obj: dict[str, Any]) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return obj.get("type") == SECRET_TYPE and labels.get("owner") == "helm" and bool(labels.get("name"))


def release_name(obj: dict[str, Any]) -> str:
    return str(((obj.get("metadata") or {}).get("labels") or {}).get("name", ""))


def decode(obj: dict[str, Any]) -> ReleaseRecord | None:
    """The release record in a Helm storage Secret; None when it is not one or is unreadable."""
    if not is_release_secret(obj):
        return None
    raw = (obj.get("data") or {}).get("release")
    if not raw:
        return None
    try:
        data = base64.b64decode(base64.b64decode(raw))
        if data[:2] == _GZIP_MAGIC:
            data = gzip.decompress(data)
        rel = json.loads(data)
    except (ValueError, OSError):
        return None
    meta = (obj.get("metadata") or {}).get("labels") or {}
    chart_meta = ((rel.get("chart") or {}).get("metadata")) or {}
    info = rel.get("info") or {}
    return ReleaseRecord(
        name=str(rel.get("name") or meta.get("name", "")),
        namespace=str(rel.get("namespace") or (obj.get("metadata") or {}).get("namespace", "")),
        revision=int(rel.get("version") or meta.get("version") or 0),
        status=str(info.get("status") or meta.get("status", "")),
        chart=str(chart_meta.get("name", "")),
        chart_version=str(chart_meta.get("version", "")),
        values=dict(rel.get("config") or {}),
        description=str(info.get("description") or ""),
        manifest=str(rel.get("manifest") or ""),
        crds=chart_crds(rel.get("chart") or {}),
    )


def chart_crds(chart: dict[str, Any]) -> str:
    """The documents of the chart's ``crds/`` directory, which helm installs before the
    templates and keeps out of the release manifest (never upgraded, never deleted). The
    release record stores the chart's files, base64-encoded; subcharts' are not stored."""
    docs = []
    for f in chart.get("files") or []:
        name = str((f or {}).get("name") or "")
        if not name.startswith("crds/") or not name.endswith((".yaml", ".yml", ".json")):
            continue
        try:
            docs.append(base64.b64decode(str(f.get("data") or "")).decode())
        except (ValueError, UnicodeDecodeError):
            continue
    return "\n---\n".join(docs)


def secret_name(release: str, revision: int) -> str:
    """Helm's storage Secret of one revision (the ``secrets`` driver's naming)."""
    return f"sh.helm.release.v1.{release}.v{revision}"


def current(records: Iterable[ReleaseRecord]) -> ReleaseRecord | None:
    """The release's current revision: the highest one (what ``helm status`` shows)."""
    return max(records, key=lambda r: r.revision, default=None)


def manifest_objects(manifest: str) -> list[dict[str, Any]]:
    """The objects of a rendered manifest (``helm get manifest``)."""
    try:
        return [d for d in yaml.safe_load_all(manifest) if isinstance(d, dict)]
    except yaml.YAMLError:
        return []
