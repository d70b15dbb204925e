"""`blueprintd drift` / `blueprintd plan` pieces that need no cluster: the summary and the restore patch."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from typer.testing import CliRunner

from blueprintd.cli.drift import drift_summary, render_drift, restore_ops
from blueprintd.cli.main import app


def entry(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "blueprint": "bp", "addon": "a", "object": {"apiVersion": "v1", "kind": "ConfigMap", "namespace": "ns",
                                                    "name": "cfg"},
        "path": "data.level", "pointer": "/data/level", "expected": "info", "actual": "debug",
        "action": "notified", "manager": "kubectl-edit", "firstSeen": "2026-01-01T00:00:00Z",
    }
    base.update(kw)
    return base


def test_restore_ops() -> None:
    assert restore_ops(entry()) == [{"op": "replace", "path": "/data/level", "value": "info"}]
    assert restore_ops(entry(actual=None)) == [{"op": "add", "path": "/data/level", "value": "info"}]
    assert restore_ops(entry(expected=None)) == [{"op": "remove", "path": "/data/level"}]
    assert restore_ops(entry(path=".", pointer="")) == []


def test_summary_counts_open_drift_and_lists_unmonitored_clusters() -> None:
    reports = [{"metadata": {"name": "c1"}, "status": {
        "summary": {"open": 1, "notified": 1, "remediated": 1},
        "entries": [entry(), entry(path="data.x", pointer="/data/x", action="remediated",
                                   resolvedAt="2026-01-01T00:00:01Z")],
    }}]
    members = [{"metadata": {"name": "c1"}}, {"metadata": {"name": "c2"}}]
    data = drift_summary(reports, members)
    assert data["open"] == 1
    assert [(c["name"], c["monitored"]) for c in data["clusters"]] == [("c1", True), ("c2", False)]
    assert data["clusters"][0]["entries"][0]["patch"][0]["path"] == "/data/level"
    assert [c["name"] for c in drift_summary(reports, members, "c2")["clusters"]] == ["c2"]
    console = Console(record=True, width=200)
    render_drift(data, console, detail=False)
    text = console.export_text()
    assert "ConfigMap ns/cfg" in text and "data.level" in text and "kubectl-edit" in text
    assert "data.x" not in text  # resolved entries only with --cluster
    assert "not monitored yet" in text


def test_commands_are_registered_with_examples() -> None:
    runner = CliRunner()
    for command in (["drift"], ["plan"], ["drift", "restore"]):
        result = runner.invoke(app, [*command, "--help"])
        assert result.exit_code == 0 and f"blueprintd {' '.join(command)}" in result.stdout
    both = runner.invoke(app, ["drift", "--cluster", "x", "--all"])
    assert both.exit_code == 2
