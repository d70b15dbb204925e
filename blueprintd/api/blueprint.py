"""The Blueprint kind: a named platform standard at one semantic version.

A Blueprint lists add-ons (Helm charts or plain manifests), policies, hardware-aware
overlays, a drift policy, a cluster selector and a rollout strategy. Its content is
identified by ``content_hash()``; publishing different content requires a new
``spec.version`` (enforced by the CRD and by the operator), so a version always names
exactly one content and rollback is exact.

Field descriptions here become ``kubectl explain`` text: they are written for users.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from blueprintd.api.base import ApiModel
from blueprintd.api.common import Condition, LabelSelector, ObjectMeta, check_dns_label
from blueprintd.api.params import UNTYPED_IN_CRD, Parameter
from blueprintd.api.rollout import RolloutStatus

SEMVER_PATTERN = (
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(-((0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(\.(0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(\+([0-9a-zA-Z-]+(\.[0-9a-zA-Z-]+)*))?$"
)
SEMVER_RE = re.compile(SEMVER_PATTERN)
CHART_VERSION_RE = re.compile(r"^v?" + SEMVER_PATTERN[1:])
PARAM_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
REPO_SCHEMES = ("https://", "http://", "oci://")

MAX_ADDONS = 64
MAX_OVERLAYS = 64
MAX_PATCHES = 64
MAX_MANIFESTS = 256
MAX_NAME = 63

DriftMode = Literal["remediate", "notify", "block"]
ReadinessKind = Literal["Deployment", "DaemonSet", "StatefulSet", "CRD", "Job"]
PatchOpName = Literal["add", "remove", "replace", "move", "copy", "test"]

# Names the render step gives the add-ons it generates from ``spec.policies``.
POLICY_TEMPLATES_ADDON = "policy-templates"
POLICY_CONSTRAINTS_ADDON = "policy-constraints"
NETWORK_POLICIES_ADDON = "network-policies"
GENERATED_ADDONS = (POLICY_TEMPLATES_ADDON, POLICY_CONSTRAINTS_ADDON, NETWORK_POLICIES_ADDON)


def _x(**rules: Any) -> dict[str, Any]:
    """``json_schema_extra`` carrying Kubernetes-only schema keys (copied into the CRD)."""
    return {f"x-kubernetes-{k.replace('_', '-')}": v for k, v in rules.items()}


def _rule(rule: str, message: str) -> dict[str, str]:
    return {"rule": rule, "message": message}


# --- add-ons ----------------------------------------------------------------------------


class HelmSource(ApiModel):
    """A Helm chart release: where the chart comes from, which version, which values."""

    repo: str = Field(
        description=(
            "Chart repository URL: https:// (classic repository) or oci:// (OCI registry; the chart "
            "reference becomes <repo>/<chart>). Air-gapped fleets map it to a mirror with chart mirrors."
        ),
        max_length=512,
    )
    chart: str = Field(description="Chart name in the repository, e.g. gpu-operator.", max_length=253)
    version: str = Field(
        description=("Exact chart version (SemVer, a leading 'v' allowed as some charts publish it), e.g. v25.10.0."),
        max_length=128,
    )
    release_name: str | None = Field(
        default=None, description="Helm release name; defaults to the add-on name.", max_length=53
    )
    values: dict[str, Any] = Field(
        default_factory=dict, description="Chart values before overlays. Overlays patch these per cluster."
    )
    encode_as_yaml: list[str] = Field(
        default_factory=list,
        description=(
            "Paths (JSON pointers such as /migManager/config/data/config.yaml; '*' matches any key) whose "
            "final structured content is passed to the chart as a YAML string. Embedded config files stay "
            "structured while overlays merge them, so several overlays can add entries without conflict."
        ),
        max_length=32,
    )

    @field_validator("repo")
    @classmethod
    def _repo_scheme(cls, value: str) -> str:
        if not value.startswith(REPO_SCHEMES):
            raise ValueError(f"repository URL {value!r} must start with https://, http:// or oci://")
        return value

    @field_validator("version")
    @classmethod
    def _chart_version(cls, value: str) -> str:
        if not CHART_VERSION_RE.fullmatch(value):
            raise ValueError(f"chart version {value!r} is not an exact SemVer version such as 1.2.3 or v1.2.3")
        return value

    @field_validator("release_name")
    @classmethod
    def _release_name(cls, value: str | None) -> str | None:
        return None if value is None else check_dns_label(value)


class ReadinessCheck(ApiModel):
    """An object that must be ready before the add-on counts as installed."""

    kind: ReadinessKind = Field(description="Deployment, DaemonSet, StatefulSet, CRD or Job.")
    name: str = Field(description="Object name (for CRD: the CRD name, e.g. queues.scheduling.run.ai).", max_length=253)
    namespace: str | None = Field(
        default=None, description="Namespace of the object; defaults to the add-on namespace. Unused for CRD."
    )


class Readiness(ApiModel):
    """How to tell that an add-on finished installing; dependants wait for this."""

    timeout_seconds: int = Field(
        default=600, ge=1, le=86400, description="Give up (add-on state Failed) after this many seconds."
    )
    checks: list[ReadinessCheck] = Field(
        default_factory=list, description="Objects that must report ready.", max_length=32
    )


class DriftIgnore(ApiModel):
    """Fields that are not drift, e.g. replicas owned by an autoscaler or caBundle set by a webhook."""

    kind: str | None = Field(default=None, description="Only objects of this kind; all kinds when omitted.")
    name: str | None = Field(default=None, description="Only objects with this name; all names when omitted.")
    paths: list[str] = Field(
        description="Field paths to ignore: dotted (spec.replicas) or JSON pointer (/spec/replicas).",
        min_length=1,
        max_length=32,
    )


class AddonDrift(ApiModel):
    """Drift handling for one add-on; unset fields inherit the Blueprint's ``spec.drift``."""

    mode: DriftMode | None = Field(
        default=None,
        description=(
            "remediate (restore the declared state), notify (report and emit an event) or block (an "
            "admission check refuses the change). Inherits spec.drift.mode when omitted."
        ),
    )
    ignore: list[DriftIgnore] = Field(
        default_factory=list, description="Extra ignore rules, added to spec.drift.ignore.", max_length=32
    )


