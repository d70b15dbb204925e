"""The DriftReport kind: every drifted field of one member cluster, kept in the management cluster.

One report per member cluster (named after it, in the MemberCluster's namespace). Each entry
names the Blueprint, add-on, object and field, the expected and actual values, when it was
first and last seen, which field manager changed it and what was done. The operator keeps it
(never only in memory: a restarted or another replica continues from it) and ``blueprintd
drift`` reads it. Values that may hold secrets are redacted before they get here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from blueprintd.api.base import ApiModel
from blueprintd.api.blueprint import DriftMode
from blueprintd.api.common import ObjectMeta
from blueprintd.api.ref import ObjectRef  # the one identity type; stored as {apiVersion, kind, namespace, name}

DriftAction = Literal["remediated", "notified", "blocked", "open"]
DriftReason = Literal[
    "changed",
    "deleted",
    "release-missing",
    "release-status",
    "release-rollback",
    "chart",
    "values",
    "label-removed",
    "label-changed",
]


class DriftEntry(ApiModel):
    """One drifted field (or a deleted object, or a Helm release that is not as installed)."""

    blueprint: str = Field(default="", description="Blueprint that sets the field.")
    addon: str = Field(default="", description="Add-on the object belongs to (empty for node labels).")
    mode: DriftMode = Field(default="remediate", description="Effective drift mode of the add-on.")
    object: ObjectRef = Field(description="The drifted object (a Helm release is kind HelmRelease).")
    path: str = Field(description="Field path, e.g. spec.template.spec.containers[0].image ('.': the object).")
    pointer: str = Field(default="", description="The same field as an RFC 6901 JSON pointer.")
    reason: DriftReason = Field(default="changed", description="What kind of drift this is.")
    expected: Any = Field(default=None, description="Value the Blueprint sets (secrets redacted).")
    actual: Any = Field(default=None, description="Value found; null when absent (secrets redacted).")
    first_seen: datetime | None = Field(default=None, description="When this drift was first seen.")
    last_seen: datetime | None = Field(default=None, description="When it was last confirmed.")
    manager: str = Field(default="", description="Field manager that made the change, when the object records it.")
    action: DriftAction = Field(
        description="remediated (restored), notified (reported only), blocked (refused at admission) or open "
        "(not acted on: a remediation failed, or a change got past a block policy)."
    )
    resolved_at: datetime | None = Field(default=None, description="When the field matched the Blueprint again.")
    message: str = Field(default="", description="Details.", max_length=4096)


class DriftCounts(ApiModel):
    """Counts over the report's entries."""

    total: int = Field(default=0, description="Entries in the report (open and resolved).")
    open: int = Field(default=0, description="Entries not resolved yet: the cluster differs from its Blueprints now.")
    remediated: int = Field(default=0, description="Entries restored by the operator.")
    notified: int = Field(default=0, description="Entries reported only (mode notify).")
    blocked: int = Field(default=0, description="Changes refused at admission that the operator could observe.")
    protected: int = Field(default=0, description="Objects guarded by an admission policy (mode block).")


class DriftReportSpec(ApiModel):
    """Which cluster the report is about."""

    cluster: str = Field(description="MemberCluster name.")


class DriftReportStatus(ApiModel):
    """The drift found."""

    entries: list[DriftEntry] = Field(default_factory=list, description="Drifted fields.", max_length=2000)
    summary: DriftCounts = Field(default_factory=DriftCounts, description="Counts by state and action.")
    protected: list[ObjectRef] = Field(
        default_factory=list, description="Objects guarded by an admission policy (mode block).", max_length=2000
    )
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
