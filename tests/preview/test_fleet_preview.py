"""``blueprintd diff`` on the demo fleet: the preview of 1.0.0 → 1.1.0 is what the rollout then does.

A private fleet (the demo's three members) with the real operator. The scenario runs in order:
the first install is previewed (every cluster newly selected), 1.0.0 rolls out, a 1.1.0 edited
in a checkout is previewed with the operator stopped (so the audit logs prove the preview wrote
nothing), then rolled out; afterwards ``plan`` has nothing left to do on any cluster, a second
``diff`` of the same files finds no change, and every write the preview predicted was made.
The operator's /metrics also serves every metric the chart's alerts and dashboard query.
"""

from __future__ import annotations

import copy
import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from blueprintd.devfleet.binaries import Binaries
from blueprintd.devfleet.demo import DEMO_FLEET, OPERATOR_USER, mirror_flags, register_members
from blueprintd.devfleet.fleet import Fleet
from blueprintd.devfleet.standins import StandIns
from blueprintd.devfleet.testing import OperatorProcess, running_fleet, wait_for

pytestmark = pytest.mark.fleet

REPO = Path(__file__).resolve().parents[2]
NS = "blueprintd-system"
GROUP, VERSION = "blueprintd.io", "v1alpha1"
PINNED = "h100-mig"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def blueprint(version: str) -> dict[str, Any]:
    """The default blueprint with test-friendly rollout settings; 1.1.0 changes values, objects, labels."""
    doc = yaml.safe_load((REPO / "blueprints" / "gpu-platform" / "blueprint.yaml").read_text())
    doc["spec"]["version"] = version
    doc["spec"]["rollout"] = {"canary": {"count": 1}, "maxUnavailable": 1, "failurePolicy": "pause",
                              "healthTimeoutSeconds": 180}
    for addon in doc["spec"]["addons"]:
        if addon.get("readiness"):
            addon["readiness"]["timeoutSeconds"] = 90
    if version == "1.1.0":
        doc["spec"]["parameters"]["timeSlicingReplicas"]["default"] = 8
        queues = next(a for a in doc["spec"]["addons"] if a["name"] == "kai-queues")["manifests"]
        extra = copy.deepcopy(next(m for m in queues if m["metadata"]["name"] == "batch"))
        extra["metadata"]["name"] = "research"
        queues.append(extra)
        ts = next(o for o in doc["spec"]["overlays"] if o["name"] == "time-slicing")
        ts["nodeLabels"]["blueprintd.io/sharing"] = "time-slicing"
    return dict(doc)


