"""Rollout status models: what a Blueprint's status records about its progressive rollout.

They live in the API (``status.rollout`` of every Blueprint) so any operator replica can
continue a rollout another started; the pure decision that produces them is in
``blueprintd.rollout``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import Field, field_validator

from blueprintd.api.base import ApiModel

ClusterState = Literal["Pending", "Progressing", "Ready", "Drifted", "Failed"]
RolloutPhase = Literal["Progressing", "Paused", "Complete", "Failed", "RolledBack"]
FailureReason = Literal["Failed", "Timeout", "Unreachable"]

MAX_MESSAGE = 1024
MAX_FAILURES = 50


def as_utc(value: datetime) -> datetime:
    """Naive datetimes are taken as UTC so that comparing them with aware ones never raises."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


class ClusterView(ApiModel):
    """What the rollout needs to know about one selected member cluster, for this Blueprint.

    The operator derives it from the MemberCluster (labels, version pin, status); the rollout
    core never reads MemberClusters itself, which keeps it pure and trivially testable.
    """

    name: str = Field(description="MemberCluster name; unique in one decide() call.", min_length=1)
    labels: dict[str, str] = Field(default_factory=dict, description="MemberCluster labels (canary selector).")
    pinned_version: str | None = Field(
        default=None,
        description=(
            "The MemberCluster pins this Blueprint to this version. A pinned cluster always gets its pin "
            "and takes no part in waves or health gating."
        ),
    )
    applied_version: str | None = Field(
        default=None, description="Blueprint version the cluster runs now; null when nothing is applied."
    )
    state: ClusterState = Field(
        default="Pending",
        description="Pending, Progressing, Ready or Failed: progress towards stateVersion.",
    )
    state_version: str | None = Field(
        default=None,
        description=(
            "The version `state` is about. A state about another version than the rollout target says "
            "nothing about the target: the cluster has not started converging to it."
        ),
    )
    failed_addon: str | None = Field(
        default=None, description="The add-on that failed (or is stuck), when the member reports one."
    )
    message: str = Field(default="", description="Why the cluster is in this state (e.g. a Helm error).")
    since: datetime | None = Field(
        default=None,
        description=(
            "When `state` began. Needed for the health timeout and to tell a failure from before a "
            "resume (stale, retried) from a new one; a Failed state without it always counts."
        ),
    )
    reachable: bool = Field(default=True, description="The member API server answered the last call.")
    last_contact: datetime | None = Field(
        default=None,
        description=(
            "Last successful call to the member. An unreachable cluster's health clock starts here "
            "(or when its wave started, whichever is later)."
        ),
    )

    @field_validator("since", "last_contact")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        return None if value is None else as_utc(value)


class RolloutFailure(ApiModel):
    """One cluster that failed the rollout's health gate: what, where and why, for humans."""

    cluster: str = Field(description="MemberCluster name.")
    version: str = Field(description="The version the cluster failed to become Ready at.")
    addon: str | None = Field(default=None, description="The failing add-on, when known.")
    reason: FailureReason = Field(
        description=(
            "Failed (the cluster reported a failure), Timeout (not Ready within healthTimeoutSeconds) "
            "or Unreachable (no contact for longer than healthTimeoutSeconds)."
        )
    )
    message: str = Field(default="", description="Details, e.g. the Helm error.", max_length=MAX_MESSAGE)

    def describe(self) -> str:
        """One sentence naming the cluster, the add-on and the error."""
        what = f"failed add-on {self.addon}" if self.addon else "failed"
        return f"{self.cluster} {what}: {self.message}" if self.message else f"{self.cluster} {what}"


class RolloutStatus(ApiModel):
    """The persisted state of one Blueprint's rollout (``status.rollout``).

    ``wave`` indexes ``waves``; ``wave == len(waves)`` means every wave is done. ``waves``
    are frozen when the rollout starts: clusters deleted later are dropped from them (a wave
    may become empty and is then simply passed), clusters added later join the last wave.
    """

    target_version: str = Field(description="The version being rolled out (the Blueprint's spec.version).")
    previous_version: str | None = Field(
        default=None,
        description="The version most of the fleet ran before this rollout: what `rollback` restores.",
    )
    phase: RolloutPhase = Field(
        default="Progressing", description="Progressing, Paused, Complete, Failed or RolledBack."
    )
    wave: int = Field(default=0, ge=0, description="Index of the current wave; len(waves) once all are done.")
    waves: list[list[str]] = Field(
        default_factory=list,
        description="Cluster names per wave, in order; the first is the canary wave when a canary is set.",
    )
    wave_started_at: datetime | None = Field(
        default=None,
        description=(
            "When the current wave started or the rollout was last resumed: the health clock of the "
            "wave's clusters starts here, and failures reported before it are stale."
        ),
    )
    assignments: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Cluster name to the version it should run now. A cluster absent from it should get "
            "nothing applied by this Blueprint yet."
        ),
    )
    failures: list[RolloutFailure] = Field(
        default_factory=list, description="Clusters that failed the health gate.", max_length=MAX_FAILURES
    )
    paused_by_user: bool = Field(default=False, description="Paused with `blueprintd rollout pause`.")
    resume_token: str | None = Field(
        default=None, description="The last resume request acted on (see decide's resume_token)."
    )
    message: str = Field(default="", description="What the rollout is doing, in one sentence.")

    @field_validator("wave_started_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        return None if value is None else as_utc(value)

    def wave_of(self, cluster: str) -> int | None:
        """Index of the wave holding ``cluster``, or None when it is in none (pinned at start, unknown)."""
        for index, names in enumerate(self.waves):
            if cluster in names:
                return index
        return None

    @property
    def done(self) -> bool:
        """Every wave has been passed (the rollout completed, possibly paused since)."""
        return self.wave >= len(self.waves)
