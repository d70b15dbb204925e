"""The operator end to end: the real `blueprintd operator` process, real API servers, real helm.

A private fleet (management + 3 members) keeps these scenarios from interfering with other
tests: the default blueprint installs cluster-scoped objects. The members have the ``full``
control plane: Kubernetes' controller-manager and scheduler run the add-ons' workloads on
kwok's simulated nodes, so the readiness the operator waits for is Kubernetes' own. The scenarios run in order on
one operator run, the way a platform team lives through versions: 1.0.0 everywhere, 1.1.0 in
waves (with an operator restart in the middle), a broken 1.2.0 stopped after the canary, then
a rollback to 1.0.0.
"""

from __future__ import annotations

import base64
import itertools
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from blueprintd.devfleet.binaries import Binaries
from blueprintd.devfleet.demo import OPERATOR_USER, mirror_flags, register_members
from blueprintd.devfleet.fleet import Fleet
from blueprintd.devfleet.nodes import FleetFile, MemberSpec, NodeGroupSpec
from blueprintd.devfleet.standins import StandIns
from blueprintd.devfleet.testing import running_fleet, wait_for

pytestmark = pytest.mark.fleet

REPO = Path(__file__).resolve().parents[2]
NS = "blueprintd-system"
GROUP, VERSION = "blueprintd.io", "v1alpha1"

OP_FLEET = FleetFile(
    members=[
        MemberSpec(name="alpha", labels={"env": "test", "gpu": "mixed"},
                   nodes=[NodeGroupSpec(profile="h100", count=2), NodeGroupSpec(profile="l4", count=2),
                          NodeGroupSpec(profile="cpu", count=1)]),
        MemberSpec(name="beta", labels={"env": "test", "gpu": "l4"}, nodes=[NodeGroupSpec(profile="l4", count=2)]),
        MemberSpec(name="gamma", labels={"env": "test", "gpu": "h100"},
                   nodes=[NodeGroupSpec(profile="h100", count=1), NodeGroupSpec(profile="cpu", count=1)]),
    ]
)


