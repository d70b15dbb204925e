"""``blueprintd rollout status`` and ``blueprintd status`` number waves the way the rollout's message does."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from blueprintd.cli.fleetview import blueprint_table, rollout_table, wave_label


def _text(renderable: Any) -> str:
    console = Console(record=True, width=200)
    console.print(renderable)
    return console.export_text()


# A rollout paused in its first (canary) wave, as decide.py reports it.
PAUSED = {
    "targetVersion": "1.1.0",
    "phase": "Paused",
    "wave": 0,
    "waves": [["member-1"], ["member-2"], ["member-3"]],
    "assignments": {"member-1": "1.1.0", "member-2": "1.0.0", "member-3": "1.0.0"},
    "message": "paused at wave 1/3: member-1 failed add-on gpu-operator: CrashLoopBackOff",
}


def test_rollout_table_marks_the_wave_the_message_names() -> None:
    rows = [line.split("│")[1].strip() for line in _text(rollout_table(PAUSED)).splitlines() if "member-" in line]
    assert rows == ["1 <", "2", "3"], "waves are numbered from 1, like 'paused at wave 1/3'"


def test_wave_label_matches_the_message_numbering() -> None:
    assert wave_label(0, 3) == "1/3"
    assert wave_label(2, 3) == "3/3"
    assert wave_label(3, 3) == "3/3", "wave == len(waves) means every wave is done"
    assert wave_label(None, 0) == "-"


def test_fleet_status_shows_the_same_wave_as_the_message() -> None:
    bp = {
        "name": "gpu-platform",
        "version": "1.1.0",
        "valid": True,
        "validMessage": "",
        "phase": "Paused",
        "wave": 0,
        "waves": 3,
        "message": PAUSED["message"],
        "matchedClusters": 3,
        "readyClusters": 2,
    }
    line = next(line for line in _text(blueprint_table([bp])).splitlines() if "gpu-platform" in line)
    assert line.split("│")[4].strip() == "1/3"
