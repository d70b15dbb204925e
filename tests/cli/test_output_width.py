"""Tables keep whole names when stdout is a CI log or a pipe, and in a narrow terminal (issue 16 item 4)."""

from __future__ import annotations

from typing import Any

import pytest
from rich.console import Console

from blueprintd.api.facts import ClusterFacts, NodePool
from blueprintd.cli.drift import render_drift
from blueprintd.cli.facts import render_cluster
from blueprintd.cli.fleetview import fleet_summary, render_status
from blueprintd.cli.output import stdout_console
from blueprintd.cli.plan import render_plan

LONG_CLUSTER = "l4-inference-eu-west-production-cluster-07"
LONG_POOL = "h100-80gb-mig-all-1g-10gb"
LONG_ADDON = "nvidia-gpu-operator-with-a-long-name"
MESSAGE = "waiting for the canary wave to report healthy before the next wave starts " * 2


def _fleet() -> dict[str, Any]:
    bp = {
        "metadata": {"name": "gpu-platform-standard-configuration"},
        "spec": {"version": "1.1.0"},
        "status": {"rollout": {"targetVersion": "1.1.0", "phase": "Progressing", "wave": 0,
                               "waves": [[LONG_CLUSTER]], "message": MESSAGE},
                   "conditions": [{"type": "Valid", "status": "True"}], "matchedClusters": 2},
    }
    mc = {
        "metadata": {"name": LONG_CLUSTER},
        "status": {"reachable": True,
                   "blueprints": [{"blueprint": "gpu-platform-standard-configuration", "version": "1.0.0",
                                   "state": "Ready"}],
                   "factsSummary": [{"pool": LONG_POOL, "nodes": 2}, {"pool": "l4-inference", "nodes": 3}],
                   "lastError": ""},
    }
    return fleet_summary([bp], [mc, {"metadata": {"name": "l4-inference"}}])


def test_status_in_a_ci_log_keeps_every_name_whole(capsys: pytest.CaptureFixture[str]) -> None:
    render_status(_fleet(), stdout_console())  # stdout is captured: not a terminal, like CI
    out = capsys.readouterr().out
    for name in (LONG_CLUSTER, f"{LONG_POOL}x2", "l4-inferencex3", "gpu-platform-standard-configuration"):
        assert name in out
    assert "…" not in out
    assert MESSAGE.strip() in " ".join(out.split()), "the message is printed in full on one line"
    assert max(len(line) for line in out.splitlines()) > 80, "the table takes the width it needs"


def test_status_in_a_narrow_terminal_folds_text_but_not_names() -> None:
    console = Console(width=100, record=True, force_terminal=True)
    render_status(_fleet(), console)
    out = console.export_text()
    assert LONG_CLUSTER in out and "gpu-platform-standard-configuration" in out
    assert "…" not in out
    assert max(len(line) for line in out.splitlines()) <= 100


def test_drift_tables_keep_cluster_and_addon_names(capsys: pytest.CaptureFixture[str]) -> None:
    entry = {"blueprint": "gpu-platform", "addon": LONG_ADDON,
             "object": {"kind": "ConfigMap", "namespace": "gpu-operator", "name": "device-plugin-config"},
             "path": "data.config", "expected": "a", "actual": "b", "action": "notified", "manager": "kubectl"}
    data = {"clusters": [{"name": LONG_CLUSTER, "monitored": True, "summary": {"open": 1},
                          "lastUpdated": "2026-01-01T00:00:00Z", "entries": [entry]}], "open": 1}
    render_drift(data, stdout_console(), detail=False)
    out = capsys.readouterr().out
    assert out.count(LONG_CLUSTER) == 2 and f"gpu-platform/{LONG_ADDON}" in out
    assert "ConfigMap gpu-operator/device-plugin-config" in out
    assert "…" not in out


def test_facts_table_keeps_pool_names(capsys: pytest.CaptureFixture[str]) -> None:
    pools = [NodePool(name=LONG_POOL, nodes=["a", "b"], gpu_product="NVIDIA-H100-80GB-HBM3", gpu_count=8,
                      gpu_memory_mib=81559, mig_capable=True, mig_enabled=True, mig_config="all-1g.10gb",
                      driver_version="580.95.05"),
             NodePool(name="l4-inference", nodes=["c"], gpu_product="NVIDIA-L4", gpu_count=4)]
    render_cluster(ClusterFacts(cluster=LONG_CLUSTER, pools=pools))
    out = capsys.readouterr().out
    assert LONG_POOL in out and "l4-inference " in out and "NVIDIA-H100-80GB-HBM3" in out
    assert "…" not in out


def _plan() -> dict[str, Any]:
    action = {"addon": LONG_ADDON, "kind": "helm-upgrade", "target": "gpu-operator/gpu-operator", "reason": MESSAGE}
    held = {"addon": LONG_ADDON, "target": "ConfigMap gpu-operator/device-plugin-config", "reason": MESSAGE}
    return {"cluster": LONG_CLUSTER, "blueprint": "gpu-platform", "version": "1.1.0", "why": "assigned by the rollout",
            "selected": True, "empty": False, "actions": [action], "held": [held]}


def test_plan_in_a_narrow_terminal_keeps_addon_names_whole() -> None:
    console = Console(width=100, record=True, force_terminal=True)
    render_plan(_plan(), console)
    out = console.export_text()
    assert out.count(LONG_ADDON) == 2, out
    assert "…" not in out
    assert max(len(line) for line in out.splitlines()) <= 100


def test_status_shows_when_a_failed_addon_and_an_unreachable_member_are_retried(
    capsys: pytest.CaptureFixture[str],
) -> None:
    failed = {
        "metadata": {"name": "alpha"},
        "status": {"reachable": True,
                   "blueprints": [{"blueprint": "gpu-platform", "version": "1.2.0", "state": "Failed",
                                   "failedAddon": "kata", "message": "template: boom",
                                   "backoff": {"failures": 3, "nextAttempt": "2026-03-01T12:00:20Z"}}]},
    }
    down = {
        "metadata": {"name": "beta"},
        "status": {"reachable": False, "lastError": "member API server unreachable",
                   "backoff": {"failures": 2, "nextAttempt": "2026-03-01T12:05:00Z"}},
    }
    data = fleet_summary([], [failed, down])
    alpha, beta = data["clusters"]
    assert (alpha["blueprints"][0]["failures"], alpha["blueprints"][0]["nextAttempt"]) == (3, "2026-03-01T12:00:20Z")
    assert (beta["failures"], beta["nextAttempt"]) == (2, "2026-03-01T12:05:00Z")
    render_status(data, stdout_console())
    out = capsys.readouterr().out
    assert "retry 2026-03-01T12:00:20Z" in out and "retry 2026-03-01T12:05:00Z" in out