class Addon(ApiModel):
    """One component of the platform: a Helm release or a set of plain Kubernetes objects."""

    model_config = ConfigDict(
        json_schema_extra=_x(
            validations=[
                _rule(
                    "has(self.helm) != has(self.manifests)",
                    "set exactly one of helm or manifests",
                ),
                _rule("!has(self.helm) || has(self.namespace)", "a helm add-on needs a namespace"),
            ]
        )
    )

    name: str = Field(description="Add-on name (DNS label), unique in the Blueprint.", max_length=MAX_NAME)
    namespace: str | None = Field(
        default=None,
        description="Namespace the release or the namespaced objects go to. Required for helm add-ons.",
        max_length=63,
    )
    helm: HelmSource | None = Field(default=None, description="Install a Helm chart. Exclusive with manifests.")
    manifests: list[dict[str, Any]] | None = Field(
        default=None,
        description="Apply these Kubernetes objects (server-side apply). Exclusive with helm.",
        max_length=MAX_MANIFESTS,
    )
    depends_on: list[str] = Field(
        default_factory=list,
        description="Add-ons that must be ready before this one is installed.",
        max_length=MAX_ADDONS,
    )
    readiness: Readiness | None = Field(default=None, description="How to tell the add-on is ready.")
    drift: AddonDrift | None = Field(default=None, description="Per-add-on drift handling.")

    @field_validator("name", "namespace")
    @classmethod
    def _dns(cls, value: str | None) -> str | None:
        return None if value is None else check_dns_label(value)

    @model_validator(mode="after")
    def _one_source(self) -> Addon:
        if (self.helm is None) == (self.manifests is None):
            raise ValueError("set exactly one of 'helm' or 'manifests'")
        if self.helm is not None and not self.namespace:
            raise ValueError("a helm add-on needs a 'namespace'")
        return self

    @property
    def release_name(self) -> str:
        return (self.helm.release_name if self.helm else None) or self.name


