"""The DriftReport kind: every drifted field of one member cluster, kept in the management cluster.

One report per member cluster (named after it). Each entry names the object and field, the
expected and actual values, when it was first and last seen, which field manager changed it
and what was done. ``blueprintd drift`` reads these.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from blueprintd.api.base import ApiModel
from blueprintd.api.common import ObjectMeta

DriftAction = Literal["remediated", "notified", "blocked", "pending"]


class ObjectRef(ApiModel):
    """A Kubernetes object in the member cluster."""

    api_version: str = Field(description="apiVersion, e.g. apps/v1.")
    kind: str = Field(description="Kind, e.g. DaemonSet.")
    name: str = Field(description="Name.")
    namespace: str | None = Field(default=None, description="Namespace, for namespaced kinds.")


class DriftEntry(ApiModel):
    """One drifted field."""

    object: ObjectRef = Field(description="The drifted object (a Helm release is kind HelmRelease).")
    addon: str = Field(default="", description="Add-on the object belongs to.")
    path: str = Field(description="Field path, e.g. spec.template.spec.containers[0].image.")
    expected: Any = Field(default=None, description="Value the Blueprint sets.")
    actual: Any = Field(default=None, description="Value found (absent: null).")
    first_seen: datetime | None = Field(default=None, description="When this drift was first seen.")
    last_seen: datetime | None = Field(default=None, description="When it was last seen.")
    manager: str = Field(default="", description="Field manager that made the change, when known.")
    action: DriftAction = Field(description="remediated, notified, blocked or pending.")
    message: str = Field(default="", description="Details.", max_length=4096)


class DriftCounts(ApiModel):
    """Counts by action."""

    total: int = Field(default=0, description="Entries in the report.")
    remediated: int = Field(default=0, description="Restored.")
    notified: int = Field(default=0, description="Reported only.")
    blocked: int = Field(default=0, description="Refused at admission.")
    pending: int = Field(default=0, description="Not yet acted on.")


class DriftReportSpec(ApiModel):
    """Which cluster the report is about."""

    cluster: str = Field(description="MemberCluster name.")


class DriftReportStatus(ApiModel):
    """The drift found."""

    entries: list[DriftEntry] = Field(default_factory=list, description="Drifted fields.", max_length=2000)
    summary: DriftCounts = Field(default_factory=DriftCounts, description="Counts by action.")
    last_updated: datetime | None = Field(default=None, description="When the report last changed.")


class DriftReport(ApiModel):
    """Drift of one member cluster."""

    api_version: Literal["blueprintd.io/v1alpha1"] = Field(
        default="blueprintd.io/v1alpha1", description="blueprintd.io/v1alpha1"
    )
    kind: Literal["DriftReport"] = Field(default="DriftReport", description="DriftReport")
    metadata: ObjectMeta = Field(description="Standard object metadata; named after the MemberCluster.")
    spec: DriftReportSpec = Field(description="The cluster.")
    status: DriftReportStatus | None = Field(default=None, description="The drift, written by the operator.")
