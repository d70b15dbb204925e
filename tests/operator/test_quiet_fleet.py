"""A quiet fleet makes no writes: the real operator process after members come and go (issue 14).

A deleted member used to stay in ``status.rollout.assignments`` forever, and the operator
patched ``blueprints/<name>/status`` every 2 s. Here the real ``blueprintd operator`` runs in a
namespace of its own against the shared fleet with a small Blueprint (manifests only), and
the scenario goes through what a platform team does: members that are never reachable are
registered, one of them is deleted again, a member is relabelled out of the selection, and
finally the Blueprint is deleted. After each change settles, the management API server's
audit log shows no write in the namespace and the members' audit logs no write by the
operator over a quiet window (``BLUEPRINTD_TEST_QUIET_SECONDS``, default 60, never below 30).
The one exception is an unreachable member's status at each retry its backoff announced
(``status.backoff``): exactly one write per failed attempt, none in between, and far fewer
attempts than resyncs.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml
from kubernetes import client

from blueprintd.devfleet.binaries import Binaries
from blueprintd.devfleet.demo import OPERATOR_USER, member_registration
from blueprintd.devfleet.fleet import Fleet
from blueprintd.devfleet.testing import OperatorProcess, unique_suffix, wait_for

pytestmark = pytest.mark.fleet

GROUP, VERSION = "blueprintd.io", "v1alpha1"
QUIET_SECONDS = max(30.0, float(os.environ.get("BLUEPRINTD_TEST_QUIET_SECONDS", "60")))
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclass
class Env:
    fleet: Fleet
    bins: Binaries
    uid: str
    ns: str
    bp: str
    app_ns: str
    operator: OperatorProcess
    metrics_port: int


def kubectl(env: Env, *args: str, stdin: str | None = None) -> str:
    proc = subprocess.run(
        [str(env.bins.kubectl), "--kubeconfig", str(env.fleet.management.kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def custom(env: Env) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(env.fleet.management.api_client())


def status_of(env: Env, plural: str, name: str) -> dict[str, Any]:
    obj = custom(env).get_namespaced_custom_object(GROUP, VERSION, env.ns, plural, name)
    return dict(obj.get("status") or {})


def assignments(env: Env) -> dict[str, str]:
    return dict((status_of(env, "blueprints", env.bp).get("rollout") or {}).get("assignments") or {})


def refused_member(env: Env, name: str) -> list[dict[str, Any]]:
    """A MemberCluster whose kubeconfig the operator refuses (exec auth): never reachable."""
    cfg = yaml.safe_load(env.fleet.members[0].kubeconfig.read_text())
    cfg["users"][0]["user"] = {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "/bin/false"}}
    return [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": f"{name}-kubeconfig", "namespace": env.ns},
            "data": {"kubeconfig": base64.b64encode(yaml.safe_dump(cfg).encode()).decode()},
        },
        {
            "apiVersion": "blueprintd.io/v1alpha1",
            "kind": "MemberCluster",
            "metadata": {"name": name, "namespace": env.ns, "labels": {"quiet-test": env.uid}},
            "spec": {"kubeconfigSecretRef": {"name": f"{name}-kubeconfig"}},
        },
    ]


def blueprint(env: Env) -> dict[str, Any]:
    return {
        "apiVersion": "blueprintd.io/v1alpha1",
        "kind": "Blueprint",
        "metadata": {"name": env.bp, "namespace": env.ns},
        "spec": {
            "version": "1.0.0",
            "clusterSelector": {"matchLabels": {"quiet-test": env.uid}},
            "addons": [
                {
                    "name": "app",
                    "namespace": env.app_ns,
                    "manifests": [
                        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app"}, "data": {"a": "1"}}
                    ],
                }
            ],
        },
    }


def failures(env: Env, member: str) -> int:
    return int((status_of(env, "memberclusters", member).get("backoff") or {}).get("failures", 0))


def assert_quiet(env: Env, seconds: float, unreachable: tuple[str, ...] = ()) -> None:
    """No write at all in the operator's namespace, and none by the operator on any member.

    An ``unreachable`` member's status is written once per failed retry (its backoff counts
    them), and never between two: the backoff (base 5 s, doubling) allows at most 4 retries in
    a minute, where a retry on every 2 s resync would write 30 times."""
    import time

    before = {name: failures(env, name) for name in unreachable}
    marks = {m.name: m.audit.mark() for m in env.fleet.members}
    mgmt_mark = env.fleet.management.audit.mark()
    time.sleep(seconds)
    assert env.operator.alive(), env.operator.tail()
    mgmt = [w for w in env.fleet.management.audit.writes(mgmt_mark) if w.namespace == env.ns]
    after = {name: failures(env, name) for name in unreachable}  # read last: it counts every write above
    for name in unreachable:
        retries = [w for w in mgmt if (w.resource, w.subresource, w.name) == ("memberclusters", "status", name)]
        assert len(retries) <= after[name] - before[name], f"{name}: a write that was not a retry"
        assert len(retries) <= 4 * (seconds / 60 + 1), f"{name}: {len(retries)} retries in {seconds} s"
        mgmt = [w for w in mgmt if w not in retries]
    assert mgmt == [], [(w.verb, w.resource, w.subresource, w.name, w.user) for w in mgmt]
    for m in env.fleet.members:
        writes = m.audit.writes(marks[m.name], user=OPERATOR_USER)
        assert writes == [], f"{m.name}: {[(w.verb, w.resource, w.name) for w in writes]}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def member_reconciles(env: Env) -> dict[str, float]:
    """The operator's ``blueprintd_reconciles_total{kind="MemberCluster"}`` by result."""
    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://127.0.0.1:{env.metrics_port}/metrics", timeout=10).read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "blueprintd_reconciles_total" and sample.labels.get("kind") == "MemberCluster":
                out[sample.labels["result"]] = sample.value
    return out


