"""DesiredState: what one Blueprint version means for one cluster, fully resolved.

It is the contract between ``render`` (pure) and everything downstream: ``plan`` compares
it with the live cluster, the apply layer installs ``steps`` in order and labels nodes,
drift detection compares only the fields listed here, and ``blueprintd render --explain``
shows ``explanations``. Serialised with sorted keys it is byte-identical for equal inputs,
so its hash can tell whether anything changed.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field

from blueprintd.api import yamltext
from blueprintd.api.base import ApiModel
from blueprintd.api.blueprint import DriftMode, DriftPolicy, Readiness


class HelmRelease(ApiModel):
    """A Helm release to install or upgrade."""

    release_name: str = Field(description="Helm release name.")
    namespace: str = Field(description="Release namespace (created when missing).")
    repo: str = Field(description="Chart repository, after chart mirrors were applied.")
    chart: str = Field(description="Chart name.")
    version: str = Field(description="Exact chart version.")
    values: dict[str, Any] = Field(default_factory=dict, description="Final values after overlays.")
    upstream_repo: str | None = Field(
        default=None, description="The Blueprint's repository when a chart mirror replaced it."
    )

    @property
    def chart_ref(self) -> str:
        """What to pass to ``helm install``: ``<repo>/<chart>`` for OCI, the chart name otherwise
        (together with ``--repo``)."""
        if self.repo.startswith("oci://"):
            return f"{self.repo.rstrip('/')}/{self.chart}"
        return self.chart


class Step(ApiModel):
    """One add-on, installed after the steps it depends on are ready."""

    addon: str = Field(description="Add-on name.")
    namespace: str | None = Field(default=None, description="Add-on namespace.")
    depends_on: list[str] = Field(default_factory=list, description="Add-ons that must be ready first.")
    helm: HelmRelease | None = Field(default=None, description="Set for Helm add-ons.")
    manifests: list[dict[str, Any]] | None = Field(
        default=None, description="Set for manifest add-ons: final objects, namespaces filled in."
    )
    readiness: Readiness | None = Field(default=None, description="How to tell the add-on is ready.")
    drift: DriftPolicy = Field(default_factory=DriftPolicy, description="Effective drift policy.")
    generated: bool = Field(default=False, description="Generated from spec.policies.")


class NodeLabels(ApiModel):
    """Labels the operator puts on every node of a pool."""

    pool: str = Field(description="Node pool name.")
    nodes: list[str] = Field(default_factory=list, description="Nodes of the pool.")
    labels: dict[str, str] = Field(default_factory=dict, description="Labels to set.")


class Explanation(ApiModel):
    """Whether an overlay applied (per pool for nodePool overlays) and why."""

    overlay: str = Field(description="Overlay name.")
    scope: Literal["cluster", "nodePool"] = Field(description="Overlay scope.")
    pool: str | None = Field(default=None, description="The pool, for nodePool overlays.")
    fired: bool = Field(description="The condition was true and the patches were applied.")
    reason: str = Field(description="The facts the condition read, and its result.")


class DesiredState(ApiModel):
    """A Blueprint version rendered for one cluster."""

    blueprint: str = Field(description="Blueprint name.")
    version: str = Field(description="Blueprint spec.version.")
    revision: str = Field(description="Content hash of the Blueprint spec (sha256:...).")
    cluster: str = Field(description="Cluster the state was rendered for.")
    parameters: dict[str, Any] = Field(default_factory=dict, description="Effective parameters.")
    steps: list[Step] = Field(default_factory=list, description="Add-ons in install order.")
    node_labels: list[NodeLabels] = Field(default_factory=list, description="Node labels per pool.")
    node_label_drift: DriftMode = Field(
        default="remediate",
        description="Drift mode of the node labels: the Blueprint's spec.drift.mode (labels belong to no add-on).",
    )
    explanations: list[Explanation] = Field(default_factory=list, description="Why each overlay did or did not apply.")

    def step(self, addon: str) -> Step:
        """The step of ``addon``; ``KeyError`` when the Blueprint has no such add-on."""
        for step in self.steps:
            if step.addon == addon:
                return step
        raise KeyError(addon)

    def fired(self, overlay: str, pool: str | None = None) -> bool:
        """Whether ``overlay`` applied (for ``pool``, or for any pool when ``pool`` is None)."""
        return any(e.fired for e in self.explanations if e.overlay == overlay and (pool is None or e.pool == pool))

    def to_json(self, indent: int | None = None) -> str:
        """Canonical JSON (sorted keys): byte-identical for equal content."""
        separators = (",", ":") if indent is None else (",", ": ")
        return json.dumps(self.to_wire(), sort_keys=True, indent=indent, separators=separators, ensure_ascii=False)

    def to_yaml(self) -> str:
        return yamltext.dump(self.to_wire(), sort_keys=True, allow_unicode=True, width=100)
