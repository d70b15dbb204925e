"""A commit with a parameter value its declaration refuses is never applied (issue 18, item 6).

The reported incident: a commit set the default blueprint's ``timeSlicingReplicas`` to
``"many"``; the sync said Applied and every member got ``replicas: many``. The pure part
evaluates commit trees as the sync does; the fleet part syncs real bare repositories into a
real management API server and checks that nothing was written and the status says why.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from gitsource_helpers import ALLOW_FILE, SourceRepo

from blueprintd.cluster.management import ManagementStore
from blueprintd.gitsource.content import MODE_FILE, Limits, TreeEntry, evaluate
from blueprintd.gitsource.sync import sync_gitsource

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TEXT = (REPO_ROOT / "blueprints" / "gpu-platform" / "blueprint.yaml").read_text()
GROUP, VERSION = "blueprintd.io", "v1alpha1"


def default_with(version: str, replicas: Any = None, *, plain: bool = False) -> str:
    """The default blueprint at ``version``, its replicas default changed (or in the untyped form)."""
    text = DEFAULT_TEXT.replace("  version: 1.0.0\n", f"  version: {version}\n")
    if plain:
        doc = yaml.safe_load(text)
        doc["spec"]["parameters"] = {"timeSlicingReplicas": replicas}
        return yaml.safe_dump(doc, sort_keys=False)
    if replicas is not None:
        text = text.replace("      default: 4\n", f"      default: {yaml.safe_dump(replicas).splitlines()[0]}\n")
    return text


def line_of(text: str, needle: str) -> int:
    return text.splitlines().index(needle) + 1


def evaluate_files(files: dict[str, str]) -> Any:
    blobs = {p: t.encode() for p, t in files.items()}
    entries = [TreeEntry(p, MODE_FILE, len(b), p) for p, b in blobs.items()]
    return evaluate(entries, "bp", lambda e: blobs[e.path], lambda _p: None, Limits(), "ns")


# --- pure: what the sync decides from a commit's files ------------------------------------


def test_commit_with_a_bad_typed_default_is_refused_naming_file_line_and_range() -> None:
    text = default_with("1.5.0", "many")
    result = evaluate_files({"bp/gpu-platform.yaml": text})
    assert result.blueprints == []
    (issue,) = result.issues
    assert (issue.source, issue.line) == ("bp/gpu-platform.yaml", line_of(text, '      default: many'))
    assert issue.field == "spec.parameters.timeSlicingReplicas.default"
    assert issue.message == "parameter 'timeSlicingReplicas': default \"many\" is not an integer"
    assert issue.allowed == "an integer from 1 to 64"


def test_commit_with_the_untyped_form_is_refused_with_the_declaration_to_write() -> None:
    result = evaluate_files({"bp/gpu-platform.yaml": default_with("1.5.0", "many", plain=True)})
    assert result.blueprints == []
    (issue,) = result.issues
    assert issue.field == "spec.parameters.timeSlicingReplicas"
    assert 'declare it as {type: string, default: "many"}' in issue.message


def test_commit_with_a_valid_default_is_accepted() -> None:
    result = evaluate_files({"bp/gpu-platform.yaml": default_with("1.5.0", 8)})
    assert result.issues == []
    (bp,) = result.blueprints
    assert bp.blueprint.spec.parameters["timeSlicingReplicas"].default == 8


# --- real repositories, real API server -------------------------------------------------


def sync(store: ManagementStore, name: str, cache: Path) -> dict[str, Any]:
    source = asyncio.run(store.get("GitSource", name))
    assert source is not None
    asyncio.run(sync_gitsource(store, source, cache, datetime.now(UTC), ALLOW_FILE))
    updated = asyncio.run(store.get("GitSource", name))
    assert updated is not None
    return dict(updated.get("status") or {})


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in status.get("conditions", []) if c["type"] == kind)


@pytest.mark.fleet
def test_sync_refuses_the_commit_and_keeps_the_applied_one(store: ManagementStore, tmp_path: Path) -> None:
    repo = SourceRepo(tmp_path / "src")
    repo.write("bp/gpu-platform.yaml", default_with("1.0.0"))
    good = repo.commit("gpu-platform 1.0.0")
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "GitSource",
        "metadata": {"name": "platform"},
        "spec": {"url": repo.url, "ref": {"branch": "main"}, "path": "bp", "interval": "1h"},
    }
    asyncio.run(store.create("GitSource", body))
    status = sync(store, "platform", tmp_path / "cache")
    assert status["lastAppliedCommit"] == good
    before = asyncio.run(store.get("Blueprint", "gpu-platform"))
    assert before is not None and before["spec"]["version"] == "1.0.0"

    # the incident's commit, in the typed form: refused, nothing written
    bad_text = default_with("1.5.0", "many")
    repo.write("bp/gpu-platform.yaml", bad_text)
    bad = repo.commit("gpu-platform 1.5.0: many replicas")
    status = sync(store, "platform", tmp_path / "cache")
    after = asyncio.run(store.get("Blueprint", "gpu-platform"))
    assert after is not None and after["spec"] == before["spec"]
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert status["lastAppliedCommit"] == good and status["lastFetchedCommit"] == bad
    err = status["lastError"]
    assert (err["file"], err["line"]) == ("bp/gpu-platform.yaml", line_of(bad_text, "      default: many"))
    assert "spec.parameters.timeSlicingReplicas.default" in err["message"]
    assert '"many" is not an integer' in err["message"] and "an integer from 1 to 64" in err["message"]
    ready = condition(status, "Ready")
    assert ready["status"] == "False" and ready["reason"] == "ValidationFailed"
    assert f"commit {good[:12]} stays applied" in ready["message"]

    # and in the untyped form the report named: refused too, with what to write instead
    repo.write("bp/gpu-platform.yaml", default_with("1.5.0", "many", plain=True))
    repo.commit("gpu-platform 1.5.0: untyped")
    status = sync(store, "platform", tmp_path / "cache")
    assert status["lastAppliedCommit"] == good
    assert "has a plain value without a declared type" in status["lastError"]["message"]
    assert asyncio.run(store.get("Blueprint", "gpu-platform"))["spec"]["version"] == "1.0.0"  # type: ignore[index]

    # a valid value goes through
    repo.write("bp/gpu-platform.yaml", default_with("1.5.0", 8))
    fixed = repo.commit("gpu-platform 1.5.0: 8 replicas")
    status = sync(store, "platform", tmp_path / "cache")
    assert status["lastAppliedCommit"] == fixed and "lastError" not in status
    applied = asyncio.run(store.get("Blueprint", "gpu-platform"))
    assert applied is not None and applied["spec"]["parameters"]["timeSlicingReplicas"]["default"] == 8
