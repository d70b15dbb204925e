"""``blueprintd diff`` input errors: exit 2 with a message naming the problem, before any cluster is contacted."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from blueprintd.cli.main import app

runner = CliRunner()
BLUEPRINT = str(Path(__file__).resolve().parents[2] / "blueprints" / "gpu-platform")
NOWHERE = ["--kubeconfig", "/nonexistent/kubeconfig", "--helm", "/bin/true"]


def test_help_documents_exit_codes_and_examples() -> None:
    result = runner.invoke(app, ["diff", "--help"])
    assert result.exit_code == 0
    assert "0 nothing changes, 1 something changes, 2 error" in " ".join(result.stdout.split())
    assert "blueprintd diff blueprints/" in result.stdout


def test_path_or_version_exactly_one() -> None:
    neither = runner.invoke(app, ["diff", *NOWHERE])
    assert neither.exit_code == 2 and "give either a PATH" in neither.stderr
    both = runner.invoke(app, ["diff", BLUEPRINT, "--version", "1.0.0", *NOWHERE])
    assert both.exit_code == 2


def test_invalid_blueprint_file_is_reported_with_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bp.yaml"
    bad.write_text("apiVersion: blueprintd.io/v1alpha1\nkind: Blueprint\nmetadata: {name: x}\nspec:\n  version: 1.0\n")
    result = runner.invoke(app, ["diff", str(bad), *NOWHERE])
    assert result.exit_code == 2
    assert f"{bad}:5: spec.version" in result.stderr and "Traceback" not in result.output


def test_bad_selector_and_unreachable_management_cluster_exit_2() -> None:
    sel = runner.invoke(app, ["diff", BLUEPRINT, "--selector", "env=~prod", *NOWHERE])
    assert sel.exit_code == 2 and "cannot read 'env=~prod'" in sel.stderr
    mgmt = runner.invoke(app, ["diff", BLUEPRINT, *NOWHERE])
    assert mgmt.exit_code == 2 and "error:" in mgmt.stderr and "Traceback" not in mgmt.output


def test_table_at_100_clusters_is_a_handful_of_lines(capsys: pytest.CaptureFixture[str]) -> None:
    from blueprintd.cli.diff import render_preview
    from blueprintd.cli.output import stdout_console
    from blueprintd.preview.compare import AddonChange, MemberChanges
    from blueprintd.preview.group import MemberPreview, group

    upgrade = MemberChanges(addons=[AddonChange(addon="gpu-operator", change="upgraded", chart="gpu-operator",
                                                chart_from="v25.10.0", chart_to="v25.10.1")])
    members = [MemberPreview(cluster=f"l4-inference-{i:03d}", blueprint="gpu-platform", selected_before=True,
                             selected_after=True, version_from="1.0.0", version_to="1.1.0",
                             why=f"rollout wave {1 + i // 50} of 2", changes=upgrade) for i in range(100)]
    members.append(MemberPreview(cluster="h100-80gb-mig-pinned", blueprint="gpu-platform", selected_before=True,
                                 selected_after=True, version_from="1.0.0", version_to="1.0.0",
                                 why="pinned on the MemberCluster"))
    render_preview(group(members), stdout_console())
    out = capsys.readouterr().out
    assert "100 clusters: l4-inference-000, " in out and "gpu-operator v25.10.0 → v25.10.1" in out
    assert "50 clusters: l4-inference-050, " in out and "rollout wave 2 of 2" in out
    assert "unchanged: 1 cluster: h100-80gb-mig-pinned" in out
    assert "…" not in out
    assert len(out.splitlines()) < 30
