"""The chart cache of the pre-flight's helm adapter: where an entry may live."""

from __future__ import annotations

from pathlib import Path

import pytest

from blueprintd.preflight import ChartUnavailable, HelmPreflight


@pytest.mark.parametrize(
    ("chart", "version"),
    [("../../escape", "1.0.0"), ("..", "1.0.0"), ("ok", "../1.0.0"), ("a//b", "1.0.0")],
)
def test_a_chart_name_that_would_leave_the_cache_is_unavailable_and_creates_nothing(
    tmp_path: Path, chart: str, version: str
) -> None:
    helm = HelmPreflight(tmp_path / "no-helm", tmp_path / "cache")
    with pytest.raises(ChartUnavailable, match="not a chart name and version helm can pull"):
        helm.chart("http://127.0.0.1:1/charts", chart, version)
    assert list(tmp_path.iterdir()) == []


def test_entries_are_keyed_by_repository_chart_and_version(tmp_path: Path) -> None:
    helm = HelmPreflight(tmp_path / "no-helm", tmp_path / "cache")
    a = helm.entry_dir("http://127.0.0.1:1/charts/", "kata-deploy", "3.24.0")
    assert a == helm.entry_dir("http://127.0.0.1:1/charts", "kata-deploy", "3.24.0")
    assert a.relative_to(tmp_path / "cache").parts[1:] == ("kata-deploy", "3.24.0")
    assert a.parent.parent != helm.entry_dir("http://127.0.0.1:2/charts", "kata-deploy", "3.24.0").parent.parent
