"""Inputs and output of the rollout decision.

The operator keeps no rollout state in memory: on every resync it builds one ``ClusterView``
per selected member cluster, calls :func:`blueprintd.rollout.decide.decide` with the
``RolloutStatus`` it reads back from the Blueprint's status, and writes the result back. So
everything a replica needs to continue a rollout another replica started (the frozen waves,
the current wave, when its health clock started, the failures, the last resume request it
acted on) is a field of ``RolloutStatus``, and the model round-trips through the wire form
exactly (``RolloutStatus.model_validate(s.to_wire()) == s``), which is what lets the operator
skip writes when nothing changed.

The strategy is the Blueprint's own ``spec.rollout`` model (:class:`~blueprintd.api.blueprint.Rollout`),
re-exported here as ``RolloutStrategy`` so there is a single definition of the user-facing shape.
"""

from __future__ import annotations

from blueprintd.api.blueprint import Canary, Rollout
from blueprintd.api.rollout import (
    MAX_FAILURES,
    MAX_MESSAGE,
    ClusterState,
    ClusterView,
    FailureReason,
    RolloutFailure,
    RolloutPhase,
    RolloutStatus,
    as_utc,
)

# The user-facing strategy lives in the Blueprint API (``spec.rollout``); one model, two names.
RolloutStrategy = Rollout
CanaryStrategy = Canary

__all__ = [
    "MAX_FAILURES",
    "MAX_MESSAGE",
    "CanaryStrategy",
    "ClusterState",
    "ClusterView",
    "FailureReason",
    "RolloutFailure",
    "RolloutPhase",
    "RolloutStatus",
    "RolloutStrategy",
    "as_utc",
]