# --- policies ---------------------------------------------------------------------------


class GatekeeperPolicies(ApiModel):
    """OPA Gatekeeper policy objects; render turns them into two ordered manifest add-ons."""

    addon: str = Field(
        default="gatekeeper",
        description=(
            "The add-on installing Gatekeeper; the generated policy add-ons depend on it. Must name an add-on "
            'of spec.addons when there are templates or constraints; "" means Gatekeeper is installed outside '
            "this Blueprint."
        ),
    )
    templates: list[dict[str, Any]] = Field(
        default_factory=list,
        description=("ConstraintTemplate objects (templates.gatekeeper.sh/v1), installed as add-on policy-templates."),
        max_length=MAX_MANIFESTS,
    )
    constraints: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Constraint objects (constraints.gatekeeper.sh/v1beta1), installed after the templates.",
        max_length=MAX_MANIFESTS,
    )


class Policies(ApiModel):
    """Admission policies and network isolation that ship with the platform."""

    gatekeeper: GatekeeperPolicies | None = Field(default=None, description="Gatekeeper templates and constraints.")
    network_policies: list[dict[str, Any]] = Field(
        default_factory=list,
        description=(
            "NetworkPolicy objects, installed as add-on network-policies. A policy without a namespace is "
            "stamped into every namespace of tenantNamespaces."
        ),
        max_length=MAX_MANIFESTS,
    )
    tenant_namespaces: list[str] = Field(
        default_factory=list,
        description="Tenant namespaces that namespace-less network policies are applied to.",
        max_length=256,
    )

    @field_validator("tenant_namespaces")
    @classmethod
    def _dns(cls, value: list[str]) -> list[str]:
        return [check_dns_label(v) for v in value]


# --- overlays ---------------------------------------------------------------------------


class JsonPatchOp(ApiModel):
    """One RFC 6902 JSON patch operation."""

    op: PatchOpName = Field(description="add, remove, replace, move, copy or test.")
    path: str = Field(description="JSON pointer of the target location, e.g. /migManager/config/default.")
    value: Any = Field(default=None, description="Value for add, replace and test.")
    from_: str | None = Field(default=None, alias="from", description="Source JSON pointer for move and copy.")

    @model_validator(mode="after")
    def _shape(self) -> JsonPatchOp:
        has_value = "value" in self.model_fields_set
        if self.op in ("add", "replace", "test") and not has_value:
            raise ValueError(f"op '{self.op}' needs a 'value'")
        if self.op in ("move", "copy") and self.from_ is None:
            raise ValueError(f"op '{self.op}' needs 'from'")
        if self.op in ("remove", "move", "copy") and has_value:
            raise ValueError(f"op '{self.op}' takes no 'value'")
        return self

    def to_wire(self) -> dict[str, Any]:
        data: dict[str, Any] = {"op": self.op, "path": self.path}
        if "value" in self.model_fields_set:
            data["value"] = self.value
        if self.from_ is not None:
            data["from"] = self.from_
        return data


class ManifestTarget(ApiModel):
    """Selects one object of a manifests add-on."""

    kind: str = Field(description="Object kind, e.g. Queue.")
    name: str = Field(description="Object name.")
    namespace: str | None = Field(default=None, description="Object namespace, when the kind is namespaced.")
    api_version: str | None = Field(default=None, description="Object apiVersion, when the kind name is ambiguous.")


