"""Rollout: the pure decision of which Blueprint version each member cluster runs now.

The operator calls :func:`decide` on every resync and stores the returned
:class:`RolloutStatus` in the Blueprint's status; see :mod:`blueprintd.rollout.decide` for the
semantics (canary and waves, health gate, pause and rollback, idempotence). The inputs and the
output are API models (``blueprintd.api.rollout``; the strategy is the Blueprint's
``spec.rollout``), so they round-trip through the status exactly.
"""

from blueprintd.api.rollout import ClusterState, ClusterView, RolloutStatus
from blueprintd.rollout.decide import batch_size, decide, plan_waves

__all__ = ["ClusterState", "ClusterView", "RolloutStatus", "batch_size", "decide", "plan_waves"]
