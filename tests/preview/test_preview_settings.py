"""``blueprintd diff`` judges a candidate Blueprint under the operator's settings, not the defaults.

The operator compiles what it publishes with ``OperatorSettings.blueprint_limits``; a preview
that compiled with the built-in limits would refuse a Blueprint the operator accepts (or the
other way round). No cluster is needed: the candidate is compiled before any member is read.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from blueprintd.api.blueprint import Blueprint
from blueprintd.api.issues import InvalidInput
from blueprintd.api.limits import BlueprintLimits
from blueprintd.cluster.management import ManagementStore
from blueprintd.operator.settings import OperatorSettings
from blueprintd.preview.fleet import Candidate, preview

THIRTY = "[" + ",".join(str(i) for i in range(30)) + "]"
COSTLY = f"{THIRTY}.all(a, {THIRTY}.all(b, {THIRTY}.all(c, a+b+c >= 0)))"  # over the default static limit


class EmptyNamespace:
    """The management cluster's reads, for a namespace without MemberClusters or revisions."""

    namespace = "blueprintd-system"

    async def list(self, kind: str) -> list[dict[str, Any]]:
        return []

    async def get(self, kind: str, name: str) -> dict[str, Any] | None:
        return None


def candidate() -> Candidate:
    bp = Blueprint.model_validate(
        {
            "apiVersion": "blueprintd.io/v1alpha1",
            "kind": "Blueprint",
            "metadata": {"name": "costly"},
            "spec": {
                "version": "1.0.0",
                "addons": [{"name": "objs", "namespace": "apps", "manifests": []}],
                "overlays": [{"name": "costly", "when": COSTLY}],
            },
        }
    )
    return Candidate(bp, "blueprints/costly")


def run(settings: OperatorSettings) -> Any:
    return asyncio.run(preview(cast(ManagementStore, EmptyNamespace()), [candidate()], settings))


def test_the_default_limits_refuse_the_candidate_as_the_operator_would() -> None:
    with pytest.raises(InvalidInput) as info:
        run(OperatorSettings())
    assert info.value.issues[0].field == "spec.overlays[0].when"


def test_raised_operator_limits_accept_it_as_the_operator_would() -> None:
    data = run(OperatorSettings(blueprint_limits=BlueprintLimits(cel_cost=10**12)))
    assert data.members == [] and data.exit_code == 0
