"""``blueprintd diff`` input errors: exit 2 with a message naming the problem, before any cluster is contacted."""

from __future__ import annotations

from pathlib import Path

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
