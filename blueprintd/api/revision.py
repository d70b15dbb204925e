"""The BlueprintRevision kind: the immutable snapshot of one Blueprint version.

The operator writes one revision per (Blueprint, version) the first time it sees that
version; history, version pins and rollback read revisions, never the live Blueprint, so
"roll back to 1.2.0" applies exactly the content that 1.2.0 had. The CRD refuses edits.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import ConfigDict, Field

from blueprintd.api.base import ApiModel
from blueprintd.api.blueprint import BlueprintSpec, RevisionSourceRef, _rule, _x
from blueprintd.api.common import ObjectMeta

RevisionSource = RevisionSourceRef


def revision_name(blueprint: str, version: str) -> str:
    """Object name of the revision of ``blueprint`` at ``version``, e.g. ``gpu-platform-v1.0.0``.

    SemVer build metadata (``+...``) is not allowed in object names, so it becomes ``-``.
    Names longer than 253 characters are cut, which keeps them valid.
    """
    safe = re.sub(r"[^a-z0-9.-]", "-", version.lower())
    return f"{blueprint}-v{safe}"[:253].rstrip("-.")


class BlueprintRevisionSpec(ApiModel):
    """A frozen Blueprint version."""

    model_config = ConfigDict(
        json_schema_extra=_x(validations=[_rule("self == oldSelf", "BlueprintRevision is immutable")])
    )

    blueprint: str = Field(description="Name of the Blueprint this is a version of.", max_length=253)
    version: str = Field(description="spec.version of the Blueprint at that time.", max_length=128)
    content_hash: str = Field(description="sha256 of the frozen spec; equal hashes mean equal content.")
    spec: BlueprintSpec = Field(description="The Blueprint spec exactly as published.")
    source: RevisionSourceRef = Field(
        default_factory=RevisionSourceRef,
        description="Where the content came from (kubectl or a git commit).",
    )


class BlueprintRevision(ApiModel):
    """Immutable snapshot of one Blueprint version, used for history and rollback."""

    api_version: Literal["blueprintd.io/v1alpha1"] = Field(
        default="blueprintd.io/v1alpha1", description="blueprintd.io/v1alpha1"
    )
    kind: Literal["BlueprintRevision"] = Field(default="BlueprintRevision", description="BlueprintRevision")
    metadata: ObjectMeta = Field(description="Standard object metadata.")
    spec: BlueprintRevisionSpec = Field(description="The frozen Blueprint version.")
