"""run_preflight's use of the operator's memo: remembered verdicts need neither helm nor the cache."""

from __future__ import annotations

from pathlib import Path

from blueprintd.api.facts import ClusterFacts
from blueprintd.api.load import load_blueprints, load_model_file
from blueprintd.preflight import HelmPreflight, Problem, plan_checks, run_preflight
from blueprintd.preflight.run import Memo, render_states

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_remembered_verdicts_are_reported_without_reading_or_pulling_any_chart(tmp_path: Path) -> None:
    (bp,) = load_blueprints([REPO_ROOT / "blueprints" / "gpu-platform"])
    facts = load_model_file(REPO_ROOT / "examples" / "facts" / "mixed.yaml", ClusterFacts)
    states = render_states(bp, [(facts, {})], {})
    memo: Memo = {}
    for check, _rel in plan_checks(states):
        key = (check.repo, check.chart, check.version, check.release, check.namespace, check.values_hash)
        problems = [Problem(kind="unknown-key", path="x", message="remembered")] if check.addon == "kata" else []
        memo[key] = (problems, 7)
    # No helm binary and an empty cache: any pull, cache read or template would fail the run.
    helm = HelmPreflight(tmp_path / "no-helm", tmp_path / "empty-cache")
    report = run_preflight(states, helm, memo)
    assert report.checks and all(c.objects == 7 for c in report.checks)
    assert [c.addon for c in report.failed] == ["kata"]
    assert [str(p) for p in report.failed[0].problems] == ["unknown-key: x: remembered"]
    assert not (tmp_path / "empty-cache").exists()