class Operator:
    """The operator as a subprocess, restartable mid-scenario."""

    def __init__(self, fleet: Fleet, bins: Binaries, chart_repo: str, log: Path) -> None:
        self.args = [sys.executable, "-m", "blueprintd", "operator", "--kubeconfig", str(fleet.management.kubeconfig),
                     "-n", NS, "--helm", str(bins.helm), "--metrics-port", "0", "--member-resync", "2"]
        for m in mirror_flags(chart_repo):
            self.args += ["--chart-mirror", m]
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        out = self.log.open("ab")
        self.proc = subprocess.Popen(self.args, stdout=out, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()  # no graceful shutdown: a crash at an arbitrary point
            self.proc.wait()
            self.proc = None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@pytest.fixture(scope="module")
def op_fleet(kube_binaries: Binaries, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with running_fleet(tmp_path_factory.mktemp("opfleet"), OP_FLEET, kube_binaries) as fleet:
        kubectl(kube_binaries, fleet, "apply", "--server-side", "-f", str(REPO / "crds"))
        kubectl(kube_binaries, fleet, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        register_members(fleet, kube_binaries, NS)
        yield fleet


@pytest.fixture(scope="module")
def op_standins(op_fleet: Fleet) -> Iterator[StandIns]:
    """Gatekeeper's template controller and the webhook responder for the members."""
    sim = StandIns(op_fleet)
    sim.start()
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture(scope="module")
def operator(op_fleet: Fleet, op_standins: StandIns, kube_binaries: Binaries, chart_repo: str,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    op = Operator(op_fleet, kube_binaries, chart_repo, tmp_path_factory.mktemp("oplog") / "operator.log")
    op.start()
    try:
        yield op
    finally:
        op.kill()


def kubectl(bins: Binaries, fleet: Fleet, *args: str, stdin: str | None = None, cluster: str = "management") -> str:
    proc = subprocess.run([str(bins.kubectl), "--kubeconfig", str(fleet.cluster(cluster).kubeconfig), *args],
                          input=stdin, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def custom(fleet: Fleet) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(fleet.management.api_client())


def blueprint(version: str, *, replicas: int = 4, gpu_operator_version: str | None = None) -> dict[str, Any]:
    """The default GPU platform blueprint at ``version``, with test-friendly rollout settings."""
    doc = yaml.safe_load((REPO / "blueprints" / "gpu-platform" / "blueprint.yaml").read_text())
    doc["spec"]["version"] = version
    doc["spec"]["parameters"]["timeSlicingReplicas"]["default"] = replicas
    doc["spec"]["rollout"] = {"canary": {"count": 1}, "maxUnavailable": 1, "failurePolicy": "pause",
                              "healthTimeoutSeconds": 120}
    for addon in doc["spec"]["addons"]:
        if addon["name"] == "gpu-operator" and gpu_operator_version:
            addon["helm"]["version"] = gpu_operator_version
        if addon.get("readiness"):
            addon["readiness"]["timeoutSeconds"] = 60
    return dict(doc)


def apply_blueprint(bins: Binaries, fleet: Fleet, doc: dict[str, Any]) -> None:
    kubectl(bins, fleet, "apply", "-n", NS, "-f", "-", stdin=yaml.safe_dump(doc))


def bp_status(fleet: Fleet, name: str = "gpu-platform") -> dict[str, Any]:
    obj = custom(fleet).get_namespaced_custom_object(GROUP, VERSION, NS, "blueprints", name)
    return dict(obj.get("status") or {})


def member_status(fleet: Fleet, name: str) -> dict[str, Any]:
    obj = custom(fleet).get_namespaced_custom_object(GROUP, VERSION, NS, "memberclusters", name)
    return dict(obj.get("status") or {})


def applied_versions(fleet: Fleet) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for m in fleet.members:
        st = member_status(fleet, m.name)
        out[m.name] = next((a["version"] for a in st.get("appliedRevisions") or []
                            if a["blueprint"] == "gpu-platform"), None)
    return out


def wait_rollout(fleet: Fleet, version: str, phase: str = "Complete", timeout: float = 240) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        ro = bp_status(fleet).get("rollout") or {}
        return ro if ro.get("targetVersion") == version and ro.get("phase") == phase else None

    return wait_for(done, timeout=timeout, interval=0.5, what=f"rollout of {version} to reach {phase}")


def test_default_blueprint_converges_with_per_pool_config(op_fleet: Fleet, operator: Operator,
                                                          kube_binaries: Binaries) -> None:
    apply_blueprint(kube_binaries, op_fleet, blueprint("1.0.0"))
    ro = wait_rollout(op_fleet, "1.0.0")
    assert len(ro["waves"][0]) == 1, "one canary cluster goes first"
    assert applied_versions(op_fleet) == {"alpha": "1.0.0", "beta": "1.0.0", "gamma": "1.0.0"}

    alpha = op_fleet.cluster("alpha")
    nodes = {n.metadata.name: n.metadata.labels for n in client.CoreV1Api(alpha.api_client()).list_node().items}
    for h100 in ("alpha-h100-0", "alpha-h100-1"):
        assert nodes[h100]["nvidia.com/mig.config"] == "all-1g.10gb"
        assert "nvidia.com/device-plugin.config" not in nodes[h100]
    for l4 in ("alpha-l4-0", "alpha-l4-1"):
        assert nodes[l4]["nvidia.com/device-plugin.config"].startswith("ts-")
        assert "nvidia.com/mig.config" not in nodes[l4] or nodes[l4]["nvidia.com/mig.config"] == "all-disabled"
    cpu = nodes["alpha-cpu-0"]
    assert not any(k in cpu for k in ("nvidia.com/mig.config", "nvidia.com/device-plugin.config",
                                      "nvidia.com/dra-kubelet-plugin"))

    core = client.CoreV1Api(alpha.api_client())
    mig = core.read_namespaced_config_map("blueprintd-mig-parted-config", "gpu-operator").data["config.yaml"]
    assert yaml.safe_load(mig)["mig-configs"]["all-1g.10gb"][0]["mig-devices"] == {"1g.10gb": 7}
    ts = core.read_namespaced_config_map("blueprintd-time-slicing", "gpu-operator").data
    l4_key = nodes["alpha-l4-0"]["nvidia.com/device-plugin.config"]
    assert yaml.safe_load(ts[l4_key])["sharing"]["timeSlicing"]["resources"][0]["replicas"] == 4
    # beta has no MIG-capable pool: no MIG config is rendered for it.
    beta_mig = client.CoreV1Api(op_fleet.cluster("beta").api_client()).read_namespaced_config_map(
        "blueprintd-mig-parted-config", "gpu-operator").data["config.yaml"]
    assert "all-1g.10gb" not in yaml.safe_load(beta_mig)["mig-configs"]

    st = member_status(op_fleet, "alpha")
    assert {a["state"] for a in st["addons"]} == {"Ready"}
    assert {a["name"] for a in st["addons"]} >= {"gpu-operator", "dra-driver", "kai-scheduler", "gatekeeper", "kata"}
    assert any(p["product"].startswith("NVIDIA-H100") for p in st["factsSummary"])
    assert any(c["type"] == "Ready" and c["status"] == "True" for c in st["conditions"])


def test_gatekeepers_webhooks_are_called_and_answered_on_loopback(op_fleet: Fleet, op_standins: StandIns) -> None:
    """Gatekeeper's webhooks are live on full members: the member API server called its Service
    on the loopback ClusterIP for the later add-ons' writes and namespaces, and got answers."""
    for m in op_fleet.members:
        core = client.CoreV1Api(m.api_client())
        ip = core.read_namespaced_service("gatekeeper-webhook-service", "gatekeeper-system").spec.cluster_ip
        assert ip.startswith("127."), ip
        answers = [a for a in op_standins.webhooks[m.name].answers if a.target.service == "gatekeeper-webhook-service"]
        assert {a.target.ip for a in answers} == {ip}
        paths = {a.path for a in answers}
        assert {"/v1/admit", "/v1/admitlabel", "/v1/mutate"} <= paths, f"{m.name}: {paths}"


def test_noop_reconcile_makes_no_write_call(op_fleet: Fleet, operator: Operator) -> None:
    marks = {m.name: m.audit.mark() for m in op_fleet.members}
    mgmt_mark = op_fleet.management.audit.mark()
    time.sleep(8)  # four member resyncs and several rollout resyncs
    for m in op_fleet.members:
        writes = m.audit.writes(marks[m.name], user=OPERATOR_USER)
        assert writes == [], f"{m.name}: {[(w.verb, w.resource, w.name) for w in writes]}"
    mgmt_writes = [w for w in op_fleet.management.audit.writes(mgmt_mark) if w.namespace == NS]
    assert mgmt_writes == [], [(w.verb, w.resource, w.name, w.user) for w in mgmt_writes]
    # Installing the default blueprint is not drift either: every report is empty, nothing
    # was "remediated" along the way.
    for m in op_fleet.members:
        rep = custom(op_fleet).get_namespaced_custom_object(GROUP, VERSION, NS, "driftreports", m.name)
        found = (rep.get("status") or {}).get("entries") or []
        assert found == [], f"{m.name}: {found}"


def test_new_version_rolls_out_in_waves_and_survives_an_operator_crash(
    op_fleet: Fleet, operator: Operator, kube_binaries: Binaries
) -> None:
    apply_blueprint(kube_binaries, op_fleet, blueprint("1.1.0", replicas=8))
    seen: list[dict[str, str | None]] = []
    restarted = False
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        versions = applied_versions(op_fleet)
        if not seen or seen[-1] != versions:
            seen.append(versions)
        moved = sum(1 for v in versions.values() if v == "1.1.0")
        if moved >= 1 and not restarted:
            operator.kill()  # crash mid-rollout: all state is in the API objects
            operator.start()
            restarted = True
        if moved == 3 and (bp_status(op_fleet).get("rollout") or {}).get("phase") == "Complete":
            break
        time.sleep(0.3)
    assert restarted
    assert seen[-1] == {"alpha": "1.1.0", "beta": "1.1.0", "gamma": "1.1.0"}, seen
    # Waves: the canary alone first, never two clusters switching in the same observation.
    counts = [sum(1 for v in s.values() if v == "1.1.0") for s in seen]
    assert counts == sorted(counts) and 1 in counts, seen
    assert all(b - a <= 1 for a, b in itertools.pairwise(counts)), seen
    ts = client.CoreV1Api(op_fleet.cluster("beta").api_client()).read_namespaced_config_map(
        "blueprintd-time-slicing", "gpu-operator").data
    assert all(yaml.safe_load(v)["sharing"]["timeSlicing"]["resources"][0]["replicas"] == 8 for v in ts.values())


def test_broken_chart_pauses_after_the_canary(op_fleet: Fleet, operator: Operator, kube_binaries: Binaries) -> None:
    apply_blueprint(kube_binaries, op_fleet, blueprint("1.2.0", replicas=8, gpu_operator_version="99.0.0-broken"))
    ro = wait_rollout(op_fleet, "1.2.0", phase="Paused")
    canary = ro["waves"][0][0]
    failure = ro["failures"][0]
    assert failure["cluster"] == canary and failure["addon"] == "gpu-operator"
    assert "replicas" in failure["message"], failure  # the API server's reason, via helm
    time.sleep(4)  # nothing else moves while paused
    versions = applied_versions(op_fleet)
    assert [v for c, v in versions.items() if c != canary] == ["1.1.0", "1.1.0"]
    st = member_status(op_fleet, canary)
    gpu_op = next(a for a in st["addons"] if a["name"] == "gpu-operator")
    assert gpu_op["state"] == "Failed"
    later = [a for a in st["addons"] if a["name"] in ("dra-driver", "kata")]
    assert later and all(a["state"] == "Pending" for a in later), "later add-ons are left untouched"
    out = subprocess.run([sys.executable, "-m", "blueprintd", "rollout", "status", "gpu-platform",
                          "--kubeconfig", str(op_fleet.management.kubeconfig), "-n", NS, "-o", "json"],
                         capture_output=True, text=True)
    assert out.returncode == 1 and json.loads(out.stdout)["phase"] == "Paused"


def test_rollback_restores_an_earlier_version_exactly(op_fleet: Fleet, operator: Operator) -> None:
    rev_before = custom(op_fleet).get_namespaced_custom_object(GROUP, VERSION, NS, "blueprintrevisions",
                                                               "gpu-platform-v1.0.0")
    out = subprocess.run([sys.executable, "-m", "blueprintd", "rollback", "gpu-platform", "--to", "1.0.0",
                          "--kubeconfig", str(op_fleet.management.kubeconfig), "-n", NS],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    wait_rollout(op_fleet, "1.0.0")
    wait_for(lambda: set(applied_versions(op_fleet).values()) == {"1.0.0"}, timeout=120, what="all back on 1.0.0")
    ts = client.CoreV1Api(op_fleet.cluster("beta").api_client()).read_namespaced_config_map(
        "blueprintd-time-slicing", "gpu-operator").data
    assert all(yaml.safe_load(v)["sharing"]["timeSlicing"]["resources"][0]["replicas"] == 4 for v in ts.values())
    rev_after = custom(op_fleet).get_namespaced_custom_object(GROUP, VERSION, NS, "blueprintrevisions",
                                                              "gpu-platform-v1.0.0")
    assert rev_after["metadata"]["uid"] == rev_before["metadata"]["uid"], "the revision is reused, not recreated"
    status = subprocess.run([sys.executable, "-m", "blueprintd", "status", "--kubeconfig",
                             str(op_fleet.management.kubeconfig), "-n", NS, "-o", "json"],
                            capture_output=True, text=True)
    assert status.returncode == 0, status.stdout
    assert {c["name"]: c["applied"] for c in json.loads(status.stdout)["clusters"]} == {
        "alpha": {"gpu-platform": "1.0.0"}, "beta": {"gpu-platform": "1.0.0"}, "gamma": {"gpu-platform": "1.0.0"}}


def test_exec_kubeconfig_is_refused_and_never_contacted(op_fleet: Fleet, operator: Operator,
                                                        kube_binaries: Binaries) -> None:
    cfg = yaml.safe_load(op_fleet.cluster("gamma").kubeconfig.read_text())
    cfg["users"][0]["user"] = {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "/bin/sh",
                                        "args": ["-c", "touch /tmp/blueprintd-pwned"]}}
    raw = yaml.safe_dump(cfg)
    docs = [
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "sneaky-kubeconfig", "namespace": NS},
         "data": {"kubeconfig": base64.b64encode(raw.encode()).decode()}},
        {"apiVersion": "blueprintd.io/v1alpha1", "kind": "MemberCluster",
         "metadata": {"name": "sneaky", "namespace": NS, "labels": {"blueprintd.io/gpu-platform": "disabled"}},
         "spec": {"kubeconfigSecretRef": {"name": "sneaky-kubeconfig"}}},
    ]
    kubectl(kube_binaries, op_fleet, "apply", "-f", "-", stdin=yaml.safe_dump_all(docs))
    st = wait_for(lambda: member_status(op_fleet, "sneaky") or None, timeout=30, what="sneaky status")
    reach = next(c for c in st["conditions"] if c["type"] == "Reachable")
    assert reach["status"] == "False" and "exec" in reach["message"] and "allowExecAuth" in reach["message"]
    assert not Path("/tmp/blueprintd-pwned").exists()
    assert "client-key-data" not in json.dumps(st)
    kubectl(kube_binaries, op_fleet, "delete", "-n", NS, "membercluster/sneaky", "secret/sneaky-kubeconfig")


def test_version_reused_with_other_content_is_refused(op_fleet: Fleet, operator: Operator,
                                                       kube_binaries: Binaries) -> None:
    # The CRD refuses an in-place content change; deleting and re-creating the Blueprint
    # with other content under a published version is caught by the operator.
    kubectl(kube_binaries, op_fleet, "delete", "-n", NS, "blueprint/gpu-platform")
    marks = {m.name: m.audit.mark() for m in op_fleet.members}
    apply_blueprint(kube_binaries, op_fleet, blueprint("1.1.0", replicas=2))

    def refused() -> dict[str, Any] | None:
        conds = bp_status(op_fleet).get("conditions") or []
        return next((c for c in conds if c["type"] == "Valid" and c["reason"] == "VersionReused"), None)

    cond = wait_for(refused, timeout=30, what="VersionReused condition")
    assert "bump spec.version" in cond["message"]
    time.sleep(3)
    for m in op_fleet.members:
        assert m.audit.writes(marks[m.name], user=OPERATOR_USER) == [], "nothing reaches a member"
    events = kubectl(kube_binaries, op_fleet, "get", "events", "-n", NS, "-o", "json")
    assert any(e["reason"] == "VersionReused" for e in json.loads(events)["items"])
