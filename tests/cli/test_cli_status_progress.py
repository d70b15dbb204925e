"""`blueprintd status` names the add-on step in progress, since when and what it waits for (issue 13 item 5)."""

from __future__ import annotations

from typing import Any

import pytest

from blueprintd.cli.fleetview import fleet_summary, progress_text, render_status
from blueprintd.cli.output import stdout_console

HOOK = {"kind": "Job", "name": "gatekeeper-system/gatekeeper-update-crds-hook",
        "reason": "pre-install hook Job running"}
CURRENT = {"addon": "gatekeeper", "step": "install", "version": "1.1.0", "since": "2026-03-01T12:00:05Z",
           "waitingFor": [HOOK]}


def member(current: dict[str, Any] | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"blueprint": "gpu-platform", "version": "1.1.0", "state": "Progressing"}
    if current is not None:
        entry["current"] = current
    return {"metadata": {"name": "alpha"}, "status": {"reachable": True, "blueprints": [entry]}}


def test_json_carries_the_step_in_progress() -> None:
    data = fleet_summary([], [member(CURRENT)])
    assert data["clusters"][0]["blueprints"][0]["current"] == CURRENT
    assert fleet_summary([], [member(None)])["clusters"][0]["blueprints"][0]["current"] is None


def test_the_table_names_addon_since_and_what_it_waits_for(capsys: pytest.CaptureFixture[str]) -> None:
    render_status(fleet_summary([], [member(CURRENT)]), stdout_console())
    out = " ".join(capsys.readouterr().out.split())
    assert ("installing gatekeeper since 2026-03-01T12:00:05Z, waiting for Job "
            "gatekeeper-system/gatekeeper-update-crds-hook: pre-install hook Job running") in out


def test_progress_text() -> None:
    assert progress_text(None) == ""
    waits = [{"kind": "Deployment", "name": f"ns/d{i}", "reason": "0/1 available"} for i in range(5)]
    text = progress_text({"addon": "kai", "step": "wait", "since": "t", "waitingFor": waits})
    assert text == (" (kai becoming ready since t, waiting for Deployment ns/d0: 0/1 available; "
                    "Deployment ns/d1: 0/1 available; Deployment ns/d2: 0/1 available; 2 more)")
    assert progress_text({"addon": "kai", "step": "upgrade"}) == " (upgrading kai)"
