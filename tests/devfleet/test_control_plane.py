"""A ``full`` member: Kubernetes' own controller-manager and scheduler, kwok as the kubelets.

What a user notices on a real cluster must happen here too, done by Kubernetes' code: Pods of
a Deployment are scheduled onto the simulated nodes and become Ready, DaemonSets land only on
the nodes their selector matches, Jobs complete so Helm hooks finish, deleting a namespace
removes it, service accounts exist, and every address the API server dials stays on loopback.
"""

from __future__ import annotations

import ipaddress
import itertools
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from blueprintd.devfleet.binaries import Binaries
from blueprintd.devfleet.fleet import ClusterHandle, Fleet
from blueprintd.devfleet.kwok import UNHEALTHY
from blueprintd.devfleet.standins import StandIns
from blueprintd.devfleet.testing import or_none, tcp_connections, temp_namespace, unique_name, wait_for

LOOPBACK = ipaddress.ip_network("127.0.0.0/8")


pytestmark = pytest.mark.fleet


@pytest.fixture
def ns(full_member: ClusterHandle) -> Iterator[str]:
    with temp_namespace(full_member, "cp") as name:
        yield name


@pytest.fixture
def api(full_member: ClusterHandle) -> Iterator[Any]:
    c = full_member.api_client()
    try:
        yield c
    finally:
        c.close()


def _pod_template(labels: dict[str, str], annotations: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"labels": labels, "annotations": annotations or {}},
        "spec": {"containers": [{"name": "main", "image": "registry.invalid/app:1"}], **spec},
    }


def _deployment(name: str, replicas: int, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": _pod_template(labels, annotations),
        },
    }


def test_components_run_and_the_default_service_account_is_real(full_fleet: Fleet, api: Any, ns: str) -> None:
    rows = {r["name"]: r for r in full_fleet.status()}
    member = rows["full-1"]
    assert member["ready"] and member["controlPlane"] == "full"
    assert member["components"] == {"kube-controller-manager": True, "kube-scheduler": True, "kwok": True}
    assert rows["management"]["components"] == {}, "the management cluster stays an API server"
    core = client.CoreV1Api(api)
    # The serviceaccount controller made "default" in the new namespace; ServiceAccount admission
    # then mounts its token into Pods, as on a cluster.
    # It is made moments after the namespace: not found until then (CI, 2026-12-01).
    wait_for(lambda: or_none(lambda: core.read_namespaced_service_account("default", ns)), timeout=30,
             what="default SA")
    body = _pod_template({"app": "p"})
    body["metadata"]["name"] = "p"
    pod = core.create_namespaced_pod(ns, body)
    assert pod.spec.service_account_name == "default"
    assert any(v.name.startswith("kube-api-access-") for v in pod.spec.volumes)


def test_deployment_pods_are_scheduled_run_and_get_loopback_ips(
    full_member: ClusterHandle, api: Any, ns: str
) -> None:
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    apps.create_namespaced_deployment(ns, _deployment("web", 3))
    dep = wait_for(
        lambda: (d := apps.read_namespaced_deployment("web", ns)).status.available_replicas == 3 and d,
        timeout=90,
        what="Deployment available through the real controllers",
    )
    assert any(c.type == "Available" and c.status == "True" for c in dep.status.conditions)
    pods = core.list_namespaced_pod(ns, label_selector="app=web").items
    assert len(pods) == 3
    node_names = set(full_member.nodes)
    for p in pods:
        assert p.spec.node_name in node_names, "bound by kube-scheduler to a simulated node"
        assert p.status.phase == "Running"
        assert ipaddress.ip_address(p.status.pod_ip) in ipaddress.ip_network(full_member.pod_cidr)
    # Garbage collection: deleting the Deployment removes its ReplicaSet and Pods.
    apps.delete_namespaced_deployment("web", ns)
    wait_for(
        lambda: not core.list_namespaced_pod(ns, label_selector="app=web").items,
        timeout=90,
        what="Pods garbage-collected and deleted by kwok",
    )


def test_gpu_daemonset_lands_only_on_gpu_nodes(full_member: ClusterHandle, api: Any, ns: str) -> None:
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    labels = {"app": "gpu-agent"}
    body = {
        "metadata": {"name": "gpu-agent"},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": _pod_template(labels, nodeSelector={"nvidia.com/gpu.present": "true"}),
        },
    }
    apps.create_namespaced_daemon_set(ns, body)
    gpu_nodes = {n.metadata.name for n in core.list_node(label_selector="nvidia.com/gpu.present=true").items}
    assert len(gpu_nodes) == 3 and len(full_member.nodes) == 4
    ds = wait_for(
        lambda: (d := apps.read_namespaced_daemon_set("gpu-agent", ns)).status.number_ready == 3 and d,
        timeout=90,
        what="DaemonSet ready on the GPU nodes",
    )
    assert ds.status.desired_number_scheduled == 3
    placed = {p.spec.node_name for p in core.list_namespaced_pod(ns, label_selector="app=gpu-agent").items}
    assert placed == gpu_nodes