class OverlayPatch(ApiModel):
    """A change to one add-on: its Helm values, or one of its manifests.

    Exactly one of ``values`` (JSON merge patch of Helm values), ``valuesJsonPatch`` (RFC 6902
    ops on Helm values), ``mergePatch`` or ``jsonPatch`` (on the manifest named by ``target``).
    Any string of the whole form ``${ <CEL> }`` (values and map keys alike) is replaced by the
    expression's result, evaluated like the overlay's ``when``.
    """

    model_config = ConfigDict(
        json_schema_extra=_x(
            validations=[
                _rule(
                    "[has(self.values), has(self.valuesJsonPatch), has(self.mergePatch), has(self.jsonPatch)]"
                    ".filter(x, x).size() == 1",
                    "set exactly one of values, valuesJsonPatch, mergePatch or jsonPatch",
                ),
                _rule(
                    "has(self.target) == (has(self.mergePatch) || has(self.jsonPatch))",
                    "target is required with mergePatch/jsonPatch and not allowed otherwise",
                ),
            ]
        )
    )

    addon: str = Field(description="Name of the add-on to patch.", max_length=MAX_NAME)
    values: dict[str, Any] | None = Field(
        default=None,
        description="JSON merge patch (RFC 7386) applied to the add-on's Helm values; null deletes a key.",
    )
    values_json_patch: list[JsonPatchOp] | None = Field(
        default=None,
        description="RFC 6902 operations applied to the add-on's Helm values.",
        max_length=MAX_PATCHES,
    )
    target: ManifestTarget | None = Field(default=None, description="The manifest to patch (manifests add-ons only).")
    merge_patch: dict[str, Any] | None = Field(
        default=None, description="JSON merge patch applied to the target manifest."
    )
    json_patch: list[JsonPatchOp] | None = Field(
        default=None,
        description="RFC 6902 operations applied to the target manifest.",
        max_length=MAX_PATCHES,
    )

    @model_validator(mode="after")
    def _one_kind(self) -> OverlayPatch:
        chosen = [
            name
            for name, v in (
                ("values", self.values),
                ("valuesJsonPatch", self.values_json_patch),
                ("mergePatch", self.merge_patch),
                ("jsonPatch", self.json_patch),
            )
            if v is not None
        ]
        if len(chosen) != 1:
            got = ", ".join(chosen) if chosen else "none"
            raise ValueError(f"set exactly one of values, valuesJsonPatch, mergePatch or jsonPatch (got {got})")
        manifest_patch = self.merge_patch is not None or self.json_patch is not None
        if manifest_patch and self.target is None:
            raise ValueError(f"'{chosen[0]}' needs a 'target' naming the manifest to patch")
        if not manifest_patch and self.target is not None:
            raise ValueError("'target' is only used with mergePatch or jsonPatch")
        return self


class Overlay(ApiModel):
    """A conditional change: when the CEL condition holds for the cluster (or a node pool), apply patches.

    CEL variables: ``cluster`` (name, labels, kubernetesVersion, pools), ``pool`` (nodePool scope:
    the pool's facts plus migProfile, migProfiles, migProfileCount, migDeviceFilter, product,
    nodeCount) and ``params`` (spec.parameters).
    """

    model_config = ConfigDict(
        json_schema_extra=_x(
            validations=[
                _rule(
                    "self.scope == 'nodePool' || !has(self.nodeLabels) || size(self.nodeLabels) == 0",
                    "nodeLabels are only allowed on overlays with scope nodePool",
                )
            ]
        )
    )

    name: str = Field(description="Overlay name (DNS label), unique in the Blueprint.", max_length=MAX_NAME)
    description: str = Field(default="", description="What the overlay is for.", max_length=1024)
    scope: Literal["cluster", "nodePool"] = Field(
        default="cluster",
        description=("cluster: evaluated once per cluster. nodePool: evaluated once per node pool, with `pool` set."),
    )
    when: str = Field(
        default="true",
        description=("CEL condition, e.g. pool.migCapable && !pool.sandbox. The overlay applies when it is true."),
        max_length=4096,
    )
    priority: int = Field(
        default=0,
        description=(
            "Application order among overlays of the same scope: lower first, then by name. Two overlays "
            "setting the same field to different values is an error whatever their priority."
        ),
    )
    patches: list[OverlayPatch] = Field(default_factory=list, description="Changes to add-ons.", max_length=MAX_PATCHES)
    node_labels: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Labels put on every node of the matching pool (scope nodePool only), e.g. nvidia.com/mig.config."
        ),
    )

    @field_validator("name")
    @classmethod
    def _dns(cls, value: str) -> str:
        return check_dns_label(value)

    @model_validator(mode="after")
    def _labels_need_pool(self) -> Overlay:
        if self.node_labels and self.scope != "nodePool":
            raise ValueError("nodeLabels are only allowed on overlays with scope nodePool")
        return self


