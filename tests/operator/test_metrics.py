"""Operator metrics: a deleted cluster or Blueprint leaves no series behind that would keep an alert firing."""

from __future__ import annotations

from prometheus_client import generate_latest

from blueprintd.operator import metrics


def test_forgetting_drops_every_series_of_the_object() -> None:
    metrics.CLUSTER_REACHABLE.labels(cluster="gone-1").set(0)
    metrics.DRIFT_OPEN.labels(cluster="gone-1").set(3)
    metrics.CLUSTER_READY.labels(cluster="stays").set(1)
    metrics.ROLLOUT_PHASE.labels(blueprint="gone-bp").set(1)
    metrics.BLUEPRINT_VALID.labels(blueprint="gone-bp").set(0)
    metrics.forget_cluster("gone-1")
    metrics.forget_blueprint("gone-bp")
    metrics.forget_cluster("never-seen")  # no error for a cluster never reconciled
    text = generate_latest().decode()
    assert 'cluster="gone-1"' not in text and 'blueprint="gone-bp"' not in text
    assert 'blueprintd_member_cluster_ready{cluster="stays"} 1.0' in text
