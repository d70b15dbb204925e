"""The GitSource kind: a git repository path whose Blueprint YAML the operator syncs.

The operator fetches the ref, validates every file (schema and semantics, with file and
line in errors) and applies all Blueprints of one commit together or none of them, then
records the commit on each Blueprint.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from blueprintd.api.base import ApiModel
from blueprintd.api.blueprint import _rule, _x
from blueprintd.api.common import Condition, LocalObjectReference, ObjectMeta


class GitRef(ApiModel):
    """What to check out: exactly one of branch, tag or commit."""

    model_config = ConfigDict(
        json_schema_extra=_x(
            validations=[
                _rule(
                    "[has(self.branch), has(self.tag), has(self.commit)].filter(x, x).size() == 1",
                    "set exactly one of branch, tag or commit",
                )
            ]
        )
    )

    branch: str | None = Field(default=None, description="Follow this branch.", max_length=255)
    tag: str | None = Field(default=None, description="Use this tag.", max_length=255)
    commit: str | None = Field(default=None, description="Use this commit (full SHA).", pattern=r"^[0-9a-f]{40}$")

    @model_validator(mode="after")
    def _exactly_one(self) -> GitRef:
        if sum(v is not None for v in (self.branch, self.tag, self.commit)) != 1:
            raise ValueError("set exactly one of 'branch', 'tag' or 'commit'")
        return self


# Credentials belong in the Secret named by secretRef, never in the URL: the GitSource is
# readable by everyone who can list it, and URLs end up in logs, events and annotations.
_URL_WITH_PASSWORD = r"^[A-Za-z][A-Za-z0-9+.-]*://[^/@]*:[^/@]*@"
# The path is confined to the repository: no absolute paths, no '..' segments.
_PATH_ESCAPES = r"(^/|(^|/)[.][.](/|$))"


class GitSourceSpec(ApiModel):
    """Which repository, ref and folder hold Blueprints."""

    model_config = ConfigDict(
        json_schema_extra=_x(
            validations=[
                _rule(
                    f"!self.url.matches('{_URL_WITH_PASSWORD}')",
                    "do not put credentials in the URL: reference a Secret with secretRef",
                ),
                _rule(
                    f"!has(self.path) || !self.path.matches('{_PATH_ESCAPES}')",
                    "path must be relative to the repository root and must not contain '..'",
                ),
            ]
        )
    )

    url: str = Field(
        description=(
            "Repository URL: https://host/org/repo.git or ssh://git@host/org/repo.git (or git@host:org/repo.git). "
            "Credentials go in the Secret named by secretRef, never in the URL."
        ),
        max_length=1024,
    )
    ref: GitRef = Field(description="Branch, tag or commit.")
    path: str = Field(
        default=".",
        description=(
            "Folder (searched recursively for *.yaml and *.yml), single file, or glob such as "
            "blueprints/*/blueprint.yaml ('**' matches any depth), relative to the repository root."
        ),
        max_length=1024,
    )
    interval: str = Field(
        default="5m",
        description="How often to poll, as a duration such as 30s, 5m or 1h.",
        pattern=r"^([0-9]+(s|m|h))+$",
    )
    secret_ref: LocalObjectReference | None = Field(
        default=None,
        description=(
            "Secret in the GitSource's namespace with credentials: username and password (an HTTPS token), or "
            "identity (an SSH private key) and known_hosts; optionally ca.crt for a private HTTPS CA."
        ),
    )
    prune_policy: Literal["keep", "delete"] = Field(
        default="keep",
        description=(
            "When a Blueprint disappears from git: keep it (listed in status.orphanedBlueprints), or delete the "
            "Blueprint object (its BlueprintRevisions stay)."
        ),
    )
    webhook_secret_ref: LocalObjectReference | None = Field(
        default=None,
        description=(
            "Secret in the GitSource's namespace whose key 'token' is the shared secret of push webhooks "
            "(POST /hooks/<name>, X-Hub-Signature-256). Without it, webhooks for this source are refused."
        ),
    )

    @field_validator("url")
    @classmethod
    def _no_password(cls, value: str) -> str:
        if re.match(_URL_WITH_PASSWORD, value):
            raise ValueError("do not put credentials in the URL: reference a Secret with secretRef")
        return value

    @field_validator("path")
    @classmethod
    def _confined(cls, value: str) -> str:
        if re.search(_PATH_ESCAPES, value):
            raise ValueError("path must be relative to the repository root and must not contain '..'")
        return value


class SyncError(ApiModel):
    """Why the last sync was refused."""

    file: str = Field(default="", description="File in the repository.")
    line: int | None = Field(default=None, description="Line in that file.")
    message: str = Field(description="What is wrong.", max_length=4096)


class GitSourceStatus(ApiModel):
    """Sync progress."""

    observed_generation: int | None = Field(default=None, description="metadata.generation last processed.")
    conditions: list[Condition] = Field(
        default_factory=list, description="Fetched (the ref was fetched) and Ready (its commit is applied)."
    )
    last_applied_commit: str = Field(default="", description="Commit whose Blueprints are applied.")
    last_fetched_commit: str = Field(
        default="", description="Commit the ref pointed at when last fetched (applied or refused)."
    )
    last_sync_time: datetime | None = Field(
        default=None,
        description=(
            "When a sync last changed this status (a new commit, an error, a fix); a poll that finds "
            "nothing new writes nothing."
        ),
    )
    last_error: SyncError | None = Field(default=None, description="Why the last sync was refused, if it was.")
    errors: list[SyncError] = Field(
        default_factory=list, description="Every problem of the refused commit (the first 20).", max_length=20
    )
    blueprints: list[str] = Field(default_factory=list, description="Blueprints synced from this source.")
    orphaned_blueprints: list[str] = Field(
        default_factory=list,
        description="Blueprints this source created that are no longer in git, kept because prunePolicy is keep.",
    )


class GitSource(ApiModel):
    """A git repository holding Blueprints."""

    api_version: Literal["blueprintd.io/v1alpha1"] = Field(
        default="blueprintd.io/v1alpha1", description="blueprintd.io/v1alpha1"
    )
    kind: Literal["GitSource"] = Field(default="GitSource", description="GitSource")
    metadata: ObjectMeta = Field(description="Standard object metadata.")
    spec: GitSourceSpec = Field(description="Repository, ref and path.")
    status: GitSourceStatus | None = Field(default=None, description="Observed state, written by the operator.")