# --- drift, rollout ---------------------------------------------------------------------


UnselectAction = Literal["Orphan", "Prune"]


class DriftPolicy(ApiModel):
    """What happens when a member cluster's objects differ from the Blueprint."""

    mode: DriftMode = Field(
        default="remediate",
        description=("remediate (restore), notify (report and emit an event) or block (refuse changes at admission)."),
    )
    ignore: list[DriftIgnore] = Field(
        default_factory=list,
        description="Fields that are never drift (autoscaler- or webhook-owned).",
        max_length=64,
    )


class Canary(ApiModel):
    """Which clusters get a new version first; the rest wait until they are healthy."""

    model_config = ConfigDict(
        json_schema_extra=_x(
            validations=[_rule("has(self.count) != has(self.selector)", "set exactly one of count or selector")]
        )
    )

    count: int | None = Field(default=None, ge=1, description="Number of clusters (chosen by name order).")
    selector: LabelSelector | None = Field(default=None, description="Clusters whose labels match.")

    @model_validator(mode="after")
    def _one(self) -> Canary:
        if (self.count is None) == (self.selector is None):
            raise ValueError("set exactly one of 'count' or 'selector'")
        return self


class Rollout(ApiModel):
    """How a new Blueprint version spreads across the selected clusters."""

    canary: Canary | None = Field(default=None, description="Clusters updated first; omit to skip the canary phase.")
    max_unavailable: int | str = Field(
        default=1,
        description="Clusters updated at once after the canary: a number or a percentage such as 25%.",
    )
    failure_policy: Literal["pause", "rollback"] = Field(
        default="pause",
        description="On an unhealthy cluster: pause the rollout, or roll the updated clusters back.",
    )
    health_timeout_seconds: int = Field(
        default=900, ge=1, le=86400, description="A cluster that is not healthy within this time has failed."
    )

    @field_validator("max_unavailable")
    @classmethod
    def _int_or_percent(cls, value: int | str) -> int | str:
        if isinstance(value, int):
            if value < 1:
                raise ValueError("maxUnavailable must be at least 1")
            return value
        if not re.fullmatch(r"([1-9][0-9]?|100)%", value):
            raise ValueError(f"maxUnavailable {value!r} must be an integer or a percentage from 1% to 100%")
        return value


# --- the kind ---------------------------------------------------------------------------


MAX_PARAMETERS = 128


