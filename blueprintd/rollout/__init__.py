"""Rollout: the pure decision of which Blueprint version each member cluster runs now.

The operator calls :func:`decide` on every resync and stores the returned
:class:`RolloutStatus` in the Blueprint's status; see :mod:`blueprintd.rollout.decide` for the
semantics (canary and waves, health gate, pause and rollback, idempotence).
"""

from blueprintd.rollout.decide import batch_size, decide, plan_waves
from blueprintd.rollout.models import (
    CanaryStrategy,
    ClusterState,
    ClusterView,
    FailureReason,
    RolloutFailure,
    RolloutPhase,
    RolloutStatus,
    RolloutStrategy,
)

__all__ = [
    "CanaryStrategy",
    "ClusterState",
    "ClusterView",
    "FailureReason",
    "RolloutFailure",
    "RolloutPhase",
    "RolloutStatus",
    "RolloutStrategy",
    "batch_size",
    "decide",
    "plan_waves",
]
