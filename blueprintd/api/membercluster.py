"""The MemberCluster kind: one cluster of the fleet and what the operator knows about it.

Users write the spec (where the kubeconfig is, labels for selectors, an optional version
pin); the operator writes the status (reachability, hardware facts summary, what is applied,
per-add-on state, drift counts). Labels come from ``metadata.labels`` so ordinary
``kubectl label`` and label selectors work.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from blueprintd.api.base import ApiModel
from blueprintd.api.blueprint import UnselectAction
from blueprintd.api.common import Condition, ObjectMeta
from blueprintd.api.inventory import Inventory
from blueprintd.api.params import ParamValue

# Set by `blueprintd drift restore`: the next reconcile also puts back drift that the
# notify/block modes leave alone; status.driftRestored records the value carried out.
RESTORE_ANNOTATION = "blueprintd.io/restore-drift"

AddonStateName = Literal["Pending", "Installing", "Ready", "Drifted", "Failed"]


class SecretKeyRef(ApiModel):
    """A key of a Secret."""

    name: str = Field(description="Secret name.", max_length=253)
    namespace: str | None = Field(default=None, description="Secret namespace; defaults to the operator namespace.")
    key: str = Field(default="kubeconfig", description="Key holding the kubeconfig YAML.", max_length=253)


class VersionPin(ApiModel):
    """Hold a Blueprint at one version on this cluster (also how a single cluster is rolled back)."""

    blueprint: str = Field(description="Blueprint name.", max_length=253)
    version: str = Field(description="Version to run; its BlueprintRevision must exist.", max_length=128)


class MemberClusterSpec(ApiModel):
    """How to reach a member cluster and how it takes part in rollouts."""

    kubeconfig_secret_ref: SecretKeyRef = Field(description="Secret holding the member's kubeconfig.")
    allow_exec_auth: bool = Field(
        default=False,
        description=("Allow kubeconfigs that run a command (exec / auth-provider). Off: such kubeconfigs are refused."),
    )
    allow_local_files: bool = Field(
        default=False,
        description=("Allow kubeconfigs that read files on the operator's disk. Off: such kubeconfigs are refused."),
    )
    version_pins: list[VersionPin] = Field(
        default_factory=list, description="Pin Blueprints to a version on this cluster.", max_length=64
    )
    paused: bool = Field(default=False, description="Stop applying changes to this cluster (drift is still reported).")
    parameters: dict[str, ParamValue] = Field(
        default_factory=dict,
        description=(
            "Per-cluster values for Blueprint parameters (params.<name>), overriding the defaults. Each value "
            "must satisfy the parameter's declared type, minimum, maximum and enum; a value that does not fails "
            "this cluster's render (status.blueprints[].message names it) and leaves the other clusters alone."
        ),
    )


class AppliedRevision(ApiModel):
    """The Blueprint version currently applied."""

    blueprint: str = Field(description="Blueprint name.")
    version: str = Field(description="Applied spec.version.")
    revision: str = Field(default="", description="BlueprintRevision name.")
    content_hash: str = Field(default="", description="Content hash of the applied version.")
    applied_at: datetime | None = Field(default=None, description="When the apply finished.")


class AddonState(ApiModel):
    """State of one add-on on this cluster."""

    name: str = Field(description="Add-on name.")
    blueprint: str = Field(default="", description="Blueprint the add-on belongs to.")
    state: AddonStateName = Field(
        description="Pending, Installing, Ready, Drifted (not ready because of drift its mode leaves alone) or Failed."
    )
    message: str = Field(default="", description="Why the add-on is in this state.", max_length=4096)
    revision: str = Field(default="", description="Blueprint version the add-on was rendered from.")


class PoolSummary(ApiModel):
    """One node pool as seen by the facts collector."""

    pool: str = Field(description="Pool name.")
    product: str = Field(default="", description="GPU product, empty for CPU pools.")
    nodes: int = Field(default=0, description="Number of nodes.")
    gpus: int = Field(default=0, description="GPUs in the pool (all nodes).")
    mig: bool = Field(default=False, description="MIG is enabled.")
    sandbox: bool = Field(default=False, description="Pool runs sandboxed (VM passthrough) workloads.")


class DriftSummary(ApiModel):
    """Counts of drifted fields, by what was done about them."""

    open: int = Field(default=0, description="Drift not (yet) resolved.")
    remediated: int = Field(default=0, description="Fields restored.")
    notified: int = Field(default=0, description="Fields reported only.")
    blocked: int = Field(default=0, description="Changes refused at admission that the operator could observe.")
    protected: int = Field(default=0, description="Objects guarded by an admission policy (drift mode block).")


class WaitItem(ApiModel):
    """One thing an add-on step waits for on the member (docs/reconcile.md, "Progress")."""

    kind: str = Field(description="Kind of the object waited for: Job, Deployment, CustomResourceDefinition, ...")
    name: str = Field(description="namespace/name of the object (name alone when cluster-scoped).", max_length=512)
    reason: str = Field(description="What is missing, e.g. 'hook Job not complete', '1/2 available'.", max_length=512)


class AddonProgress(ApiModel):
    """The add-on step running right now: shown while it lasts, gone when it ends."""

    addon: str = Field(description="Add-on name.")
    step: Literal["install", "upgrade", "apply", "wait"] = Field(
        description="install/upgrade: a Helm release is installed or upgraded; apply: manifests are applied; "
        "wait: nothing to change, waiting for the add-on to become ready."
    )
    version: str = Field(default="", description="Blueprint version being applied.")
    since: datetime | None = Field(default=None, description="When the step started.")
    waiting_for: list[WaitItem] = Field(
        default_factory=list, description="What the step waits for, as last observed.", max_length=64
    )


class RetryBackoff(ApiModel):
    """Consecutive failed attempts and when the next one is due (docs/blueprints.md, "Backoff")."""

    failures: int = Field(default=0, ge=0, description="Consecutive failed attempts of the same thing.")
    next_attempt: datetime | None = Field(
        default=None, description="The operator does not try again before this time (exponential backoff)."
    )
    attempt: str = Field(
        default="", description="Hash of what failed (version and inputs); a change retries at once.", max_length=64
    )


class BlueprintProgress(ApiModel):
    """Where one Blueprint stands on this cluster: the rollout reads it, the next plan prunes from it."""

    blueprint: str = Field(description="Blueprint name.")
    version: str = Field(description="The version this cluster is converging to (assigned or pinned).")
    state: Literal["Pending", "Progressing", "Ready", "Drifted", "Failed"] = Field(description="State at that version.")
    failed_addon: str = Field(default="", description="The add-on that failed, when state is Failed.")
    message: str = Field(default="", description="Why (e.g. the Helm or API error).", max_length=4096)
    since: datetime | None = Field(default=None, description="When the cluster entered this state.")
    last_attempt: datetime | None = Field(default=None, description="Last failed attempt (retries back off).")
    backoff: RetryBackoff | None = Field(
        default=None, description="Set while failed: consecutive failures and the next attempt time."
    )
    inventory: Inventory = Field(
        default_factory=Inventory,
        description="Objects, Helm releases and node-label keys applied for this Blueprint (pruning reads it).",
    )
    on_unselect: UnselectAction = Field(
        default="Orphan",
        description="The Blueprint's onUnselect when last applied: used when the Blueprint itself is deleted.",
    )
    current: AddonProgress | None = Field(
        default=None, description="The add-on step in progress (install, upgrade, wait), while one runs."
    )


class ShardOwner(ApiModel):
    """The operator replica that reconciles and drift-watches this member (sharded operators).

    Written by the replica when it claims the member and cleared when it hands the member
    over; another replica takes over only once this is empty or its Lease expired
    (docs/ha.md)."""

    replica: str = Field(default="", description="Replica id (its heartbeat Lease's holder).", max_length=253)
    since: datetime | None = Field(default=None, description="When the replica claimed the member.")


class MemberClusterStatus(ApiModel):
    """What the operator observed about the member cluster."""

    observed_generation: int | None = Field(default=None, description="metadata.generation last processed.")
    conditions: list[Condition] = Field(default_factory=list, description="Reachable, Ready, Drifted, ...")
    reachable: bool = Field(default=False, description="The member API server answered the last call.")
    last_contact_time: datetime | None = Field(default=None, description="Last successful call.")
    backoff: RetryBackoff | None = Field(
        default=None,
        description="Set while unreachable: consecutive failed connection attempts and the next attempt time.",
    )
    kubernetes_version: str = Field(default="", description="Member API server version.")
    revision_summary: str = Field(default="", description="Applied Blueprint versions, e.g. gpu-platform@1.0.0.")
    applied_revisions: list[AppliedRevision] = Field(default_factory=list, description="Per Blueprint.")
    addons: list[AddonState] = Field(default_factory=list, description="Per add-on state.", max_length=512)
    last_error: str = Field(default="", description="The last error, without secrets.", max_length=4096)
    shard: ShardOwner | None = Field(default=None, description="The operator replica that owns this member.")
    facts_summary: list[PoolSummary] = Field(default_factory=list, description="Node pools.", max_length=256)
    drift: DriftSummary = Field(default_factory=DriftSummary, description="Drift counts (details in DriftReport).")
    drift_restored: str = Field(
        default="",
        description="The blueprintd.io/restore-drift annotation value last carried out: held notify/block drift "
        "was put back (blueprintd drift restore).",
    )
    blueprints: list[BlueprintProgress] = Field(
        default_factory=list, description="Per Blueprint: target version, state and applied inventory."
    )


class MemberCluster(ApiModel):
    """A cluster of the fleet."""

    api_version: Literal["blueprintd.io/v1alpha1"] = Field(
        default="blueprintd.io/v1alpha1", description="blueprintd.io/v1alpha1"
    )
    kind: Literal["MemberCluster"] = Field(default="MemberCluster", description="MemberCluster")
    metadata: ObjectMeta = Field(description="Standard object metadata; labels are matched by clusterSelector.")
    spec: MemberClusterSpec = Field(description="How to reach the cluster.")
    status: MemberClusterStatus | None = Field(default=None, description="Observed state, written by the operator.")