class BlueprintSpec(ApiModel):
    """The content of one Blueprint version."""

    model_config = ConfigDict(
        json_schema_extra=_x(
            validations=[
                _rule(
                    "oldSelf.version != self.version || oldSelf == self",
                    "spec changed without a new spec.version: bump spec.version (semver) to publish new content",
                )
            ]
        )
    )

    version: str = Field(
        description=("SemVer version of this content, e.g. 1.2.0. Changing anything else requires a new version."),
        max_length=128,
        json_schema_extra={"pattern": SEMVER_PATTERN},
    )
    description: str = Field(default="", description="What this platform standard provides.", max_length=4096)
    cluster_selector: LabelSelector | None = Field(
        default=None,
        description="Member clusters (by MemberCluster labels) this applies to; all when omitted.",
    )
    parameters: dict[str, Annotated[Parameter, UNTYPED_IN_CRD]] = Field(
        default_factory=dict,
        description=(
            "Typed settings overlays read as params.<name>, each declared with type (string, integer, number, "
            "boolean), default and optional minimum, maximum, enum and description, e.g. timeSlicingReplicas: "
            "{type: integer, default: 4, minimum: 1, maximum: 64}. MemberClusters override the value "
            "(spec.parameters) within the same bounds."
        ),
        json_schema_extra={"maxProperties": MAX_PARAMETERS},
    )
    addons: list[Addon] = Field(default_factory=list, description="Platform components.", max_length=MAX_ADDONS)
    policies: Policies | None = Field(default=None, description="Admission and network policies.")
    overlays: list[Overlay] = Field(
        default_factory=list,
        description="Hardware-aware changes, decided per cluster.",
        max_length=MAX_OVERLAYS,
    )
    drift: DriftPolicy = Field(default_factory=DriftPolicy, description="Drift handling for all add-ons.")
    rollout: Rollout = Field(default_factory=Rollout, description="How new versions reach the clusters.")
    on_unselect: UnselectAction = Field(
        default="Orphan",
        description=(
            "What happens in a cluster the Blueprint stops selecting (its labels or the clusterSelector changed, "
            "or the Blueprint was deleted): Orphan leaves the add-ons running, unmanaged; Prune removes "
            "everything the Blueprint installed there, in reverse install order."
        ),
    )

    @field_validator("version")
    @classmethod
    def _semver(cls, value: str) -> str:
        if not SEMVER_RE.fullmatch(value):
            raise ValueError(f"version {value!r} is not SemVer: use MAJOR.MINOR.PATCH such as 1.0.0 (no 'v' prefix)")
        return value

    @field_validator("parameters")
    @classmethod
    def _param_names(cls, value: dict[str, Parameter]) -> dict[str, Parameter]:
        if len(value) > MAX_PARAMETERS:
            raise ValueError(f"{len(value)} parameters declared; at most {MAX_PARAMETERS} are allowed")
        for name in value:
            if not PARAM_NAME_RE.fullmatch(name):
                raise ValueError(f"parameter name {name!r} must be a CEL identifier (letters, digits, '_')")
        return value

    def content_hash(self) -> str:
        """``sha256:<hex>`` of the canonical content.

        Computed over the wire form without default values, so writing a default explicitly
        or leaving it out yields the same hash, and adding a defaulted field in a later
        blueprintd release does not change the hash of existing content.
        """
        data = self.model_dump(by_alias=True, exclude_defaults=True, mode="json")
        blob = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return "sha256:" + hashlib.sha256(blob.encode()).hexdigest()


class RevisionSourceRef(ApiModel):
    """Where a Blueprint's content came from."""

    kind: Literal["kubectl", "git"] = Field(default="kubectl", description="kubectl (applied directly) or git.")
    repo: str | None = Field(default=None, description="Git repository URL (kind git).")
    commit: str | None = Field(default=None, description="Git commit the content was read at (kind git).")
    path: str | None = Field(default=None, description="File path in the repository (kind git).")


class BlueprintStatus(ApiModel):
    """What the operator observed about this Blueprint."""

    observed_generation: int | None = Field(default=None, description="metadata.generation last processed.")
    conditions: list[Condition] = Field(default_factory=list, description="Ready, Valid, RollingOut.")
    content_hash: str | None = Field(default=None, description="Hash of spec, as recorded in the revision.")
    revision: str | None = Field(default=None, description="Name of the BlueprintRevision holding this version.")
    matched_clusters: int = Field(default=0, description="Member clusters selected by clusterSelector.")
    ready_clusters: int = Field(default=0, description="Selected clusters running this version healthily.")
    rollout: RolloutStatus | None = Field(
        default=None, description="Progressive rollout of the target version: waves, assignments, failures."
    )
    source: RevisionSourceRef | None = Field(default=None, description="Where the content came from.")


class Blueprint(ApiModel):
    """A versioned platform standard for GPU clusters."""

    api_version: Literal["blueprintd.io/v1alpha1"] = Field(
        default="blueprintd.io/v1alpha1", description="blueprintd.io/v1alpha1"
    )
    kind: Literal["Blueprint"] = Field(default="Blueprint", description="Blueprint")
    metadata: ObjectMeta = Field(description="Standard object metadata; metadata.name names the Blueprint.")
    spec: BlueprintSpec = Field(description="The platform content at spec.version.")
    status: BlueprintStatus | None = Field(default=None, description="Observed state, written by the operator.")

    @property
    def name(self) -> str:
        return self.metadata.name

    def content_hash(self) -> str:
        return self.spec.content_hash()