def test_unhealthy_annotation_keeps_pods_unready_or_fails_them(api: Any, ns: str) -> None:
    apps, batch = client.AppsV1Api(api), client.BatchV1Api(api)
    apps.create_namespaced_deployment(ns, _deployment("stuck", 2, {UNHEALTHY: "unready"}))
    job = {
        "metadata": {"name": "broken"},
        "spec": {
            "backoffLimit": 0,
            "template": _pod_template({"job": "broken"}, {UNHEALTHY: "failed"}, restartPolicy="Never"),
        },
    }
    batch.create_namespaced_job(ns, job)
    failed = wait_for(
        lambda: next(
            (c for c in batch.read_namespaced_job("broken", ns).status.conditions or [] if c.type == "Failed"), None
        ),
        timeout=90,
        what="Job failed by the job controller",
    )
    assert failed.status == "True" and failed.reason == "BackoffLimitExceeded"
    dep = apps.read_namespaced_deployment("stuck", ns)
    assert dep.status.replicas == 2 and not dep.status.ready_replicas, "Pods run but never become Ready"
    core = client.CoreV1Api(api)
    pods = core.list_namespaced_pod(ns, label_selector="app=stuck").items
    assert {p.status.phase for p in pods} == {"Running"}


def test_helm_pre_install_hook_job_completes(
    full_member: ClusterHandle, kube_binaries: Binaries, tmp_path: Path, ns: str
) -> None:
    chart = tmp_path / "hooked"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(yaml.safe_dump({"apiVersion": "v2", "name": "hooked", "version": "0.1.0"}))
    hook = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": "update-crds-hook",
            "annotations": {"helm.sh/hook": "pre-install", "helm.sh/hook-delete-policy": "hook-succeeded"},
        },
        "spec": {"backoffLimit": 0, "template": _pod_template({"job": "hook"}, restartPolicy="Never")},
    }
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "after-hook"}, "data": {"ok": "1"}}
    (chart / "templates" / "all.yaml").write_text(yaml.safe_dump_all([hook, cm]))
    proc = subprocess.run(
        [str(kube_binaries.helm), "install", unique_name("hooked"), str(chart), "-n", ns,
         "--kubeconfig", str(full_member.kubeconfig), "--wait", "--timeout", "3m"],
        capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr
    assert "STATUS: deployed" in proc.stdout
    api = full_member.api_client()
    try:
        assert client.CoreV1Api(api).read_namespaced_config_map("after-hook", ns).data == {"ok": "1"}
    finally:
        api.close()


def test_deleting_a_namespace_removes_it(full_member: ClusterHandle, api: Any) -> None:
    core = client.CoreV1Api(api)
    name = unique_name("gone")
    core.create_namespace({"metadata": {"name": name}})
    core.create_namespaced_config_map(name, {"metadata": {"name": "c"}})
    core.delete_namespace(name)

    def gone() -> bool:
        try:
            core.read_namespace(name)
        except ApiException as exc:
            return exc.status == 404
        return False

    wait_for(gone, timeout=90, what="namespace controller finished the deletion")


def test_webhook_service_is_dialled_on_loopback_and_refused(
    full_fleet: Fleet, full_member: ClusterHandle, api: Any, ns: str
) -> None:
    core = client.CoreV1Api(api)
    svc = core.create_namespaced_service(
        ns, {"metadata": {"name": "hook"}, "spec": {"ports": [{"port": 443, "targetPort": 8443}]}}
    )
    cluster_ip = svc.spec.cluster_ip
    assert ipaddress.ip_address(cluster_ip) in ipaddress.ip_network(full_member.service_cidr)
    assert ipaddress.ip_address(cluster_ip) in LOOPBACK
    ca = (full_fleet.directory / "pki" / "ca.crt").read_bytes()
    import base64

    hook_name = f"{ns}.deny.blueprintd.io"
    config = {
        "metadata": {"name": hook_name},
        "webhooks": [
            {
                "name": "deny.blueprintd.io",
                "clientConfig": {
                    "service": {"namespace": ns, "name": "hook", "port": 443, "path": "/validate"},
                    "caBundle": base64.b64encode(ca).decode(),
                },
                "rules": [
                    {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["configmaps"]}
                ],
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
                "failurePolicy": "Fail",
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "timeoutSeconds": 10,
            }
        ],
    }
    adm = client.AdmissionregistrationV1Api(api)
    adm.create_validating_webhook_configuration(config)
    pid = full_member.pid
    assert pid is not None
    seen: set[tuple[str, str, str]] = set()
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            seen.update(tcp_connections(pid))
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        # The webhook configuration takes a moment to reach the admission chain.
        def refused() -> str | None:
            try:
                core.create_namespaced_config_map(ns, {"metadata": {"name": unique_name("c")}})
            except ApiException as exc:
                return str(exc.body) if "failed calling webhook" in str(exc.body) else None
            return None

        message = wait_for(refused, timeout=30, what="the webhook call to fail")
    finally:
        stop.set()
        sampler.join()
        adm.delete_validating_webhook_configuration(hook_name)
    assert f"dial tcp {cluster_ip}:443" in message and "connection refused" in message, message
    remotes = {r.rsplit(":", 1)[0] for _, r, _ in seen}
    assert seen and remotes, "the API server's sockets were observed"
    outside = {
        r for r in remotes if r not in ("0.0.0.0", "[::]") and ipaddress.ip_address(r.strip("[]")) not in LOOPBACK
    }
    assert not outside, f"the API server dialled outside 127.0.0.0/8: {outside}"


def test_webhook_of_a_ready_addon_pod_is_answered_on_loopback(
    full_fleet: Fleet, full_member: ClusterHandle, full_standins: StandIns, api: Any, ns: str
) -> None:
    """An add-on as a chart installs it: Deployment, Service, webhook configuration without a
    caBundle. Once its Pod is Ready the responder serves the Service's ClusterIP and patches
    the caBundle; with the add-on scaled to zero, the API server is refused again."""
    apps, core, adm = client.AppsV1Api(api), client.CoreV1Api(api), client.AdmissionregistrationV1Api(api)
    apps.create_namespaced_deployment(ns, _deployment("policy", 1))
    svc = core.create_namespaced_service(
        ns,
        {
            "metadata": {"name": "policy-webhook-service"},
            "spec": {"selector": {"app": "policy"}, "ports": [{"port": 443, "targetPort": 8443}]},
        },
    )
    hook_name = f"{ns}.policy.blueprintd.io"
    adm.create_validating_webhook_configuration(
        {
            "metadata": {"name": hook_name},
            "webhooks": [
                {
                    "name": "validation.policy.blueprintd.io",
                    "clientConfig": {
                        "service": {"namespace": ns, "name": "policy-webhook-service", "path": "/v1/admit"}
                    },
                    "rules": [
                        {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                         "resources": ["configmaps"]}
                    ],
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
                    "failurePolicy": "Fail",
                    "sideEffects": "None",
                    "admissionReviewVersions": ["v1"],
                    "timeoutSeconds": 5,
                }
            ],
        }
    )
    try:

        tries = itertools.count()

        def created() -> str | None:
            # The API server picks a new webhook configuration up asynchronously: a create in
            # that moment is admitted without a call, so only a create the responder answered
            # counts.
            name = f"allowed-{next(tries)}"
            try:
                core.create_namespaced_config_map(ns, {"metadata": {"name": name}})
            except ApiException:
                return None
            answered = any(a.name == name for a in full_standins.webhooks["full-1"].answers if a.namespace == ns)
            return name if answered else None

        name = wait_for(created, timeout=90, what="the webhook answered once the add-on's Pod is Ready")
        answers = [a for a in full_standins.webhooks["full-1"].answers if a.namespace == ns and a.name == name]
        assert [(a.kind, a.operation, a.name, a.path, a.target.ip, a.target.port) for a in answers] == [
            ("ConfigMap", "CREATE", name, "/v1/admit", svc.spec.cluster_ip, 443)
        ]
        import base64

        bundle = adm.read_validating_webhook_configuration(hook_name).webhooks[0].client_config.ca_bundle
        assert base64.b64decode(bundle) == (full_fleet.directory / "pki" / "ca.crt").read_bytes()

        apps.patch_namespaced_deployment_scale("policy", ns, {"spec": {"replicas": 0}})

        def refused() -> str | None:
            try:
                core.create_namespaced_config_map(ns, {"metadata": {"name": unique_name("late")}})
            except ApiException as exc:
                return str(exc.body) if "connection refused" in str(exc.body) else None
            return None

        wait_for(refused, timeout=90, what="no answer once the add-on has no Ready Pod")
    finally:
        adm.delete_validating_webhook_configuration(hook_name)
