"""The GitSource kind: a git repository path whose Blueprint YAML the operator syncs.

The operator fetches the ref, validates every file (schema and semantics, with file and
line in errors) and applies all Blueprints of one commit together or none of them, then
records the commit on each Blueprint.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import ConfigDict, Field, model_validator

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


class GitSourceSpec(ApiModel):
    """Which repository, ref and folder hold Blueprints."""

    url: str = Field(description="Repository URL (https:// or ssh).", max_length=1024)
    ref: GitRef = Field(description="Branch, tag or commit.")
    path: str = Field(default=".", description="Folder in the repository holding Blueprint YAML.", max_length=1024)
    interval: str = Field(
        default="5m",
        description="How often to poll, as a duration such as 30s, 5m or 1h.",
        pattern=r"^([0-9]+(s|m|h))+$",
    )
    secret_ref: LocalObjectReference | None = Field(
        default=None, description="Secret with credentials (username/password or identity for ssh)."
    )
    prune_policy: Literal["keep", "delete"] = Field(
        default="keep", description="When a Blueprint disappears from git: keep it, or delete it."
    )


class SyncError(ApiModel):
    """Why the last sync was refused."""

    file: str = Field(default="", description="File in the repository.")
    line: int | None = Field(default=None, description="Line in that file.")
    message: str = Field(description="What is wrong.", max_length=4096)


class GitSourceStatus(ApiModel):
    """Sync progress."""

    observed_generation: int | None = Field(default=None, description="metadata.generation last processed.")
    conditions: list[Condition] = Field(default_factory=list, description="Ready, Synced.")
    last_applied_commit: str = Field(default="", description="Commit whose Blueprints are applied.")
    last_sync_time: datetime | None = Field(default=None, description="When the last sync attempt finished.")
    last_error: SyncError | None = Field(default=None, description="Why the last sync was refused, if it was.")
    blueprints: list[str] = Field(default_factory=list, description="Blueprints synced from this source.")


class GitSource(ApiModel):
    """A git repository holding Blueprints."""

    api_version: Literal["blueprintd.io/v1alpha1"] = Field(
        default="blueprintd.io/v1alpha1", description="blueprintd.io/v1alpha1"
    )
    kind: Literal["GitSource"] = Field(default="GitSource", description="GitSource")
    metadata: ObjectMeta = Field(description="Standard object metadata.")
    spec: GitSourceSpec = Field(description="Repository, ref and path.")
    status: GitSourceStatus | None = Field(default=None, description="Observed state, written by the operator.")
