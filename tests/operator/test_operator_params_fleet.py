"""A MemberCluster override its declaration refuses fails that member only, and its status says why.

The real operator process runs against the session fleet's management cluster with both
members registered in a namespace of its own. The Blueprint is a manifests-only add-on whose
ConfigMap carries ``params.replicas``, so convergence takes seconds. member-1 overrides the
parameter with ``"many"``: its render is refused, nothing is applied there and its status
names the parameter, the value and the allowed range; member-2 converges on the default.
Fixing the override converges member-1 too, at once although its failure backs off: new values
are a new attempt.

The operator runs with a small retry backoff (base 2 s, cap 8 s). A second Blueprint whose
Helm chart cannot be pulled (a deterministic failure) shows that a failing add-on is attempted
with growing intervals, never before the ``nextAttempt`` its status announces.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from blueprintd.devfleet.binaries import Binaries
from blueprintd.devfleet.demo import member_registration
from blueprintd.devfleet.fleet import Fleet
from blueprintd.devfleet.testing import or_none, unique_name, wait_for

pytestmark = pytest.mark.fleet

REPO_ROOT = Path(__file__).resolve().parents[2]
GROUP, VERSION = "blueprintd.io", "v1alpha1"
BACKOFF_BASE, BACKOFF_CAP = 2, 8


def kubectl(bins: Binaries, fleet: Fleet, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        [str(bins.kubectl), "--kubeconfig", str(fleet.management.kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def probe_blueprint(member_ns: str, selector: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Blueprint",
        "metadata": {"name": "params-probe"},
        "spec": {
            "version": "1.0.0",
            "clusterSelector": {"matchLabels": selector},
            "parameters": {"replicas": {"type": "integer", "default": 2, "minimum": 1, "maximum": 8}},
            "addons": [
                {
                    "name": "probe",
                    "namespace": member_ns,
                    "manifests": [
                        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": member_ns}},
                        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "params-probe"},
                         "data": {"replicas": "0"}},
                    ],
                }
            ],
            "overlays": [
                {
                    "name": "replicas",
                    "patches": [
                        {
                            "addon": "probe",
                            "target": {"kind": "ConfigMap", "name": "params-probe"},
                            "mergePatch": {"data": {"replicas": "${ string(params.replicas) }"}},
                        }
                    ],
                }
            ],
            "rollout": {"maxUnavailable": "100%", "healthTimeoutSeconds": 120},
        },
    }


class Env:
    def __init__(self, fleet: Fleet, bins: Binaries, ns: str, member_ns: str, log: Path) -> None:
        self.fleet, self.bins, self.ns, self.member_ns, self.log = fleet, bins, ns, member_ns, log
        self.mgmt = fleet.management.api_client()
        self.custom = client.CustomObjectsApi(self.mgmt)
        self.cores = {m.name: client.CoreV1Api(m.api_client()) for m in fleet.members}

    def member(self, name: str) -> dict[str, Any]:
        obj: dict[str, Any] = self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, "memberclusters", name)
        return obj

    def progress(self, name: str, blueprint: str = "params-probe") -> dict[str, Any] | None:
        entries = (self.member(name).get("status") or {}).get("blueprints") or []
        return next((e for e in entries if e.get("blueprint") == blueprint), None)

    def replicas(self, name: str) -> str | None:
        cm = or_none(lambda: self.cores[name].read_namespaced_config_map("params-probe", self.member_ns))
        return (cm.data or {}).get("replicas") if cm is not None else None

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


@pytest.fixture(scope="module")
def env(fleet: Fleet, kube_binaries: Binaries, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    crds = str(REPO_ROOT / "crds")
    kubectl(kube_binaries, fleet, "apply", "--server-side", "--force-conflicts", "--field-manager=params-test",
            "-f", crds)
    kubectl(kube_binaries, fleet, "wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
    ns = unique_name("params")
    member_ns = unique_name("params-probe")
    docs: list[dict[str, Any]] = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}]
    for m in fleet.members:
        docs += member_registration(fleet, m, ns, labels={"params-test": ns})
    kubectl(kube_binaries, fleet, "apply", "--server-side", "-f", "-", stdin=yaml.safe_dump_all(docs))
    log = tmp_path_factory.mktemp("params-operator") / "operator.log"
    args = [sys.executable, "-m", "blueprintd", "operator", "--kubeconfig", str(fleet.management.kubeconfig),
            "-n", ns, "--helm", str(kube_binaries.helm), "--metrics-port", "0", "--member-resync", "2",
            "--backoff-base", str(BACKOFF_BASE), "--backoff-cap", str(BACKOFF_CAP)]
    with log.open("ab") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    e = Env(fleet, kube_binaries, ns, member_ns, log)
    try:
        yield e
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for plural in ("blueprints", "blueprintrevisions", "memberclusters"):
            for item in e.custom.list_namespaced_custom_object(GROUP, VERSION, ns, plural).get("items", []):
                e.custom.delete_namespaced_custom_object(GROUP, VERSION, ns, plural, item["metadata"]["name"])
        client.CoreV1Api(e.mgmt).delete_namespace(ns)
        for core in e.cores.values():
            try:
                core.delete_namespace(member_ns)
            except client.ApiException as exc:
                if exc.status != 404:
                    raise


def test_bad_override_fails_that_member_only_and_names_the_problem(env: Env) -> None:
    bad, good = (m.name for m in env.fleet.members[:2])
    env.custom.patch_namespaced_custom_object(
        GROUP, VERSION, env.ns, "memberclusters", bad, {"spec": {"parameters": {"replicas": "many"}}}
    )
    kubectl(env.bins, env.fleet, "apply", "-n", env.ns, "--server-side", "-f", "-",
            stdin=yaml.safe_dump(probe_blueprint(env.member_ns, {"params-test": env.ns})))

    def failed() -> dict[str, Any] | None:
        entry = env.progress(bad)
        return entry if entry and entry.get("state") == "Failed" else None

    entry = wait_for(failed, timeout=120, interval=0.5, what=f"{bad} to report the refused override\n{env.log_tail()}")
    assert entry["version"] == "1.0.0"
    assert (
        "parameter 'replicas' of Blueprint 'params-probe': cluster override \"many\" is not an integer "
        "(allowed: an integer from 1 to 8)"
    ) in entry["message"]
    wait_for(lambda: env.replicas(good) == "2", timeout=120, interval=0.5,
             what=f"{good} to converge on the default\n{env.log_tail()}")
    assert env.replicas(bad) is None  # nothing was applied where the render was refused

    env.custom.patch_namespaced_custom_object(
        GROUP, VERSION, env.ns, "memberclusters", bad, {"spec": {"parameters": {"replicas": 6}}}
    )
    wait_for(lambda: env.replicas(bad) == "6", timeout=120, interval=0.5,
             what=f"{bad} to converge once its override is fixed\n{env.log_tail()}")
    assert env.replicas(good) == "2"


def unpullable_blueprint(member_ns: str, selector: dict[str, str]) -> dict[str, Any]:
    """A Helm add-on whose repository refuses connections (loopback port 1): every install
    fails the same way, before anything reaches the member."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Blueprint",
        "metadata": {"name": "backoff-probe"},
        "spec": {
            "version": "1.0.0",
            "clusterSelector": {"matchLabels": selector},
            "addons": [{"name": "unpullable", "namespace": member_ns,
                        "helm": {"repo": "http://127.0.0.1:1/charts", "chart": "nothing", "version": "1.0.0"}}],
            "rollout": {"maxUnavailable": "100%", "healthTimeoutSeconds": 600},
        },
    }


