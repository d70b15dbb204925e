"""Drift modes end to end: the same five changes under ``notify`` and under ``block``.

Two Blueprints, identical but for ``spec.drift.mode``, each with a Helm add-on (the KAI
scheduler stand-in), a manifests add-on (a NetworkPolicy and a Deployment whose replicas an
autoscaler owns) and a nodePool overlay labelling every GPU node. ``notify`` goes to
member-2, which the operator reaches through a TCP proxy the test can cut; ``block`` to
member-1. Then alice edits a Deployment the release rendered, deletes the NetworkPolicy,
scales the autoscaled Deployment, uninstalls the release and removes a node label:

* notify: every change is reported (who, what, expected/actual) and nothing is put back,
  until ``blueprintd drift restore`` asks for it; changes made while the network to the
  member is cut are found once it is back;
* block: the member's API server refuses every change but the scale, and nothing is drift.

The remediate mode of the same changes is covered by ``test_drift_fleet.py``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml
from drift_scenario import (
    REPLICAS_OWNED_BY_AUTOSCALER,
    Member,
    addon_state,
    as_alice,
    blueprintd,
    entry,
    helm_as_alice,
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
from blueprintd.devfleet.fleet import Fleet
from blueprintd.devfleet.testing import OperatorProcess, TcpProxy, or_none, unique_suffix, wait_for

pytestmark = pytest.mark.fleet

IMAGE_PATH = "spec.template.spec.containers[0].image"


@dataclass
class ModeEnv(Member):
    mode: str
    bp: str
    kai_ns: str
    tenant_ns: str
    release: str
    label: str

    def gpu_nodes(self) -> list[str]:
        return [n for n in self.member.nodes if "-cpu-" not in n]


@dataclass
class Modes:
    notify: ModeEnv
    block: ModeEnv
    operator: OperatorProcess
    proxy: TcpProxy  # between the operator and member-2 (notify)


def blueprint(env: ModeEnv) -> dict[str, Any]:
    return {
        "apiVersion": "blueprintd.io/v1alpha1",
        "kind": "Blueprint",
        "metadata": {"name": env.bp, "namespace": env.ns},
        "spec": {
            "version": "1.0.0",
            "clusterSelector": {"matchLabels": {"drift-modes": env.uid, "drift-mode": env.mode}},
            "drift": {"mode": env.mode},
            "addons": [
                scheduler_addon(env.kai_ns, env.release),
                {
                    "name": "tenant",
                    "namespace": env.tenant_ns,
                    "manifests": tenant_manifests(),
                    "drift": REPLICAS_OWNED_BY_AUTOSCALER,
                    "readiness": {"timeoutSeconds": 60},
                },
            ],
            "overlays": [
                {"name": "mark-gpu-pools", "scope": "nodePool", "when": "pool.gpuCount > 0",
                 "nodeLabels": {env.label: "gpu"}},
            ],
        },
    }


def _env(fleet: Fleet, bins: Binaries, index: int, mode: str, uid: str, ns: str) -> ModeEnv:
    member = fleet.members[index]
    return ModeEnv(
        fleet=fleet, bins=bins, member=member, uid=uid, ns=ns, mode=mode, bp=f"{mode}-{uid}",
        alice=fleet.mint_kubeconfig(member.name, f"alice-{uid}", ["system:masters"]),
        kai_ns=f"kai-{mode}-{uid}", tenant_ns=f"tenant-{mode}-{uid}", release=f"kai-{mode}-{uid}",
        label=f"drift.blueprintd.io/pool-{uid}",
    )


@pytest.fixture(scope="module")
def modes(
    fleet: Fleet, kube_binaries: Binaries, chart_repo: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Modes]:
    uid = unique_suffix()
    ns = f"drift-modes-{uid}"
    notify = _env(fleet, kube_binaries, 1, "notify", uid, ns)
    block = _env(fleet, kube_binaries, 0, "block", uid, ns)
    proxy = TcpProxy.to(notify.member.server)
    m = Modes(notify, block, operator_process(fleet, kube_binaries, chart_repo, ns,
                                              tmp_path_factory.mktemp("modes-operator") / "operator.log"), proxy)
    install_crds(notify)
    register(notify, {"drift-modes": uid, "drift-mode": "notify"}, server=proxy.url)
    register(block, {"drift-modes": uid, "drift-mode": "block"})
    m.operator.start()
    try:
        for env in (notify, block):
            kubectl(env, fleet.management.kubeconfig, "apply", "-f", "-", stdin=yaml.safe_dump(blueprint(env)))
        try:
            for env in (notify, block):
                wait_for(lambda env=env: any(p["blueprint"] == env.bp and p["state"] == "Ready"  # type: ignore[misc]
                                             for p in mc_status(env).get("blueprints") or []),
                         timeout=150, interval=0.5, what=f"the {env.mode} blueprint to be applied")
                wait_for(lambda env=env: report(env), timeout=30, what=f"the DriftReport of {env.cluster}")
            # block: the release's workloads, its record and the manifests are under protection
            wait_for(lambda: len((report(block) or {}).get("status", {}).get("protected") or []) >= 4,
                     timeout=30, interval=0.2, what="the block-mode objects to be protected")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- operator log ---\n{m.operator.tail()}") from None
        yield m
    finally:
        m.operator.stop()
        proxy.close()
        remove_from_management(notify, [notify.bp, block.bp])
        for env in (notify, block):
            remove_from_member(env, [env.bp], [(env.release, env.kai_ns)], [env.kai_ns, env.tenant_ns], env.label)


def _image(env: ModeEnv) -> str:
    apps = client.AppsV1Api(env.member.api_client())
    return str(apps.read_namespaced_deployment("kai-scheduler", env.kai_ns).spec.template.spec.containers[0].image)


def _release_status(env: ModeEnv) -> str | None:
    out = run([str(env.bins.helm), "--kubeconfig", str(env.member.kubeconfig), "status", env.release,
               "-n", env.kai_ns, "-o", "json"], check=False)
    return json.loads(out.stdout)["info"]["status"] if out.returncode == 0 else None


def _netpol(env: ModeEnv) -> Any:
    net = client.NetworkingV1Api(env.member.api_client())
    return or_none(lambda: net.read_namespaced_network_policy("deny-ingress", env.tenant_ns))


def _drift_exit(env: ModeEnv) -> int:
    return blueprintd("drift", "--kubeconfig", str(env.fleet.management.kubeconfig), "-n", env.ns,
                      "--cluster", env.cluster, "-o", "json").returncode


# --- notify ------------------------------------------------------------------------------------


def test_notify_reports_every_change_and_restores_nothing(modes: Modes) -> None:
    env = modes.notify
    node = env.gpu_nodes()[0]
    original = _image(env)
    as_alice(env, "-n", env.kai_ns, "patch", "deployment", "kai-scheduler", "--type=json",
             "-p", '[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"evil/kai:latest"}]')
    as_alice(env, "-n", env.tenant_ns, "delete", "networkpolicy", "deny-ingress")
    as_alice(env, "-n", env.tenant_ns, "scale", "deployment", "inference", "--replicas=4")
    as_alice(env, "label", "node", node, f"{env.label}-")

    e = wait_for(lambda: entry(env, "Deployment", "kai-scheduler", IMAGE_PATH, action="notified"), timeout=20,
                 what="the edited Helm-rendered Deployment to be reported")
    assert (e["expected"], e["actual"], e["manager"], e["addon"]) == (original, "evil/kai:latest",
                                                                       "kubectl-patch", "scheduler")
    e = wait_for(lambda: entry(env, "NetworkPolicy", "deny-ingress", ".", reason="deleted", action="notified"),
                 timeout=20, what="the deleted NetworkPolicy to be reported")
    e = wait_for(lambda: entry(env, "Node", node, f"metadata.labels.{env.label}", reason="label-removed",
                               action="notified"), timeout=20, what="the removed node label to be reported")
    assert e["expected"] == "gpu" and e.get("actual") is None

    # Uninstalling the release out of band, last: its objects go with it.
    helm_as_alice(env, "uninstall", env.release, "-n", env.kai_ns)
    wait_for(lambda: entry(env, "HelmRelease", env.release, "release", reason="release-missing",
                           action="notified", resolvedAt=None), timeout=20, what="the release to be reported")

    # Several member reconciles and a full resync later, nothing was put back; the add-ons
    # whose objects are gone say why they are not ready, without waiting for a timeout.
    time.sleep(8)
    assert _netpol(env) is None
    assert _release_status(env) is None
    assert env.label not in (member_core(env).read_node(node).metadata.labels or {})
    wait_for(lambda: addon_state(env, "tenant") == "Drifted" and addon_state(env, "scheduler") == "Drifted",
             timeout=20, what=f"the add-ons to show Drifted: {mc_status(env).get('addons')}")
    tenant = next(a for a in mc_status(env)["addons"] if a["name"] == "tenant")
    assert "drift mode notify" in tenant["message"] and "blueprintd drift restore" in tenant["message"]
    apps = client.AppsV1Api(env.member.api_client())
    assert apps.read_namespaced_deployment("inference", env.tenant_ns).spec.replicas == 4
    assert entry(env, "Deployment", "inference") is None, "ignored replicas are not drift"
    # Open: the NetworkPolicy, the node label and the release (the edited Deployment went with it).
    assert mc_status(env)["drift"]["open"] == 3, report(env)
    assert _drift_exit(env) == 1

    def drift_events() -> list[str]:
        evs = client.CoreV1Api(env.fleet.management.api_client()).list_namespaced_event(env.ns).items
        return [ev.message or "" for ev in evs if ev.reason == "DriftDetected"]

    wait_for(lambda: any("deny-ingress" in m for m in drift_events()), timeout=10, what="DriftDetected events")


def test_notify_drift_made_while_the_network_is_cut_is_found_after_it_is_back(modes: Modes) -> None:
    env = modes.notify
    modes.proxy.cut()  # the operator loses the member; alice still reaches it directly
    try:
        as_alice(env, "-n", env.tenant_ns, "set", "image", "deployment/inference", "server=registry.local/infer:hacked")
        time.sleep(3)
        assert entry(env, "Deployment", "inference") is None, "no way to see it while cut off"
    finally:
        modes.proxy.restore()
    e = wait_for(lambda: entry(env, "Deployment", "inference", IMAGE_PATH, action="notified"), timeout=60,
                 interval=0.3, what="drift made during the cut to be found after reconnecting")
    assert (e["expected"], e["actual"]) == ("registry.local/infer:1", "registry.local/infer:hacked")
    assert e["manager"] == "kubectl-set"


def test_drift_restore_puts_back_what_notify_held(modes: Modes) -> None:
    env = modes.notify
    out = blueprintd("drift", "restore", "--cluster", env.cluster, "--kubeconfig",
                     str(env.fleet.management.kubeconfig), "-n", env.ns, "--wait", "120")
    assert out.returncode == 0, out.stdout + out.stderr
    assert _release_status(env) == "deployed"
    assert _netpol(env) is not None
    assert _image(env) != "evil/kai:latest"
    apps = client.AppsV1Api(env.member.api_client())
    inference = apps.read_namespaced_deployment("inference", env.tenant_ns)
    assert inference.spec.template.spec.containers[0].image == "registry.local/infer:1"
    assert inference.spec.replicas == 4, "the restore applies owned fields only: replicas stay the autoscaler's"
    for node in env.gpu_nodes():
        assert member_core(env).read_node(node).metadata.labels.get(env.label) == "gpu"
    wait_for(lambda: mc_status(env)["drift"]["open"] == 0, timeout=30, what="every notify entry to resolve")
    wait_for(lambda: addon_state(env, "tenant") == "Ready" and addon_state(env, "scheduler") == "Ready",
             timeout=30, what="the add-ons to be Ready again")
    assert _drift_exit(env) == 0
    unknown = blueprintd("drift", "restore", "--cluster", "no-such-cluster", "--kubeconfig",
                         str(env.fleet.management.kubeconfig), "-n", env.ns)
    assert unknown.returncode == 2 and "no MemberCluster" in unknown.stderr


# --- block -------------------------------------------------------------------------------------


def test_block_refuses_every_change_but_the_autoscaler_s(modes: Modes) -> None:
    env = modes.block
    node = env.gpu_nodes()[0]
    original = _image(env)
    refused = [
        as_alice(env, "-n", env.kai_ns, "patch", "deployment", "kai-scheduler", "--type=json", "-p",
                 '[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"evil/kai:latest"}]',
                 check=False),
        as_alice(env, "-n", env.tenant_ns, "delete", "networkpolicy", "deny-ingress", check=False),
        as_alice(env, "label", "node", node, f"{env.label}-", check=False),
    ]
    for proc in refused:
        assert proc.returncode != 0, proc.stdout
        assert "drift mode block" in proc.stderr and "blueprintd" in proc.stderr, proc.stderr
    assert f"alice-{env.uid} may not UPDATE" in refused[0].stderr
    # helm uninstall is refused at the release record and at every protected object.
    uninstall = helm_as_alice(env, "uninstall", env.release, "-n", env.kai_ns, check=False)
    assert uninstall.returncode != 0 and "failed to delete release" in uninstall.stderr, uninstall.stderr
    # Scaling goes through the scale subresource, which stays writable for autoscalers.
    as_alice(env, "-n", env.tenant_ns, "scale", "deployment", "inference", "--replicas=2")

    time.sleep(5)
    assert _image(env) == original
    assert _netpol(env) is not None
    assert _release_status(env) == "deployed"
    assert member_core(env).read_node(node).metadata.labels.get(env.label) == "gpu"
    st = mc_status(env)
    assert st["drift"]["open"] == 0, report(env)
    assert addon_state(env, "scheduler") == "Ready" and addon_state(env, "tenant") == "Ready"
    assert _drift_exit(env) == 0


def test_orphaned_objects_are_left_in_place_and_writable(modes: Modes) -> None:
    """``onUnselect`` defaults to Orphan: the block Blueprint stops selecting member-1, and its
    add-ons stay running but are no longer guarded or restored."""
    env = modes.block
    kubectl(env, env.fleet.management.kubeconfig, "-n", env.ns, "label", "membercluster", env.cluster,
            "drift-mode-")
    wait_for(lambda: not any(p["blueprint"] == env.bp for p in mc_status(env).get("blueprints") or []),
             timeout=60, interval=0.5, what="the Blueprint to leave the MemberCluster status")
    assert _release_status(env) == "deployed" and _netpol(env) is not None
    wait_for(lambda: as_alice(env, "-n", env.tenant_ns, "delete", "networkpolicy", "deny-ingress",
                              check=False).returncode == 0, timeout=20, what="the policy to be lifted")
    time.sleep(4)
    assert _netpol(env) is None, "no longer managed: not restored"
    assert entry(env, "NetworkPolicy", "deny-ingress", reason="deleted") is None
