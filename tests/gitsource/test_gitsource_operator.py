"""GitOps end to end: commit → the real operator process → the member cluster follows git.

One operator (``blueprintd operator -n <unique namespace> --webhook-port …``) runs against the
session fleet's management cluster with one member (``fleet.members[1]``, the L4 cluster). The
blueprint is a manifests-only add-on (a ConfigMap carrying the version), so each step takes
seconds: v1.0.0, v1.1.0, a broken commit that changes nothing, a ``git revert`` back to the
1.0.0 content that reuses the existing revision, and push webhooks.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from gitsource_helpers import SourceRepo, blueprint_yaml, delete_all, install_crds
from kubernetes import client

from blueprintd.devfleet.binaries import Binaries
from blueprintd.devfleet.demo import OPERATOR_USER
from blueprintd.devfleet.fleet import Fleet
from blueprintd.devfleet.testing import unique_name
from blueprintd.gitsource.webhook import SIGNATURE_HEADER, sign

pytestmark = pytest.mark.fleet

GROUP, VERSION = "blueprintd.io", "v1alpha1"
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Env:
    fleet: Fleet
    bins: Binaries
    ns: str  # management namespace the operator watches
    member_ns: str  # namespace of the add-on in the member cluster
    member: str
    webhook_port: int
    log: Path
    proc: subprocess.Popen[bytes]
    custom: client.CustomObjectsApi
    member_core: client.CoreV1Api

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    def wait(self, predicate: Callable[[], T | None], timeout: float, what: str) -> T:
        deadline = time.monotonic() + timeout
        last: T | None = None
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"the operator stopped:\n{self.log_tail()}"
            try:
                last = predicate()
            except client.ApiException as exc:
                if exc.status != 404:
                    raise
                last = None
            if last:
                return last
            time.sleep(0.5)
        raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})\n{self.log_tail()}")

    def get(self, plural: str, name: str) -> dict[str, Any]:
        obj: dict[str, Any] = self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, plural, name)
        return obj

    def apply(self, *docs: dict[str, Any]) -> None:
        done = subprocess.run(
            [
                str(self.bins.kubectl),
                "--kubeconfig",
                str(self.fleet.management.kubeconfig),
                "apply",
                "-n",
                self.ns,
                "--server-side",
                "-f",
                "-",
            ],
            input=yaml.safe_dump_all(docs),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr

    def configmap_version(self) -> str | None:
        cm = self.member_core.read_namespaced_config_map("gitops-version", self.member_ns)
        return str((cm.data or {}).get("version"))

    def source_status(self, name: str) -> dict[str, Any]:
        return dict(self.get("gitsources", name).get("status") or {})


def register_member(fleet: Fleet, bins: Binaries, ns: str, index: int) -> str:
    """``demo.register_members`` for one member into ``ns``: a kubeconfig Secret and a MemberCluster."""
    m = fleet.members[index]
    kc = fleet.mint_kubeconfig(m.name, OPERATOR_USER, ["system:masters"]).read_text()
    docs: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {"name": f"{m.name}-kubeconfig", "namespace": ns},
            "data": {"kubeconfig": base64.b64encode(kc.encode()).decode()},
        },
        {
            "apiVersion": "blueprintd.io/v1alpha1",
            "kind": "MemberCluster",
            "metadata": {"name": m.name, "namespace": ns, "labels": {**m.labels, "gitops-test": ns}},
            "spec": {"kubeconfigSecretRef": {"name": f"{m.name}-kubeconfig", "key": "kubeconfig"}},
        },
    ]
    done = subprocess.run(
        [str(bins.kubectl), "--kubeconfig", str(fleet.management.kubeconfig), "apply", "--server-side", "-f", "-"],
        input=yaml.safe_dump_all(docs),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return m.name


@pytest.fixture(scope="module")
def env(fleet: Fleet, kube_binaries: Binaries, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    install_crds(fleet, kube_binaries)
    mgmt_client = fleet.management.api_client()
    member_client = fleet.members[1].api_client()
    ns = unique_name("gitops")
    client.CoreV1Api(mgmt_client).create_namespace({"metadata": {"name": ns}})
    member = register_member(fleet, kube_binaries, ns, 1)
    port = free_port()
    log = tmp_path_factory.mktemp("gitops-operator") / "operator.log"
    args = [
        sys.executable,
        "-m",
        "blueprintd",
        "operator",
        "--kubeconfig",
        str(fleet.management.kubeconfig),
        "-n",
        ns,
        "--helm",
        str(kube_binaries.helm),
        "--metrics-port",
        "0",
        "--member-resync",
        "2",
        "--webhook-port",
        str(port),
    ]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, "BLUEPRINTD_GIT_ALLOW_FILE_URLS": "1"},
        )
    e = Env(
        fleet,
        kube_binaries,
        ns,
        unique_name("gitops-cm"),
        member,
        port,
        log,
        proc,
        client.CustomObjectsApi(mgmt_client),
        client.CoreV1Api(member_client),
    )
    try:
        yield e
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        delete_all(mgmt_client, ns)
        with contextlib.suppress(client.ApiException):
            e.member_core.delete_namespace(e.member_ns)
        mgmt_client.close()
        member_client.close()


def git_source(name: str, url: str, interval: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "GitSource",
        "metadata": {"name": name},
        "spec": {"url": url, "ref": {"branch": "main"}, "path": "blueprints", "interval": interval, **spec},
    }


def fleet_status(e: Env) -> tuple[int, dict[str, Any]]:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "blueprintd",
            "status",
            "--kubeconfig",
            str(e.fleet.management.kubeconfig),
            "-n",
            e.ns,
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return out.returncode, json.loads(out.stdout)


def revisions(e: Env, blueprint: str) -> dict[str, dict[str, Any]]:
    items = e.custom.list_namespaced_custom_object(
        GROUP, VERSION, e.ns, "blueprintrevisions", label_selector=f"blueprintd.io/blueprint={blueprint}"
    )["items"]
    return {r["metadata"]["name"]: r for r in items}


def test_the_fleet_follows_git(env: Env, tmp_path: Path) -> None:
    e = env
    repo = SourceRepo(tmp_path / "platform")
    bp = "gpu-config"
    path = "blueprints/gpu-config.yaml"
    repo.write(path, blueprint_yaml(bp, "1.0.0", e.member_ns))
    repo.write("README.md", "Blueprints for the GPU fleet\n")
    c1 = repo.commit("gpu-config 1.0.0")
    e.apply(git_source("platform", repo.url, "3s"))

    # v1.0.0 reaches the member, with its provenance on the revision
    e.wait(lambda: e.configmap_version() == "1.0.0", 90, "ConfigMap at 1.0.0 in the member")
    _code, fs = e.wait(
        lambda: (lambda r: r if r[0] == 0 else None)(fleet_status(e)), 60, "`blueprintd status` converged"
    )
    (cluster,) = fs["clusters"]
    assert cluster["name"] == e.member and cluster["applied"] == {bp: "1.0.0"}
    v1 = revisions(e, bp)[f"{bp}-v1.0.0"]
    assert v1["spec"]["source"] == {"kind": "git", "repo": repo.url, "commit": c1, "path": path}
    assert v1["metadata"]["annotations"]["blueprintd.io/git-commit"] == c1
    assert e.source_status("platform")["lastAppliedCommit"] == c1

    # v1.1.0: a new commit rolls out
    repo.write(path, blueprint_yaml(bp, "1.1.0", e.member_ns))
    c2 = repo.commit("gpu-config 1.1.0")
    e.wait(lambda: e.configmap_version() == "1.1.0", 90, "ConfigMap at 1.1.0")
    assert revisions(e, bp)[f"{bp}-v1.1.0"]["spec"]["source"]["commit"] == c2

    # a broken commit: nothing applied, the GitSource names file and line, the member stays
    repo.write(path, blueprint_yaml(bp, "1.2.0", e.member_ns).replace("    - name: config\n", "    - nme: config\n"))
    c3 = repo.commit("gpu-config 1.2.0 (typo)")
    status = e.wait(
        lambda: (lambda s: s if s.get("lastFetchedCommit") == c3 and s.get("lastError") else None)(
            e.source_status("platform")
        ),
        30,
        "GitSource refusing the broken commit",
    )
    assert status["lastError"]["file"] == path and status["lastError"]["line"] == 11
    assert status["lastError"]["message"] == "spec.addons[0].name: required field is missing"
    assert any("unknown field 'nme'" in err["message"] for err in status["errors"])
    assert status["lastAppliedCommit"] == c2
    assert e.get("blueprints", bp)["spec"]["version"] == "1.1.0"
    time.sleep(4)  # two member resyncs: still 1.1.0
    assert e.configmap_version() == "1.1.0"
    assert set(revisions(e, bp)) == {f"{bp}-v1.0.0", f"{bp}-v1.1.0"}

    # `git revert` back to the 1.0.0 content: the member returns to 1.0.0 on the same revision
    c4 = repo.revert(c3, c2)
    e.wait(lambda: e.configmap_version() == "1.0.0", 90, "ConfigMap back at 1.0.0")
    status = e.source_status("platform")
    assert status["lastAppliedCommit"] == c4 and "lastError" not in status
    revs = revisions(e, bp)
    assert set(revs) == {f"{bp}-v1.0.0", f"{bp}-v1.1.0"}  # no new revision object
    assert revs[f"{bp}-v1.0.0"]["metadata"]["uid"] == v1["metadata"]["uid"]
    assert revs[f"{bp}-v1.0.0"]["metadata"]["resourceVersion"] == v1["metadata"]["resourceVersion"]
    live = e.get("blueprints", bp)
    assert live["status"]["revision"] == f"{bp}-v1.0.0"
    assert live["metadata"]["annotations"]["blueprintd.io/git-commit"] == c4
    valid = next(c for c in live["status"]["conditions"] if c["type"] == "Valid")
    assert valid["status"] == "True"


def test_push_webhook_triggers_a_sync_long_before_the_poll(env: Env, tmp_path: Path) -> None:
    e = env
    repo = SourceRepo(tmp_path / "hooked")
    nowhere = {"clusterSelector": "  clusterSelector:\n    matchLabels: {gitops-test: nobody}\n"}
    repo.write("blueprints/a.yaml", blueprint_yaml("hooked", "1.0.0", e.member_ns, extra=nowhere["clusterSelector"]))
    c1 = repo.commit("1.0.0")
    secret = b"s3cret-webhook-token"
    e.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "hook-secret"},
            "data": {"token": base64.b64encode(secret).decode()},
        },
        git_source("hooked", repo.url, "1h", webhookSecretRef={"name": "hook-secret"}),
    )
    e.wait(lambda: e.source_status("hooked").get("lastAppliedCommit") == c1, 30, "first sync")

    def post(name: str, body: bytes, signature: str | None) -> int:
        headers = {"Content-Type": "application/json", "X-GitHub-Event": "push"}
        if signature:
            headers[SIGNATURE_HEADER] = signature
        req = urllib.request.Request(
            f"http://127.0.0.1:{e.webhook_port}/hooks/{name}", data=body, headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as err:
            return int(err.code)

    repo.write("blueprints/a.yaml", blueprint_yaml("hooked", "1.1.0", e.member_ns, extra=nowhere["clusterSelector"]))
    c2 = repo.commit("1.1.0")
    body = json.dumps({"ref": "refs/heads/main", "after": c2}).encode()
    started = time.monotonic()
    assert post("hooked", body, sign(secret, body)) == 202
    e.wait(lambda: e.source_status("hooked").get("lastAppliedCommit") == c2, 20, "webhook-triggered sync")
    assert time.monotonic() - started < 20  # the poll interval is one hour
    assert e.get("blueprints", "hooked")["spec"]["version"] == "1.1.0"

    # a wrong signature is refused and triggers nothing; an unknown source is a 404
    repo.write("blueprints/a.yaml", blueprint_yaml("hooked", "1.2.0", e.member_ns, extra=nowhere["clusterSelector"]))
    repo.commit("1.2.0")
    body = b'{"ref":"refs/heads/main"}'
    assert post("hooked", body, sign(b"guessed", body)) == 401
    assert post("hooked", body, None) == 401
    assert post("no-such-source", body, sign(secret, body)) == 404
    assert post("platform", body, sign(secret, body)) == 404  # exists, but has no webhookSecretRef
    time.sleep(6)  # more than a timer tick
    assert e.source_status("hooked")["lastAppliedCommit"] == c2