def test_a_deterministic_helm_failure_is_retried_with_growing_intervals(env: Env) -> None:
    name = env.fleet.members[1].name  # no overrides: member 0's replicas is not this Blueprint's parameter
    kubectl(env.bins, env.fleet, "apply", "-n", env.ns, "--server-side", "-f", "-",
            stdin=yaml.safe_dump(unpullable_blueprint(env.member_ns, {"params-test": env.ns})))

    seen: dict[int, dict[str, Any]] = {}  # the entry as first observed with each failure count

    def observe() -> bool:
        entry = env.progress(name, "backoff-probe")
        if entry and entry.get("state") == "Failed" and entry.get("backoff"):
            seen.setdefault(entry["backoff"]["failures"], entry)
        return max(seen, default=0) >= 5

    wait_for(observe, timeout=240, interval=0.25, what=f"5 failed attempts on {name}\n{env.log_tail()}")
    first = seen[min(seen)]
    assert first["failedAddon"] == "unpullable" and "127.0.0.1:1" in first["message"], first
    assert env.member(name)["status"]["lastError"], "the failure is shown in the member status"

    def ts(value: str) -> datetime:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))

    for n, entry in sorted(seen.items()):
        wait = (ts(entry["backoff"]["nextAttempt"]) - ts(entry["lastAttempt"])).total_seconds()
        exact = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (n - 1))
        assert 0.8 * exact <= wait <= exact, f"attempt {n} announced a {wait} s wait, the rule says {exact} s"
        later = seen.get(n + 1)
        if later is not None:  # never retried before the announced time
            assert ts(later["lastAttempt"]) >= ts(entry["backoff"]["nextAttempt"]), (entry, later)
    gaps = [(ts(seen[n + 1]["lastAttempt"]) - ts(seen[n]["lastAttempt"])).total_seconds()
            for n in sorted(seen) if n + 1 in seen]
    assert gaps and max(gaps) >= 0.8 * BACKOFF_CAP, f"the intervals grew toward the cap: {gaps}"

    # `blueprintd status -o json` says when the next attempt is.
    done = subprocess.run(
        [sys.executable, "-m", "blueprintd", "status", "--kubeconfig", str(env.fleet.management.kubeconfig),
         "-n", env.ns, "-o", "json"],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 1, done.stderr  # not converged
    cluster = next(c for c in json.loads(done.stdout)["clusters"] if c["name"] == name)
    probe = next(p for p in cluster["blueprints"] if p["blueprint"] == "backoff-probe")
    assert probe["state"] == "Failed" and probe["failures"] >= 5 and probe["nextAttempt"]
