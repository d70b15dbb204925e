"""``blueprintd validate`` on a git checkout is the pre-merge CI check for a GitSource repository:
it must fail on the same file and line the operator would refuse the commit for."""

from __future__ import annotations

from pathlib import Path

import git
from gitsource_helpers import SourceRepo, blueprint_yaml
from typer.testing import CliRunner

from blueprintd.api.gitsource import GitRef
from blueprintd.cli.main import app
from blueprintd.gitsource import content
from blueprintd.gitsource.fetch import GitFetcher

runner = CliRunner()


def test_validate_a_checkout_like_ci_does(tmp_path: Path) -> None:
    repo = SourceRepo(tmp_path / "src")
    repo.write("blueprints/a.yaml", blueprint_yaml("alpha", "1.0.0", "ops"))
    repo.write("blueprints/b.yaml", blueprint_yaml("beta", "1.0", "ops"))  # YAML reads 1.0 as a number
    repo.write("README.md", "# platform blueprints\n")
    repo.commit("add beta")
    checkout = tmp_path / "ci"
    git.Repo.clone_from(repo.url, checkout).close()  # what a CI job starts from

    result = runner.invoke(app, ["validate", str(checkout / "blueprints")])
    assert result.exit_code == 1
    (line,) = result.stdout.strip().splitlines()
    assert line.startswith(f"{checkout}/blueprints/b.yaml:8: spec.version: ")
    assert "expected a string, got a number 1.0" in line
    assert "1 problem found" in result.stderr

    # The operator refuses the same commit for the same file, line and reason.
    fetcher = GitFetcher(tmp_path / "cache", allow_file_urls=True)
    fetched = fetcher.fetch(repo.url, GitRef(branch="main"))
    with fetcher.open(fetched) as snap:
        ev = content.evaluate(snap.entries("blueprints"), "blueprints", snap.read, snap.link_at)
    (issue,) = ev.issues
    assert (issue.source, issue.line, issue.field) == ("blueprints/b.yaml", 8, "spec.version")
    assert line.endswith(issue.message)

    # Once fixed, CI passes.
    (checkout / "blueprints" / "b.yaml").write_text(blueprint_yaml("beta", "1.0.0", "ops"))
    ok = runner.invoke(app, ["validate", str(checkout / "blueprints")])
    assert ok.exit_code == 0, ok.output
    assert "ok Blueprint beta@1.0.0" in ok.stderr
