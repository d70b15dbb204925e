"""Fleet files: a member's control-plane shape."""

from __future__ import annotations

from pathlib import Path

import pytest

from blueprintd.devfleet.nodes import load_fleet_file, uniform_fleet
from blueprintd.errors import DevFleetError


def test_control_plane_defaults_to_full_and_is_per_member(tmp_path: Path) -> None:
    f = tmp_path / "fleet.yaml"
    f.write_text(
        "members:\n"
        "- name: big\n  nodes: [{profile: h100}]\n"
        "- name: bench\n  controlPlane: api-only\n"
    )
    fleet = load_fleet_file(f)
    assert [m.control_plane for m in fleet.members] == ["full", "api-only"]
    assert {m.control_plane for m in uniform_fleet(2, ["l4"], control_plane="api-only").members} == {"api-only"}


def test_unknown_control_plane_names_the_field_and_the_choices(tmp_path: Path) -> None:
    f = tmp_path / "fleet.yaml"
    f.write_text("members:\n- name: a\n  controlPlane: kubelet\n")
    with pytest.raises(DevFleetError) as exc:
        load_fleet_file(f)
    assert "members.0.controlPlane" in str(exc.value) and "'full' or 'api-only'" in str(exc.value)
