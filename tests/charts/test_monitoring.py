"""charts/blueprintd alerts and dashboard: off by default, valid for the real promtool, each alert fires.

The chart is rendered with the pinned helm exactly as a user installs it; the PrometheusRule's
groups go to ``promtool check rules`` and to ``promtool test rules`` with tests/charts/alerts_test.yaml,
which fires every alert from synthetic series (and checks that it stays quiet before its ``for:``).
``make promtool`` installs promtool (Debian's prometheus package); ``make test`` depends on it.
The metrics the rules and the dashboard read are checked against a running operator's /metrics
in tests/preview/test_fleet_preview.py.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from blueprintd.devfleet.binaries import Binaries

CHART = Path(__file__).resolve().parents[2] / "charts" / "blueprintd"
UNIT_TESTS = Path(__file__).resolve().with_name("alerts_test.yaml")
METRIC = re.compile(r"\bblueprintd_[a-z_]+\b")


def promtool() -> str:
    found = shutil.which("promtool")
    assert found, "promtool is missing: `make promtool` installs Debian's prometheus package"
    return found


def render(helm: Path, *sets: str) -> list[dict[str, Any]]:
    args = [str(helm), "template", "bpd", str(CHART), "-n", "blueprintd-system"]
    for s in sets:
        args += ["--set", s]
    out = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def rule(docs: list[dict[str, Any]]) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == "PrometheusRule"]
    assert len(found) == 1
    return found[0]


def dashboard(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "blueprintd-dashboard")
    return cm, json.loads(cm["data"]["blueprintd.json"])


def dashboard_exprs(dash: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]


def metric_names(texts: list[str]) -> set[str]:
    return {m for t in texts for m in METRIC.findall(t)}


def alert_metric_names(helm: Path) -> set[str]:
    """Every operator metric the alerts and the dashboard query (used by the running-operator test)."""
    docs = render(helm, "alerts.enabled=true", "dashboards.enabled=true")
    exprs = [r["expr"] for g in rule(docs)["spec"]["groups"] for r in g["rules"]]
    return metric_names(exprs + dashboard_exprs(dashboard(docs)[1]))


def test_alerts_and_dashboard_are_off_by_default(kube_binaries: Binaries) -> None:
    kinds = [(d["kind"], d["metadata"]["name"]) for d in render(kube_binaries.helm)]
    assert not any(k == "PrometheusRule" for k, _ in kinds)
    assert ("ConfigMap", "blueprintd-dashboard") not in kinds
    assert ("Deployment", "blueprintd") in kinds


def test_rules_pass_promtool_check_and_every_alert_fires_in_unit_tests(
    kube_binaries: Binaries, tmp_path: Path
) -> None:
    pr = rule(render(kube_binaries.helm, "alerts.enabled=true", "alerts.labels.release=kube-prometheus-stack"))
    assert pr["apiVersion"] == "monitoring.coreos.com/v1"
    assert pr["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": pr["spec"]["groups"]}))
    shutil.copy(UNIT_TESTS, tmp_path / "alerts_test.yaml")

    check = subprocess.run([promtool(), "check", "rules", "rules.yaml"], cwd=tmp_path, capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 6 rules found" in check.stdout + check.stderr

    unit = subprocess.run([promtool(), "test", "rules", "alerts_test.yaml"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert unit.returncode == 0, unit.stdout + unit.stderr
    assert "SUCCESS" in unit.stdout + unit.stderr

    alerts = {r["alert"] for g in pr["spec"]["groups"] for r in g["rules"]}
    assert alerts == {"BlueprintdDriftHeldOpen", "BlueprintdRolloutPaused", "BlueprintdRolloutFailed",
                      "BlueprintdMemberUnreachable", "BlueprintdReconcileErrors", "BlueprintdRevisionRefused"}
    tested = {t["alertname"] for case in yaml.safe_load(UNIT_TESTS.read_text())["tests"]
              for t in case["alert_rule_test"] if t["exp_alerts"]}
    assert tested == alerts, "every alert is fired by a unit test"


def test_alert_thresholds_and_labels_come_from_values(kube_binaries: Binaries) -> None:
    pr = rule(render(kube_binaries.helm, "alerts.enabled=true", "alerts.for.memberUnreachable=3m",
                     "alerts.ruleLabels.team=platform"))
    rules = {r["alert"]: r for g in pr["spec"]["groups"] for r in g["rules"]}
    assert rules["BlueprintdMemberUnreachable"]["for"] == "3m"
    assert rules["BlueprintdDriftHeldOpen"]["for"] == "30m"
    assert rules["BlueprintdRolloutFailed"]["labels"] == {"severity": "critical", "team": "platform"}


def test_dashboard_configmap_for_the_grafana_sidecar_with_valid_queries(
    kube_binaries: Binaries, tmp_path: Path
) -> None:
    cm, dash = dashboard(render(kube_binaries.helm, "dashboards.enabled=true",
                                "dashboards.annotations.grafana_folder=Platform"))
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "Platform"}
    assert dash["uid"] == "blueprintd" and dash["title"] == "blueprintd"
    assert [v["name"] for v in dash["templating"]["list"]] == ["datasource"]
    exprs = dashboard_exprs(dash)
    assert len(exprs) >= 10 and all(p.get("targets") for p in dash["panels"])
    # Grafana's $__rate_interval is not PromQL: promtool checks each query with a fixed range.
    records = [{"record": f"blueprintd:dashboard:query{i}", "expr": e.replace("$__rate_interval", "5m")}
               for i, e in enumerate(exprs)]
    (tmp_path / "dashboard-queries.yaml").write_text(yaml.safe_dump({"groups": [{"name": "q", "rules": records}]}))
    check = subprocess.run([promtool(), "check", "rules", "dashboard-queries.yaml"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    assert metric_names(exprs) >= {"blueprintd_member_cluster_ready", "blueprintd_rollout_phase",
                                   "blueprintd_drift_open", "blueprintd_reconciles_total",
                                   "blueprintd_reconcile_duration_seconds_bucket", "blueprintd_member_writes_total"}
