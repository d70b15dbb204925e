"""``blueprintd operator`` refuses sharding flags that cannot work, before it starts anything."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from blueprintd.cli.main import app

runner = CliRunner()


def test_shards_and_peering_are_refused_together(tmp_path: Path) -> None:
    helm = tmp_path / "helm"  # never run: the settings are refused first
    result = runner.invoke(app, ["operator", "--helm", str(helm), "--shards", "--peering", "p"])
    assert result.exit_code == 2
    assert "--shards and --peering exclude each other" in result.output


def test_a_too_short_lease_is_refused(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["operator", "--helm", str(tmp_path / "helm"), "--shards", "--shard-lease-seconds", "1"]
    )
    assert result.exit_code == 2
    assert "--shard-lease-seconds 1: must be at least 3" in result.output
