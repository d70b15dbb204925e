"""Drift end to end: the real operator process against member-1 of the shared fleet.

One Blueprint of our own carries every mode at once — a Helm add-on (the KAI scheduler
stand-in) and a manifests add-on in ``remediate``, a ``notify`` add-on and a ``block``
add-on, plus a nodePool overlay that labels the H100 nodes — so one operator run covers all
scenarios. They run in order: a clean install stays clean through a full resync; then
changes made the way people make them (kubectl patch / delete / scale / label, helm
uninstall) by a minted identity are detected, handled per mode and reported; finally the
member's API server is stopped and started, and the operator itself restarted, and drift
made around that is still found. Everything created here is removed at the end.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml
from drift_scenario import (
    REPLICAS_OWNED_BY_AUTOSCALER,
    RESYNC,
    Member,
    as_alice,
    entries,
    entry,
    install_crds,
    kubectl,
    mc_status,
    member_core,
    operator_process,
    register,
    remove_from_management,
    remove_from_member,
    report,
    run,
    scheduler_addon,
    tenant_manifests,
)
from kubernetes import client

from blueprintd.devfleet.binaries import Binaries
from blueprintd.devfleet.demo import OPERATOR_USER
from blueprintd.devfleet.fleet import Fleet
from blueprintd.devfleet.testing import OperatorProcess, unique_suffix, wait_for

pytestmark = pytest.mark.fleet


@dataclass
class Env(Member):
    bp: str
    kai_ns: str
    tenant_ns: str
    release: str
    label: str
    operator: OperatorProcess


def blueprint(env: Env) -> dict[str, Any]:
    def cm(name: str, data: dict[str, str]) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}

    return {
        "apiVersion": "blueprintd.io/v1alpha1",
        "kind": "Blueprint",
        "metadata": {"name": env.bp, "namespace": env.ns},
        "spec": {
            "version": "1.0.0",
            "clusterSelector": {"matchLabels": {"drift-test": env.uid}},
            "onUnselect": "Prune",
            "addons": [
                scheduler_addon(env.kai_ns, env.release),
                {
                    "name": "tenant",
                    "namespace": env.tenant_ns,
                    "manifests": [
                        cm("tenant-config", {"mode": "strict"}),
                        *tenant_manifests(),
                    ],
                    # replicas belong to an autoscaler
                    "drift": REPLICAS_OWNED_BY_AUTOSCALER,
                    "readiness": {"timeoutSeconds": 60},
                },
                {
                    "name": "observed",
                    "namespace": env.tenant_ns,
                    "dependsOn": ["tenant"],
                    "manifests": [cm("observed-config", {"level": "info"})],
                    "drift": {"mode": "notify"},
                },
                {
                    "name": "guarded",
                    "namespace": env.tenant_ns,
                    "dependsOn": ["tenant"],
                    "manifests": [cm("guarded-config", {"quota": "8"})],
                    "drift": {"mode": "block"},
                },
            ],
            "overlays": [
                {
                    "name": "mark-mig-pools",
                    "scope": "nodePool",
                    "when": "pool.migCapable",
                    "nodeLabels": {env.label: "all-1g.10gb"},
                }
            ],
        },
    }


def h100_nodes(env: Env) -> list[str]:
    return [n for n in env.member.nodes if "-h100-" in n]


@pytest.fixture(scope="module")
def env(
    fleet: Fleet, kube_binaries: Binaries, chart_repo: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Env]:
    uid = unique_suffix()
    member = fleet.members[0]
    ns = f"drift-{uid}"
    e = Env(
        fleet=fleet, bins=kube_binaries, member=member, uid=uid, ns=ns, bp=f"drift-{uid}",
        alice=fleet.mint_kubeconfig(member.name, f"alice-{uid}", ["system:masters"]),
        kai_ns=f"kai-{uid}", tenant_ns=f"tenant-{uid}", release=f"kai-{uid}",
        label=f"drift.blueprintd.io/mig-{uid}",
        operator=operator_process(fleet, kube_binaries, chart_repo, ns,
                                  tmp_path_factory.mktemp("drift-operator") / "operator.log"),
    )
    install_crds(e)
    register(e, {"drift-test": uid})
    e.operator.start()
    try:
        kubectl(e, fleet.management.kubeconfig, "apply", "-f", "-", stdin=yaml.safe_dump(blueprint(e)))

        def ready() -> bool:
            st = mc_status(e)
            return any(p["blueprint"] == e.bp and p["state"] == "Ready" for p in st.get("blueprints") or [])

        try:
            wait_for(ready, timeout=120, interval=0.5, what="the blueprint to be applied")
            # The monitor took over: report created, the block add-on's object and the namespace
            # it lives in (deleting that would delete the object) protected.
            wait_for(lambda: ((report(e) or {}).get("status") or {}).get("summary", {}).get("protected") == 2,
                     timeout=30, interval=0.2, what="the DriftReport with the protected object")
        except AssertionError:
            raise AssertionError(f"{mc_status(e)}\n--- operator log ---\n{e.operator.tail()}") from None
        yield e
    finally:
        e.operator.stop()
        remove_from_management(e, [e.bp])
        remove_from_member(e, [e.bp], [(e.release, e.kai_ns)], [e.kai_ns, e.tenant_ns], e.label)


# --- scenarios, in order ---------------------------------------------------------------------


def test_clean_install_has_no_drift_after_a_full_resync(env: Env) -> None:
    mark = env.member.audit.mark()
    mgmt_mark = env.fleet.management.audit.mark()
    time.sleep(RESYNC * 1.1 + 1.5)  # at least one full resync of every stream
    assert entries(env) == []
    assert mc_status(env)["drift"] == {"open": 0, "remediated": 0, "notified": 0, "blocked": 0, "protected": 2}
    # Watching costs no writes: neither the member nor the report is written while nothing changes.
    assert env.member.audit.writes(mark, user=OPERATOR_USER) == []
    report_writes = [w for w in env.fleet.management.audit.writes(mgmt_mark) if w.resource == "driftreports"]
    assert report_writes == []
    out = run([sys.executable, "-m", "blueprintd", "drift", "--kubeconfig", str(env.fleet.management.kubeconfig),
               "-n", env.ns, "-o", "json"], check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads(out.stdout)["open"] == 0


def test_remediate_restores_what_people_change(env: Env) -> None:
    core = member_core(env)
    apps = client.AppsV1Api(env.member.api_client())

    # 1. A field of a Deployment the Helm release rendered.
    as_alice(env, "-n", env.kai_ns, "patch", "deployment", "kai-scheduler", "--type=json",
             "-p", '[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"evil/kai:latest"}]')
    wait_for(lambda: apps.read_namespaced_deployment("kai-scheduler", env.kai_ns).spec.template.spec.containers[0]
             .image != "evil/kai:latest", timeout=20, what="the Helm-rendered Deployment to be restored")
    e = wait_for(lambda: entry(env, "Deployment", "kai-scheduler", "spec.template.spec.containers[0].image",
                               action="remediated", resolvedAt=...), timeout=20, what="a remediated report entry")
    assert e["actual"] == "evil/kai:latest" and e["manager"] == "kubectl-patch" and e["addon"] == "scheduler"
    assert e["pointer"] == "/spec/template/spec/containers/0/image" and e["reason"] == "changed"

    # 2. A deleted NetworkPolicy is recreated.
    as_alice(env, "-n", env.tenant_ns, "delete", "networkpolicy", "deny-ingress")
    wait_for(lambda: entry(env, "NetworkPolicy", "deny-ingress", ".", reason="deleted", action="remediated",
                           resolvedAt=...), timeout=20, what="the NetworkPolicy to be recreated")
    net = client.NetworkingV1Api(env.member.api_client())
    assert net.read_namespaced_network_policy("deny-ingress", env.tenant_ns).spec.policy_types == ["Ingress"]

    # 3. Scaling a Deployment whose spec.replicas is ignored is not drift.
    as_alice(env, "-n", env.tenant_ns, "scale", "deployment", "inference", "--replicas=3")
    as_alice(env, "-n", env.tenant_ns, "annotate", "deployment", "inference", "autoscaler/at=now")

    # 4. A release uninstalled out of band is installed again.
    run([str(env.bins.helm), "--kubeconfig", str(env.alice), "uninstall", env.release, "-n", env.kai_ns])
    wait_for(lambda: entry(env, "HelmRelease", env.release, "release", reason="release-missing",
                           action="remediated", resolvedAt=...), timeout=40, what="the release to be reinstalled")
    status = json.loads(run([str(env.bins.helm), "--kubeconfig", str(env.member.kubeconfig), "status",
                             env.release, "-n", env.kai_ns, "-o", "json"]).stdout)
    assert status["info"]["status"] == "deployed"

    # 5. A node label the nodePool overlay sets is put back.
    node = h100_nodes(env)[0]
    as_alice(env, "label", "node", node, f"{env.label}-")
    wait_for(lambda: core.read_node(node).metadata.labels.get(env.label) == "all-1g.10gb", timeout=20,
             what="the node label to be restored")
    e = wait_for(lambda: entry(env, "Node", node, f"metadata.labels.{env.label}", reason="label-removed",
                               action="remediated"), timeout=20, what="the node label entry")
    assert e["expected"] == "all-1g.10gb" and e.get("actual") is None

    assert apps.read_namespaced_deployment("inference", env.tenant_ns).spec.replicas == 3
    assert entry(env, "Deployment", "inference") is None
    # The node entry resolves once the restored label is seen, and the summary in the
    # MemberCluster status follows the report's next write: both a moment after "remediated".
    try:
        st = wait_for(lambda: (d := mc_status(env)["drift"])["open"] == 0 and d, timeout=20,
                      what="no open drift in the MemberCluster status")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; open entries: {[e for e in entries(env) if not e.get('resolvedAt')]}") from None
    assert st["remediated"] >= 4, st


def test_notify_reports_and_emits_an_event_but_does_not_restore(env: Env) -> None:
    core = member_core(env)
    as_alice(env, "-n", env.tenant_ns, "patch", "configmap", "observed-config", "--type=merge",
             "-p", '{"data":{"level":"debug"}}')
    e = wait_for(lambda: entry(env, "ConfigMap", "observed-config", "data.level", action="notified"),
                 timeout=20, what="a notified entry")
    assert (e["expected"], e["actual"], e["manager"], e["mode"]) == ("info", "debug", "kubectl-patch", "notify")
    assert e.get("resolvedAt") is None

    def drift_event() -> dict[str, Any] | None:
        evs = client.CoreV1Api(env.fleet.management.api_client()).list_namespaced_event(env.ns).items
        return next(({"reason": ev.reason, "message": ev.message} for ev in evs
                     if ev.reason == "DriftDetected" and "observed-config" in (ev.message or "")), None)

    ev = wait_for(drift_event, timeout=20, what="a DriftDetected event on the MemberCluster")
    assert "data.level" in ev["message"] and "kubectl-patch" in ev["message"]
    time.sleep(7)  # two member reconciles and a full resync: nothing puts the value back
    assert core.read_namespaced_config_map("observed-config", env.tenant_ns).data == {"level": "debug"}
    assert mc_status(env)["drift"]["open"] == 1
    out = run([sys.executable, "-m", "blueprintd", "drift", "--kubeconfig", str(env.fleet.management.kubeconfig),
               "-n", env.ns, "--cluster", env.cluster, "-o", "json"], check=False)
    assert out.returncode == 1, "open drift makes `blueprintd drift` fail"
    [opened] = [x for c in json.loads(out.stdout)["clusters"] for x in c["entries"] if not x.get("resolvedAt")]
    assert opened["patch"] == [{"op": "replace", "path": "/data/level", "value": "info"}]
    plan = run([sys.executable, "-m", "blueprintd", "plan", env.bp, "--cluster", env.cluster, "--kubeconfig",
                str(env.fleet.management.kubeconfig), "-n", env.ns, "-o", "json", "--helm", str(env.bins.helm)],
               check=False)
    assert plan.returncode == 0, plan.stdout + plan.stderr  # nothing to apply: the notify drift is held
    held = json.loads(plan.stdout)["held"]
    assert [h["target"] for h in held] == [f"v1|ConfigMap|{env.tenant_ns}|observed-config"]
    # Put back by hand: the entry is resolved.
    as_alice(env, "-n", env.tenant_ns, "patch", "configmap", "observed-config", "--type=merge",
             "-p", '{"data":{"level":"info"}}')
    wait_for(lambda: entry(env, "ConfigMap", "observed-config", "data.level", resolvedAt=...), timeout=20,
             what="the notify entry to resolve")


def test_block_refuses_changes_at_the_member_api_server(env: Env) -> None:
    rep = report(env) or {}
    assert {"kind": "ConfigMap", "name": "guarded-config", "namespace": env.tenant_ns, "apiVersion": "v1"} in (
        rep["status"]["protected"])
    edit = as_alice(env, "-n", env.tenant_ns, "patch", "configmap", "guarded-config", "--type=merge",
                    "-p", '{"data":{"quota":"64"}}', check=False)
    assert edit.returncode != 0
    assert "is managed by Blueprint" in edit.stderr and "drift mode block" in edit.stderr, edit.stderr
    assert f"alice-{env.uid} may not UPDATE" in edit.stderr
    delete = as_alice(env, "-n", env.tenant_ns, "delete", "configmap", "guarded-config", check=False)
    assert delete.returncode != 0 and "drift mode block" in delete.stderr
    unlabel = as_alice(env, "-n", env.tenant_ns, "label", "configmap", "guarded-config",
                       "blueprintd.io/drift-mode-", check=False)
    assert unlabel.returncode != 0, "the protection cannot be removed either"
    assert member_core(env).read_namespaced_config_map("guarded-config", env.tenant_ns).data == {"quota": "8"}
    assert entry(env, "ConfigMap", "guarded-config") is None
    # Other objects in the namespace stay writable.
    as_alice(env, "-n", env.tenant_ns, "create", "configmap", f"scratch-{env.uid}", "--from-literal=a=b")


def test_drift_is_found_after_the_member_or_the_operator_comes_back(env: Env) -> None:
    core = member_core(env)
    # The member API server goes away and comes back; the changes land right after it is back,
    # before any resync: the watches reconnect, relist and see them. (A remediate-mode change
    # may be put back by the periodic reconcile first; a notify-mode one must be reported.)
    env.fleet.stop_cluster(env.cluster)
    time.sleep(2)
    env.fleet.start_cluster(env.cluster)
    as_alice(env, "-n", env.tenant_ns, "patch", "configmap", "observed-config", "--type=merge",
             "-p", '{"data":{"level":"warn"}}')
    as_alice(env, "-n", env.tenant_ns, "patch", "configmap", "tenant-config", "--type=merge",
             "-p", '{"data":{"mode":"permissive"}}')
    wait_for(lambda: entry(env, "ConfigMap", "observed-config", "data.level", action="notified", actual="warn",
                           resolvedAt=None), timeout=60, interval=0.2, what="drift made after the reconnect")
    wait_for(lambda: core.read_namespaced_config_map("tenant-config", env.tenant_ns).data == {"mode": "strict"},
             timeout=30, interval=0.2, what="the remediate-mode change to be restored")
    assert "Traceback" not in env.operator.tail()

    # The operator is down while someone edits; the restarted operator finds it on its first list.
    env.operator.stop()
    as_alice(env, "-n", env.tenant_ns, "patch", "configmap", "observed-config", "--type=merge",
             "-p", '{"data":{"level":"trace"}}')
    first_seen_before = {(e["object"]["name"], e["path"]): e["firstSeen"] for e in entries(env)}
    env.operator.start()
    e = wait_for(lambda: entry(env, "ConfigMap", "observed-config", "data.level", actual="trace",
                               action="notified", resolvedAt=None),
                 timeout=60, interval=0.3, what="drift made while the operator was down")
    assert e["manager"] == "kubectl-patch"
    # The history survived the restart: it is kept in the DriftReport, not in operator memory.
    kept = {(x["object"]["name"], x["path"]): x["firstSeen"] for x in entries(env)}
    image = ("kai-scheduler", "spec.template.spec.containers[0].image")
    assert kept[image] == first_seen_before[image]
    as_alice(env, "-n", env.tenant_ns, "patch", "configmap", "observed-config", "--type=merge",
             "-p", '{"data":{"level":"info"}}')
    wait_for(lambda: mc_status(env)["drift"]["open"] == 0, timeout=20, what="no open drift left")


def test_a_blueprint_that_stops_selecting_the_cluster_is_pruned_from_it(env: Env) -> None:
    """``onUnselect: Prune``: relabelling the MemberCluster out of the selector removes all the
    Blueprint installed there (the block-mode object too: the operator is exempt), its node
    labels and its admission policy, and drift monitoring of it ends."""
    kubectl(env, env.fleet.management.kubeconfig, "-n", env.ns, "label", "membercluster", env.cluster,
            "drift-test-")
    core = member_core(env)

    def gone() -> bool:
        st = mc_status(env)
        return not any(p["blueprint"] == env.bp for p in st.get("blueprints") or [])

    wait_for(gone, timeout=60, interval=0.5, what="the Blueprint to leave the MemberCluster status")
    status = run([str(env.bins.helm), "--kubeconfig", str(env.member.kubeconfig), "status", env.release,
                  "-n", env.kai_ns], check=False)
    assert status.returncode != 0, "the release was uninstalled"
    names = {c.metadata.name for c in core.list_namespaced_config_map(env.tenant_ns).items}
    assert not names & {"tenant-config", "observed-config", "guarded-config"}, names
    for node in env.member.nodes:
        assert env.label not in (core.read_node(node).metadata.labels or {})
    policies = kubectl(env, env.member.kubeconfig, "get", "validatingadmissionpolicies", "-o", "name")
    assert f"blueprintd-drift-block-{env.bp}" not in policies
    wait_for(lambda: ((report(env) or {}).get("status") or {}).get("summary", {}).get("protected") == 0,
             timeout=20, what="no object left under protection")
    evs = client.CoreV1Api(env.fleet.management.api_client()).list_namespaced_event(env.ns).items
    assert any(ev.reason == "BlueprintUnselected" and "removed everything" in (ev.message or "") for ev in evs)
