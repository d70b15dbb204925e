"""``sync_gitsource`` against a real management API server and real git repositories.

No operator here: each test calls the sync directly, so every guarantee (atomic commits,
ownership, prune policy, no write when nothing changed, status with file and line) is
checked deterministically. The operator wiring is covered by ``test_gitsource_operator.py``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from gitsource_helpers import ALLOW_FILE, SourceRepo, blueprint_yaml
from kubernetes import client

from blueprintd.cluster.management import ManagementStore
from blueprintd.devfleet.fleet import Fleet
from blueprintd.devfleet.testing import unique_name
from blueprintd.gitsource.sync import ANN_COMMIT, ANN_PATH, ANN_REPO, FIELD_MANAGER, SOURCE_LABEL, sync_gitsource

pytestmark = pytest.mark.fleet

GROUP, VERSION = "blueprintd.io", "v1alpha1"


class Harness:
    """A GitSource object + its repository + a cache folder, synced on demand."""

    def __init__(self, store: ManagementStore, repo: SourceRepo, cache: Path, name: str, **spec: Any) -> None:
        self.store, self.repo, self.cache, self.name = store, repo, cache, name
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "GitSource",
            "metadata": {"name": name},
            "spec": {"url": repo.url, "ref": {"branch": "main"}, "path": "bp", "interval": "1h", **spec},
        }
        asyncio.run(store.create("GitSource", body))

    def get(self) -> dict[str, Any]:
        obj = asyncio.run(self.store.get("GitSource", self.name))
        assert obj is not None
        return obj

    def sync(self) -> dict[str, Any]:
        asyncio.run(sync_gitsource(self.store, self.get(), self.cache, datetime.now(UTC), ALLOW_FILE))
        return dict(self.get().get("status") or {})

    def patch_spec(self, spec: dict[str, Any]) -> None:
        asyncio.run(self.store.patch_spec("GitSource", self.name, {"spec": spec}))


def blueprints(store: ManagementStore) -> dict[str, dict[str, Any]]:
    return {b["metadata"]["name"]: b for b in asyncio.run(store.list("Blueprint"))}


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == type_)


def writes_in(fleet: Fleet, namespace: str, mark: int) -> list[str]:
    return [f"{e.verb} {e.resource}/{e.name}" for e in fleet.management.audit.writes(mark) if e.namespace == namespace]


def test_applies_with_provenance_and_writes_nothing_when_nothing_changed(
    fleet: Fleet, store: ManagementStore, tmp_path: Path
) -> None:
    repo = SourceRepo(tmp_path / "src")
    repo.write("bp/a.yaml", blueprint_yaml("alpha", "1.0.0", "ops"))
    repo.write("bp/team/b.yaml", blueprint_yaml("beta", "1.0.0", "ops"))
    c1 = repo.commit("v1")
    h = Harness(store, repo, tmp_path / "cache", "platform")
    status = h.sync()

    assert status["lastAppliedCommit"] == c1 == status["lastFetchedCommit"]
    assert status["blueprints"] == ["alpha", "beta"]
    assert "lastError" not in status and status["errors"] == []
    assert condition(status, "Ready")["status"] == "True"
    assert condition(status, "Fetched")["status"] == "True"
    bps = blueprints(store)
    meta = bps["beta"]["metadata"]
    assert meta["labels"] == {"team": "platform", SOURCE_LABEL: "platform"}
    assert meta["annotations"][ANN_REPO] == repo.url
    assert meta["annotations"][ANN_COMMIT] == c1
    assert meta["annotations"][ANN_PATH] == "bp/team/b.yaml"
    assert any(m["manager"] == FIELD_MANAGER and m["operation"] == "Apply" for m in meta["managedFields"])
    assert bps["beta"]["spec"]["addons"][0]["manifests"][0]["data"] == {"version": "1.0.0"}
    assert "drift" not in bps["beta"]["spec"]  # stored as written: defaults are not filled in

    # Nothing changed in git: a sync makes no write call at all (the API server's audit log).
    mark = fleet.management.audit.mark()
    h.sync()
    h.sync()
    assert writes_in(fleet, store.namespace, mark) == []

    # A commit touching only beta writes only beta; alpha keeps the commit that last changed it.
    repo.write("bp/team/b.yaml", blueprint_yaml("beta", "1.1.0", "ops"))
    c2 = repo.commit("beta 1.1.0")
    mark = fleet.management.audit.mark()
    status = h.sync()
    assert status["lastAppliedCommit"] == c2
    assert writes_in(fleet, store.namespace, mark) == [
        "patch blueprints/beta",
        "patch gitsources/platform",
        "create events/" + writes_in(fleet, store.namespace, mark)[2].split("/", 1)[1],
    ]
    bps = blueprints(store)
    assert bps["beta"]["spec"]["version"] == "1.1.0" and bps["beta"]["metadata"]["annotations"][ANN_COMMIT] == c2
    assert bps["alpha"]["metadata"]["annotations"][ANN_COMMIT] == c1

    # A label removed from the file is removed from the object (the field manager owned it).
    repo.write("bp/a.yaml", blueprint_yaml("alpha", "1.0.0", "ops").replace("  labels:\n    team: platform\n", ""))
    repo.commit("drop label")
    h.sync()
    assert blueprints(store)["alpha"]["metadata"]["labels"] == {SOURCE_LABEL: "platform"}


def test_invalid_commit_changes_nothing_and_names_file_and_line(store: ManagementStore, tmp_path: Path) -> None:
    repo = SourceRepo(tmp_path / "src")
    repo.write("bp/a.yaml", blueprint_yaml("alpha", "1.0.0", "ops"))
    repo.write("bp/b.yaml", blueprint_yaml("beta", "1.0.0", "ops"))
    c1 = repo.commit("v1")
    h = Harness(store, repo, tmp_path / "cache", "platform")
    h.sync()
    before = blueprints(store)

    # alpha's change is valid, beta's is not: neither is applied.
    repo.write("bp/a.yaml", blueprint_yaml("alpha", "2.0.0", "ops"))
    repo.write(
        "bp/b.yaml", blueprint_yaml("beta", "2.0.0", "ops").replace("    - name: config\n", "    - name: Config\n")
    )
    c2 = repo.commit("broken")
    status = h.sync()
    assert blueprints(store) == before
    assert status["lastAppliedCommit"] == c1 and status["lastFetchedCommit"] == c2
    assert status["lastError"]["file"] == "bp/b.yaml" and status["lastError"]["line"] == 11
    assert "spec.addons[0].name" in status["lastError"]["message"]
    ready = condition(status, "Ready")
    assert ready["status"] == "False" and ready["reason"] == "ValidationFailed"
    assert "bp/b.yaml:11" in ready["message"] and f"commit {c1[:12]} stays applied" in ready["message"]
    assert condition(status, "Fetched")["status"] == "True"

    # the fix is applied and the error cleared
    repo.write("bp/b.yaml", blueprint_yaml("beta", "2.0.0", "ops"))
    c3 = repo.commit("fixed")
    status = h.sync()
    assert status["lastAppliedCommit"] == c3 and "lastError" not in status and status["errors"] == []
    assert {n: b["spec"]["version"] for n, b in blueprints(store).items()} == {"alpha": "2.0.0", "beta": "2.0.0"}


def test_names_owned_elsewhere_are_not_taken_over(store: ManagementStore, tmp_path: Path) -> None:
    manual = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Blueprint",
        "metadata": {"name": "handmade"},
        "spec": {"version": "1.0.0"},
    }
    asyncio.run(store.create("Blueprint", manual))
    repo = SourceRepo(tmp_path / "src")
    repo.write("bp/a.yaml", blueprint_yaml("alpha", "1.0.0", "ops"))
    repo.write("bp/h.yaml", blueprint_yaml("handmade", "2.0.0", "ops"))
    repo.commit("v1")
    first = Harness(store, repo, tmp_path / "cache", "first")
    status = first.sync()
    assert "alpha" not in blueprints(store)  # atomic: the conflict refuses the whole commit
    assert blueprints(store)["handmade"]["spec"] == {"version": "1.0.0"}
    assert condition(status, "Ready")["reason"] == "Conflict"
    err = status["lastError"]
    assert err["file"] == "bp/h.yaml" and err["line"] == 1
    assert "'handmade'" in err["message"] and "not created by a GitSource" in err["message"]
    assert "GitSource 'first'" in err["message"]

    # handing it over explicitly works
    asyncio.run(store.patch_spec("Blueprint", "handmade", {"metadata": {"labels": {SOURCE_LABEL: "first"}}}))
    assert first.sync()["blueprints"] == ["alpha", "handmade"]

    # a second source claiming alpha is refused, naming both sources
    other_repo = SourceRepo(tmp_path / "other")
    other_repo.write("bp/a.yaml", blueprint_yaml("alpha", "9.0.0", "ops"))
    other_repo.commit("mine")
    second = Harness(store, other_repo, tmp_path / "cache", "second")
    err = second.sync()["lastError"]
    assert "managed by GitSource 'first', not by GitSource 'second'" in err["message"]
    assert blueprints(store)["alpha"]["spec"]["version"] == "1.0.0"


def test_prune_policy(store: ManagementStore, tmp_path: Path) -> None:
    repo = SourceRepo(tmp_path / "src")
    repo.write("bp/a.yaml", blueprint_yaml("alpha", "1.0.0", "ops"))
    repo.write("bp/b.yaml", blueprint_yaml("beta", "1.0.0", "ops"))
    repo.commit("v1")
    h = Harness(store, repo, tmp_path / "cache", "platform")
    h.sync()
    revision = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "BlueprintRevision",
        "metadata": {"name": "beta-v1.0.0"},
        "spec": {"blueprint": "beta", "version": "1.0.0", "contentHash": "sha256:x", "spec": {"version": "1.0.0"}},
    }
    asyncio.run(store.create("BlueprintRevision", revision))

    repo.remove("bp/b.yaml")
    repo.commit("drop beta")
    status = h.sync()
    assert set(blueprints(store)) == {"alpha", "beta"}  # keep (the default)
    assert status["blueprints"] == ["alpha"] and status["orphanedBlueprints"] == ["beta"]
    assert "kept (no longer in git): beta" in condition(status, "Ready")["message"]

    h.patch_spec({"prunePolicy": "delete"})
    status = h.sync()
    assert set(blueprints(store)) == {"alpha"}
    assert status["orphanedBlueprints"] == []
    assert status["observedGeneration"] == h.get()["metadata"]["generation"]
    assert asyncio.run(store.get("BlueprintRevision", "beta-v1.0.0")) is not None  # history stays


def test_version_rules_are_checked_before_applying(store: ManagementStore, tmp_path: Path) -> None:
    repo = SourceRepo(tmp_path / "src")
    repo.write("bp/a.yaml", blueprint_yaml("alpha", "1.0.0", "ops"))
    repo.commit("v1")
    h = Harness(store, repo, tmp_path / "cache", "platform")
    h.sync()

    # content changed, version not bumped (the API server would refuse it half-way)
    repo.write("bp/a.yaml", blueprint_yaml("alpha", "1.0.0", "ops", value="changed"))
    repo.write("bp/b.yaml", blueprint_yaml("beta", "1.0.0", "ops"))
    repo.commit("forgot to bump")
    err = h.sync()["lastError"]
    assert err["file"] == "bp/a.yaml" and "bump spec.version" in err["message"]
    assert "beta" not in blueprints(store)

    # a version that was published before with other content (a revision exists)
    revision = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "BlueprintRevision",
        "metadata": {"name": "beta-v1.0.0"},
        "spec": {"blueprint": "beta", "version": "1.0.0", "contentHash": "sha256:other", "spec": {"version": "1.0.0"}},
    }
    asyncio.run(store.create("BlueprintRevision", revision))
    repo.write("bp/a.yaml", blueprint_yaml("alpha", "1.0.0", "ops"))
    repo.commit("restore alpha")
    err = h.sync()["lastError"]
    assert err["file"] == "bp/b.yaml" and "already published with different content (beta-v1.0.0)" in err["message"]


def test_fetch_failure_keeps_the_last_commit_and_never_shows_the_token(
    fleet: Fleet, store: ManagementStore, tmp_path: Path
) -> None:
    repo = SourceRepo(tmp_path / "src")
    repo.write("bp/a.yaml", blueprint_yaml("alpha", "1.0.0", "ops"))
    c1 = repo.commit("v1")
    h = Harness(store, repo, tmp_path / "cache", "platform")
    h.sync()
    token = "ghp_TopSecretTokenForGitSourceTest"
    secret = {
        "metadata": {"name": "git-creds"},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in {"username": "bot", "password": token}.items()},
    }
    client.CoreV1Api(store.api_client).create_namespaced_secret(store.namespace, secret)
    h.patch_spec({"url": "https://127.0.0.1:1/org/repo.git", "secretRef": {"name": "git-creds"}})
    status = h.sync()
    assert status["lastAppliedCommit"] == c1
    assert condition(status, "Fetched")["reason"] == "FetchFailed"
    assert "127.0.0.1:1" in status["lastError"]["message"]
    events = client.CoreV1Api(store.api_client).list_namespaced_event(store.namespace).items
    everything = json.dumps(h.get()) + " ".join(e.message or "" for e in events)
    assert token not in everything
    assert any(e.reason == "FetchFailed" for e in events)

    # a Secret of another namespace is refused
    h.patch_spec({"secretRef": {"name": "git-creds", "namespace": "kube-system"}})
    assert "only use Secrets of its own namespace" in h.sync()["lastError"]["message"]


def test_git_status_cli(fleet: Fleet, store: ManagementStore, tmp_path: Path) -> None:
    repo = SourceRepo(tmp_path / "src")
    repo.write("bp/a.yaml", blueprint_yaml("alpha", "1.0.0", "ops"))
    c1 = repo.commit("v1")
    h = Harness(store, repo, tmp_path / "cache", "platform")
    h.sync()
    repo.write("bp/a.yaml", "apiVersion: blueprintd.io/v1alpha1\nkind: Blueprint\nmetadata: {name: alpha}\nspec: [\n")
    c2 = repo.commit("broken")
    h.sync()

    base = [sys.executable, "-m", "blueprintd", "git", "status", "--kubeconfig", str(fleet.management.kubeconfig)]
    out = subprocess.run([*base, "-n", store.namespace, "-o", "json"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1, out.stderr  # not ready: the head commit is refused
    (row,) = json.loads(out.stdout)["sources"]
    assert (row["name"], row["url"], row["ref"]) == ("platform", repo.url, "branch main")
    assert (row["lastAppliedCommit"], row["lastFetchedCommit"]) == (c1, c2)
    assert row["lastError"]["file"] == "bp/a.yaml" and row["lastError"]["line"] == 5
    wide = {**os.environ, "COLUMNS": "300"}
    table = subprocess.run([*base, "-n", store.namespace], capture_output=True, text=True, timeout=60, env=wide)
    assert "platform" in table.stdout and c1[:12] in table.stdout and "bp/a.yaml:5:" in table.stdout


def test_the_api_server_refuses_tokens_in_urls_and_escaping_paths(store: ManagementStore) -> None:
    custom = client.CustomObjectsApi(store.api_client)

    def create(**spec: Any) -> str:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "GitSource",
            "metadata": {"name": unique_name("src")},
            "spec": {"url": "https://github.com/org/repo.git", "ref": {"branch": "main"}, **spec},
        }
        try:
            custom.create_namespaced_custom_object(GROUP, VERSION, store.namespace, "gitsources", body)
        except client.ApiException as exc:
            return str(json.loads(exc.body)["message"])
        return ""

    assert create() == ""
    assert create(url="ssh://git@github.com/org/repo.git", path="blueprints/*.yaml") == ""
    assert "do not put credentials in the URL" in create(url="https://bot:ghp_x@github.com/org/repo.git")
    assert "must not contain '..'" in create(path="blueprints/../../etc")
    assert "must not contain '..'" in create(path="/etc")