class Env:
    def __init__(self, fleet: Fleet, bins: Binaries, chart_repo: str, tmp: Path) -> None:
        self.fleet, self.bins, self.chart_repo, self.tmp = fleet, bins, chart_repo, tmp
        self.metrics_port = free_port()
        args = [sys.executable, "-m", "blueprintd", "operator", "--kubeconfig", str(fleet.management.kubeconfig),
                "-n", NS, "--helm", str(bins.helm), "--metrics-port", str(self.metrics_port), "--member-resync", "2"]
        for m in mirror_flags(chart_repo):
            args += ["--chart-mirror", m]
        self.operator = OperatorProcess(args, tmp / "operator.log")

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        proc = subprocess.run([str(self.bins.kubectl), "--kubeconfig", str(self.fleet.management.kubeconfig), *args],
                              input=stdin, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        flags = ["--kubeconfig", str(self.fleet.management.kubeconfig), "-n", NS]
        if args[0] in ("diff", "plan"):
            flags += ["--helm", str(self.bins.helm)]
            for m in mirror_flags(self.chart_repo):
                flags += ["--chart-mirror", m]
        return subprocess.run([sys.executable, "-m", "blueprintd", *args, *flags], capture_output=True, text=True,
                              timeout=300)

    def diff(self, *args: str) -> tuple[int, dict[str, Any]]:
        done = self.cli("diff", *args, "-o", "json")
        assert done.returncode in (0, 1), done.stdout + done.stderr
        return done.returncode, json.loads(done.stdout)

    def write_checkout(self, doc: dict[str, Any]) -> Path:
        d = self.tmp / f"checkout-{doc['spec']['version']}"
        d.mkdir(exist_ok=True)
        (d / "blueprint.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
        return d

    def rollout(self) -> dict[str, Any]:
        obj = client.CustomObjectsApi(self.fleet.management.api_client()).get_namespaced_custom_object(
            GROUP, VERSION, NS, "blueprints", "gpu-platform")
        return dict((obj.get("status") or {}).get("rollout") or {})

    def wait_complete(self, version: str) -> None:
        def done() -> bool:
            ro = self.rollout()
            return ro.get("targetVersion") == version and ro.get("phase") == "Complete"

        wait_for(done, timeout=280, interval=1.0, what=f"rollout of {version}")

    def writes_quiet(self, seconds: float) -> None:
        """Wait until the operator made no write for ``seconds`` (the fleet converged)."""
        marks = {m.name: m.audit.mark() for m in self.fleet.members}
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            time.sleep(seconds)
            if not any(m.audit.writes(marks[m.name], user=OPERATOR_USER) for m in self.fleet.members):
                return
            marks = {m.name: m.audit.mark() for m in self.fleet.members}
        raise AssertionError("the operator kept writing to member clusters")


@pytest.fixture(scope="module")
def env(kube_binaries: Binaries, chart_repo: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    with running_fleet(tmp_path_factory.mktemp("previewfleet"), DEMO_FLEET, kube_binaries) as fleet:
        sim = StandIns(fleet)
        sim.start()
        e = Env(fleet, kube_binaries, chart_repo, tmp_path_factory.mktemp("preview"))
        try:
            e.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
            e.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
            register_members(fleet, kube_binaries, NS)
            e.operator.start()
            yield e
        finally:
            e.operator.stop()
            sim.stop()


def no_writes_while(e: Env, action: Any) -> Any:
    """Run ``action`` with the operator stopped; assert that nothing wrote to any cluster meanwhile."""
    e.operator.stop()
    member_marks = {m.name: m.audit.mark() for m in e.fleet.members}
    mgmt_mark = e.fleet.management.audit.mark()
    try:
        result = action()
    finally:
        member_writes = {m.name: m.audit.writes(member_marks[m.name], user=OPERATOR_USER) for m in e.fleet.members}
        mgmt_writes = [w for w in e.fleet.management.audit.writes(mgmt_mark) if w.namespace in (NS, "")]
        e.operator.start()
    assert all(not w for w in member_writes.values()), {k: [(w.verb, w.resource, w.name) for w in v]
                                                        for k, v in member_writes.items()}
    assert mgmt_writes == [], [(w.verb, w.resource, w.name, w.user) for w in mgmt_writes]
    return result


def test_first_install_preview_selects_every_cluster(env: Env) -> None:
    checkout = env.write_checkout(blueprint("1.0.0"))
    code, data = no_writes_while(env, lambda: env.diff(str(checkout)))
    assert code == 1
    clusters = sorted(m.name for m in env.fleet.members)
    lines = {g["change"]: g["clusters"] for g in data["groups"]}
    assert lines["gpu-platform: newly selected"] == clusters
    assert lines["gpu-operator installed v25.10.0 (chart gpu-operator)"] == clusters
    assert all(m["versionTo"] == "1.0.0" and m["versionFrom"] is None for m in data["members"])
    assert sorted(m["why"] for m in data["members"]) == ["rollout wave 1 of 3 (canary)", "rollout wave 2 of 3",
                                                         "rollout wave 3 of 3"]


def test_first_install_rolls_out(env: Env) -> None:
    env.kubectl("apply", "-n", NS, "-f", str(env.tmp / "checkout-1.0.0" / "blueprint.yaml"))
    env.wait_complete("1.0.0")


# What the preview of 1.1.0 predicted, for the tests after it (they run in order on one fleet).
PREDICTED: dict[str, list[dict[str, Any]]] = {}


def test_preview_of_1_1_0(env: Env) -> None:
    env.kubectl("patch", "membercluster", PINNED, "-n", NS, "--type=merge",
                "-p", json.dumps({"spec": {"versionPins": [{"blueprint": "gpu-platform", "version": "1.0.0"}]}}))
    env.writes_quiet(5)
    checkout = env.write_checkout(blueprint("1.1.0"))
    code, data = no_writes_while(env, lambda: env.diff(str(checkout)))
    assert code == 1 and data["exitCode"] == 1
    moving = sorted(m.name for m in env.fleet.members if m.name != PINNED)
    lines = {g["change"]: g["clusters"] for g in data["groups"]}
    assert lines["gpu-platform 1.0.0 → 1.1.0"] == moving
    assert lines["kai-queues: Queue research added"] == moving
    assert lines["pool l4: label blueprintd.io/sharing: (unset) → time-slicing"] == moving  # both have L4 pools
    assert lines["gpu-operator values: devicePlugin.config.data.ts-l4 | sharing.timeSlicing.resources[0].replicas: "
                 "4 → 8"] == moving
    assert data["unchanged"] == [PINNED]
    pinned = next(m for m in data["members"] if m["cluster"] == PINNED)
    assert (pinned["versionTo"], pinned["why"]) == ("1.0.0", "pinned on the MemberCluster")
    predicted = {m["cluster"]: m["actions"] for m in data["members"]}
    assert predicted[PINNED] == []
    for name in moving:
        kinds = {a["kind"] for a in predicted[name]}
        assert kinds == {"helm-upgrade", "apply", "label-nodes"}, predicted[name]

    table = no_writes_while(env, lambda: env.cli("diff", str(checkout)))
    assert table.returncode == 1, table.stderr
    out = table.stdout
    assert f"2 clusters: {', '.join(moving)}" in out and "gpu-platform 1.0.0 → 1.1.0" in out
    assert "unchanged: 1 cluster: h100-mig" in out and "l4-inference" in out and "…" not in out

    PREDICTED.update(predicted)


def test_rollout_of_1_1_0_makes_the_predicted_writes(env: Env) -> None:
    assert PREDICTED, "runs after test_preview_of_1_1_0"
    predicted = PREDICTED
    checkout = env.tmp / "checkout-1.1.0"
    marks = {m.name: m.audit.mark() for m in env.fleet.members}
    env.kubectl("apply", "-n", NS, "-f", str(checkout / "blueprint.yaml"))
    env.wait_complete("1.1.0")
    env.writes_quiet(5)

    # Every write the preview predicted was made by the operator during the rollout ...
    for m in env.fleet.members:
        # create on *reviews (SelfSubjectReview: "who am I", sent when a session opens) stores nothing
        writes = [w for w in m.audit.writes(marks[m.name], user=OPERATOR_USER) if not w.resource.endswith("reviews")]
        if m.name == PINNED:
            assert writes == [], [(w.verb, w.resource, w.name) for w in writes]
            continue
        names = {(w.resource, w.name) for w in writes}
        for a in predicted[m.name]:
            # "HelmRelease ns/name", "Node name", objects "apiVersion|Kind|namespace|name"
            target = a["target"].split("|")[-1] if "|" in a["target"] else a["target"].split()[-1].split("/")[-1]
            if a["kind"] == "helm-upgrade":
                assert any(r == "secrets" and n.startswith(f"sh.helm.release.v1.{target}.") for r, n in names), a
            elif a["kind"] == "label-nodes":
                assert ("nodes", target) in names, a
            else:
                assert any(n == target for _r, n in names), a


@pytest.mark.parametrize("cluster", sorted(m.name for m in DEMO_FLEET.members))
def test_after_the_rollout_plan_has_nothing_left_to_do(env: Env, cluster: str) -> None:
    plan = env.cli("plan", "gpu-platform", "--cluster", cluster, "-o", "json")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert json.loads(plan.stdout)["version"] == ("1.0.0" if cluster == PINNED else "1.1.0")


def test_after_the_rollout_the_same_files_preview_as_no_change(env: Env) -> None:
    checkout = env.tmp / "checkout-1.1.0"
    code, again = env.diff(str(checkout))
    assert code == 0 and again["groups"] == [] and again["unchanged"] == sorted(m.name for m in env.fleet.members)


def test_after_the_rollout_the_published_version_previews_as_no_change(env: Env) -> None:
    code, published = env.diff("--version", "1.1.0", "--selector", "gpu=l4")
    assert code == 0 and [m["cluster"] for m in published["members"]] == ["l4-inference"]
    core = client.CoreV1Api(env.fleet.cluster("l4-inference").api_client())
    l4_nodes = [n for n in core.list_node().items if "-l4-" in n.metadata.name]
    assert l4_nodes and all(n.metadata.labels.get("blueprintd.io/sharing") == "time-slicing" for n in l4_nodes)


def test_operator_metrics_serve_every_metric_of_the_alerts_and_dashboard(env: Env) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    sys.path.insert(0, str(REPO / "tests" / "charts"))
    from test_monitoring import alert_metric_names

    def scrape() -> str | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{env.metrics_port}/metrics", timeout=5) as r:
                return str(r.read().decode())
        except OSError:
            return None

    text = wait_for(scrape, timeout=60, interval=1.0, what="the operator's /metrics")
    families = list(text_string_to_metric_families(text))
    # A labelled metric nothing has set yet is served as its family (HELP/TYPE) without samples:
    # count the series names such a family will have.
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "gauge": [""]}
    served = {s.name for f in families for s in f.samples}
    served |= {f.name + sfx for f in families for sfx in suffixes.get(f.type, [""])}
    wanted = alert_metric_names(env.bins.helm)
    assert wanted, "the chart's alerts and dashboard query operator metrics"
    assert wanted <= served, f"not served by the operator: {sorted(wanted - served)}"
    reachable = [s for f in families for s in f.samples
                 if s.name == "blueprintd_member_cluster_reachable"]
    assert {s.labels["cluster"]: s.value for s in reachable} == {m.name: 1.0 for m in env.fleet.members}
