"""Prometheus metrics the operator exports on its metrics port."""

from __future__ import annotations

import contextlib

from prometheus_client import Counter, Gauge, Histogram

RECONCILES = Counter("blueprintd_reconciles_total", "Reconciles by object kind and result.", ["kind", "result"])
RECONCILE_SECONDS = Histogram(
    "blueprintd_reconcile_duration_seconds",
    "Time one reconcile took.",
    ["kind"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
MEMBER_WRITES = Counter("blueprintd_member_writes_total", "Write calls made to member clusters.", ["cluster"])
CLUSTER_READY = Gauge(
    "blueprintd_member_cluster_ready", "1 when the member cluster is reachable and converged, else 0.", ["cluster"]
)
ROLLOUT_PHASE = Gauge(
    "blueprintd_rollout_phase",
    "Rollout phase per Blueprint: 0 Progressing, 1 Paused, 2 Complete, 3 Failed, 4 RolledBack.",
    ["blueprint"],
)
CLUSTER_REACHABLE = Gauge(
    "blueprintd_member_cluster_reachable",
    "1 when the operator reached the member's API server on its last reconcile, else 0.",
    ["cluster"],
)
BLUEPRINT_VALID = Gauge(
    "blueprintd_blueprint_valid",
    "1 when the Blueprint's spec.version is published as a BlueprintRevision, 0 when it is refused "
    "(invalid, version reused with different content, unknown version).",
    ["blueprint"],
)
DRIFT_OPEN = Gauge(
    "blueprintd_drift_open",
    "Drift entries open on a member cluster: changes notify/block modes hold, or remediation not done yet.",
    ["cluster"],
)


def _remove(metric: Gauge | Counter, value: str) -> None:
    with contextlib.suppress(KeyError):  # never set for this label value
        metric.remove(value)


def forget_cluster(name: str) -> None:
    """A deleted MemberCluster: drop its series, or its last values (unreachable, drift) alert forever."""
    for metric in (CLUSTER_READY, CLUSTER_REACHABLE, DRIFT_OPEN, MEMBER_WRITES):
        _remove(metric, name)


def forget_blueprint(name: str) -> None:
    """A deleted Blueprint: drop its series (a paused or refused Blueprint would alert forever)."""
    for metric in (ROLLOUT_PHASE, BLUEPRINT_VALID):
        _remove(metric, name)