@pytest.fixture(scope="module")
def env(fleet: Fleet, kube_binaries: Binaries, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    uid = unique_suffix()
    ns = f"quiet-{uid}"
    args = [
        sys.executable, "-m", "blueprintd", "operator", "--kubeconfig", str(fleet.management.kubeconfig),
        "-n", ns, "--helm", str(kube_binaries.helm), "--metrics-port", str(port := free_port()),
        "--member-resync", "2",
    ]  # fmt: skip
    log = tmp_path_factory.mktemp("quiet-operator") / "operator.log"
    e = Env(fleet, kube_binaries, uid, ns, f"quiet-{uid}", f"quiet-app-{uid}", OperatorProcess(args, log), port)
    kubectl(e, "apply", "--server-side", "--force-conflicts", "-f", os.path.join(REPO, "crds"))
    kubectl(e, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    docs: list[dict[str, Any]] = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}]
    for m in fleet.members:
        docs += member_registration(fleet, m, ns, {"quiet-test": uid})
    kubectl(e, "apply", "--server-side", "-f", "-", stdin=yaml.safe_dump_all(docs))
    e.operator.start()
    try:
        yield e
    finally:
        e.operator.stop()
        kubectl(e, "delete", "namespace", ns, "--wait=false")
        for m in fleet.members:
            try:
                client.CoreV1Api(m.api_client()).delete_namespace(e.app_ns)
            except client.ApiException as exc:
                if exc.status != 404:
                    raise


def test_the_blueprint_converges(env: Env) -> None:
    kubectl(env, "apply", "-f", "-", stdin=yaml.safe_dump(blueprint(env)))
    names = {m.name for m in env.fleet.members}

    def converged() -> bool:
        ro = status_of(env, "blueprints", env.bp).get("rollout") or {}
        return ro.get("phase") == "Complete" and set(ro.get("assignments") or {}) == names and completed()

    def completed() -> bool:
        # The operator posts the RolloutComplete event just after the status write that says
        # Complete: the quiet period starts once both are in, not between the two.
        events = client.CoreV1Api(env.fleet.management.api_client()).list_namespaced_event(
            env.ns, field_selector=f"involvedObject.name={env.bp},reason=RolloutComplete"
        )
        return bool(events.items)

    wait_for(converged, timeout=180, what="the Blueprint to roll out to every member")
    before = member_reconciles(env)
    assert_quiet(env, QUIET_SECONDS)
    after = member_reconciles(env)
    # Resyncs of converged members whose watches saw nothing skip the reconcile: no member
    # read, no render (operator/quiet.py). Each member resyncs every 2 s; a full one still
    # follows its own last writes once, and the 300 s full resync may fall in the window.
    quiet = after.get("quiet", 0) - before.get("quiet", 0)
    full = after.get("ok", 0) - before.get("ok", 0)
    members = len(env.fleet.members)
    assert quiet >= members * QUIET_SECONDS / 2 * 0.6, (before, after)
    assert full <= members * (2 + QUIET_SECONDS / 300), (before, after)


def test_quiet_after_a_member_is_deleted_with_unreachable_and_relabelled_members(env: Env) -> None:
    docs = refused_member(env, "ghost") + refused_member(env, "lost")
    kubectl(env, "apply", "-f", "-", stdin=yaml.safe_dump_all(docs))
    wait_for(lambda: {"ghost", "lost"} <= set(assignments(env)), timeout=60, what="the new members to be assigned")
    wait_for(lambda: status_of(env, "memberclusters", "ghost").get("reachable") is False, timeout=60,
             what="ghost to be reported unreachable")  # fmt: skip
    relabelled = env.fleet.members[1].name
    kubectl(env, "label", "-n", env.ns, f"membercluster/{relabelled}", "quiet-test-")
    kubectl(env, "delete", "-n", env.ns, "membercluster/ghost", "secret/ghost-kubeconfig")

    def settled() -> bool:
        left = set(assignments(env))
        return "ghost" not in left and relabelled not in left and not status_of(
            env, "memberclusters", relabelled
        ).get("blueprints")

    wait_for(settled, timeout=60, what="the deleted and the relabelled member to leave the rollout")
    rollout = status_of(env, "blueprints", env.bp)["rollout"]
    assert set(rollout["assignments"]) == {env.fleet.members[0].name, "lost"}
    assert "ghost" not in json.dumps(rollout["waves"])
    reach = next(c for c in status_of(env, "memberclusters", "lost")["conditions"] if c["type"] == "Reachable")
    assert reach["status"] == "False" and "allowExecAuth" in reach["message"]
    assert_quiet(env, QUIET_SECONDS, unreachable=("lost",))
    # `blueprintd plan` runs the reconcile's own pipeline: it agrees there is nothing to do.
    out = subprocess.run(
        [sys.executable, "-m", "blueprintd", "plan", env.bp, "--cluster", env.fleet.members[0].name,
         "--kubeconfig", str(env.fleet.management.kubeconfig), "-n", env.ns, "-o", "json",
         "--helm", str(env.bins.helm)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads(out.stdout)["actions"] == []


def test_quiet_after_the_blueprint_is_deleted(env: Env) -> None:
    kubectl(env, "delete", "-n", env.ns, f"blueprint/{env.bp}")
    first = env.fleet.members[0].name
    wait_for(lambda: not status_of(env, "memberclusters", first).get("blueprints"), timeout=60,
             what="the member to release the deleted Blueprint")  # fmt: skip
    assert_quiet(env, QUIET_SECONDS, unreachable=("lost",))
