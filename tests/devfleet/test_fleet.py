"""The test bed itself: real API servers behave like clusters for everything blueprintd does."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import ssl
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from blueprintd.devfleet import fleet as fleet_mod
from blueprintd.devfleet.fleet import ADMIN_USER, ClusterHandle, ClusterState, Fleet, FleetState, ProcessState
from blueprintd.devfleet.testing import dynamic_client, unique_name, wait_for

CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.blueprintd.io"},
    "spec": {
        "group": "example.blueprintd.io",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "properties": {"size": {"type": "integer", "minimum": 1}},
                            }
                        },
                    }
                },
            }
        ],
    },
}


def test_management_and_members_are_separate_ready_clusters(fleet: Fleet) -> None:
    assert [c.name for c in fleet.members] == ["member-1", "member-2"]
    rows = {r["name"]: r for r in fleet.status()}
    assert all(r["ready"] for r in rows.values()), rows
    # Each API server has its own storage: a namespace made in one is absent from the others.
    ns = unique_name("only-here")
    api = client.CoreV1Api(fleet.members[0].api_client())
    api.create_namespace({"metadata": {"name": ns}})
    other = client.CoreV1Api(fleet.members[1].api_client())
    with pytest.raises(ApiException) as exc:
        other.read_namespace(ns)
    assert exc.value.status == 404
    api.delete_namespace(ns)


def test_members_have_simulated_gpu_nodes_with_gfd_labels(member: ClusterHandle) -> None:
    nodes = {n.metadata.name: n for n in client.CoreV1Api(member.api_client()).list_node().items}
    h100 = nodes["member-1-h100-0"]
    assert h100.metadata.labels["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
    assert h100.metadata.labels["nvidia.com/mig.capable"] == "true"
    assert h100.status.capacity["nvidia.com/gpu"] == "8"
    l4 = nodes["member-1-l4-0"]
    assert l4.metadata.labels["nvidia.com/gpu.product"] == "NVIDIA-L4"
    assert l4.metadata.labels["nvidia.com/mig.capable"] == "false"
    assert "nvidia.com/gpu.present" not in nodes["member-1-cpu-0"].metadata.labels


def test_crd_and_custom_object_in_a_member(member: ClusterHandle, member_namespace: str) -> None:
    dyn = dynamic_client(member)
    crds = dyn.resources.get(api_version="apiextensions.k8s.io/v1", kind="CustomResourceDefinition")
    crds.server_side_apply(body=CRD, name=CRD["metadata"]["name"], field_manager="test")

    def established() -> bool:
        crd = crds.get(name=CRD["metadata"]["name"])
        return any(c.type == "Established" and c.status == "True" for c in (crd.status.conditions or []))

    wait_for(established, what="CRD established")
    dyn.resources.invalidate_cache()
    widgets = wait_for(lambda: _resource(dyn, "example.blueprintd.io/v1", "Widget"), what="Widget discoverable")
    widgets.create(
        body={
            "apiVersion": "example.blueprintd.io/v1",
            "kind": "Widget",
            "metadata": {"name": "w"},
            "spec": {"size": 3},
        },
        namespace=member_namespace,
    )
    assert widgets.get(name="w", namespace=member_namespace).spec.size == 3
    # The API server validates custom objects against the CRD schema.
    with pytest.raises(ApiException) as exc:
        widgets.create(
            body={
                "apiVersion": "example.blueprintd.io/v1",
                "kind": "Widget",
                "metadata": {"name": "bad"},
                "spec": {"size": 0},
            },
            namespace=member_namespace,
        )
    assert exc.value.status == 422 and "spec.size" in exc.value.body


def _resource(dyn: object, api_version: str, kind: str) -> object | None:
    from kubernetes.dynamic.exceptions import ResourceNotFoundError

    try:
        return dyn.resources.get(api_version=api_version, kind=kind)  # type: ignore[attr-defined,no-any-return]
    except ResourceNotFoundError:
        dyn.resources.invalidate_cache()  # type: ignore[attr-defined]
        return None


def test_server_side_apply_records_field_manager(member: ClusterHandle, member_namespace: str) -> None:
    dyn = dynamic_client(member)
    cms = dyn.resources.get(api_version="v1", kind="ConfigMap")
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cfg", "namespace": member_namespace},
        "data": {"mig": "all-1g.10gb"},
    }
    cms.server_side_apply(body=body, name="cfg", namespace=member_namespace, field_manager="blueprintd")
    obj = cms.get(name="cfg", namespace=member_namespace).to_dict()
    managers = {m["manager"]: m for m in obj["metadata"]["managedFields"]}
    assert managers["blueprintd"]["operation"] == "Apply"
    assert "f:mig" in managers["blueprintd"]["fieldsV1"]["f:data"]
    # A second manager changing the same field conflicts unless it forces.
    other = dict(body, data={"mig": "all-disabled"})
    with pytest.raises(ApiException) as exc:
        cms.server_side_apply(body=other, name="cfg", namespace=member_namespace, field_manager="someone-else")
    assert exc.value.status == 409


def test_watch_sees_out_of_band_change(member: ClusterHandle, member_namespace: str) -> None:
    core = client.CoreV1Api(member.api_client())
    core.create_namespaced_config_map(member_namespace, {"metadata": {"name": "watched"}, "data": {"a": "1"}})
    rv = core.list_namespaced_config_map(member_namespace).metadata.resource_version
    events: queue.Queue[tuple[str, dict[str, str]]] = queue.Queue()
    w = watch.Watch()

    def run() -> None:
        watcher_api = client.CoreV1Api(member.api_client())
        with contextlib.suppress(Exception):  # the stream ends when the test stops it
            for ev in w.stream(
                watcher_api.list_namespaced_config_map,
                member_namespace,
                resource_version=rv,
                timeout_seconds=30,
            ):
                events.put((ev["type"], ev["object"].data or {}))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    # Someone else edits the object out of band.
    core.patch_namespaced_config_map("watched", member_namespace, {"data": {"a": "2"}})
    kind, data = events.get(timeout=5)
    w.stop()
    assert (kind, data) == ("MODIFIED", {"a": "2"})


def test_helm_install_from_local_repo_through_pyhelm3(
    member: ClusterHandle, kube_binaries: object, chart_repo: str
) -> None:
    from pyhelm3 import Client

    helm = kube_binaries.helm  # type: ignore[attr-defined]
    release = unique_name("kai")
    ns = unique_name("kai-ns")

    async def scenario() -> tuple[list[dict[str, object]], str]:
        c = Client(executable=str(helm), kubeconfig=member.kubeconfig)
        chart = await c.get_chart("kai-scheduler", repo=chart_repo)
        rev = await c.install_or_upgrade_release(release, chart, {}, namespace=ns, create_namespace=True, wait=False)
        resources = list(await rev.resources())
        manifest = subprocess.run(
            [str(helm), "get", "manifest", release, "-n", ns, "--kubeconfig", str(member.kubeconfig)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        await c.uninstall_release(release, namespace=ns, wait=False)
        return resources, manifest

    resources, manifest = asyncio.run(scenario())
    kinds = {r["kind"] for r in resources}
    assert "Deployment" in kinds
    assert any(d.get("kind") == "Deployment" for d in yaml.safe_load_all(manifest) if d)
    apps = client.AppsV1Api(member.api_client())
    wait_for(lambda: not apps.list_namespaced_deployment(ns).items, what="release objects removed on uninstall")


def test_audit_log_counts_writes_per_user(fleet: Fleet, member: ClusterHandle, member_namespace: str) -> None:
    kubeconfig = fleet.mint_kubeconfig(member.name, "alice", ["devs"])
    admin = client.RbacAuthorizationV1Api(member.api_client())
    admin.create_namespaced_role(
        member_namespace,
        {
            "metadata": {"name": "configmap-editor"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "create"]}],
        },
    )
    admin.create_namespaced_role_binding(
        member_namespace,
        {
            "metadata": {"name": "alice-edit"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "configmap-editor"},
            "subjects": [{"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"}],
        },
    )
    from kubernetes import config

    mark = member.audit.mark()
    alice = client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig)))
    for i in range(3):
        alice.create_namespaced_config_map(member_namespace, {"metadata": {"name": f"a{i}"}})
    alice.list_namespaced_config_map(member_namespace)  # reads are not writes
    # alice may not touch other namespaces: RBAC is on.
    with pytest.raises(ApiException) as exc:
        alice.create_namespaced_config_map("default", {"metadata": {"name": "nope"}})
    assert exc.value.status == 403
    writes = wait_for(
        lambda: (
            [w for w in member.audit.writes(mark, user="alice") if w.code < 300] or None
            if len(member.audit.writes(mark, user="alice")) >= 4
            else None
        ),
        what="alice's writes audited",
    )
    assert [(w.verb, w.resource, w.name) for w in writes] == [("create", "configmaps", f"a{i}") for i in range(3)]
    assert not member.audit.writes(mark, user=ADMIN_USER + "-nobody")


def test_dev_cli_up_status_down_leaves_nothing_running(tmp_path: Path, kube_binaries: object) -> None:
    d = tmp_path / "f"
    cli = [sys.executable, "-m", "blueprintd", "dev"]
    up = subprocess.run(
        [*cli, "up", "--members", "1", "--dir", str(d), "--nodes", "h100", "--no-charts"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    try:
        _check_dev_cli(d, cli, up, kube_binaries)
    finally:
        subprocess.run([*cli, "down", "--dir", str(d)], capture_output=True, timeout=60)  # whatever failed


def _check_dev_cli(d: Path, cli: list[str], up: subprocess.CompletedProcess[str], kube_binaries: object) -> None:
    assert up.returncode == 0, up.stderr
    fleet = Fleet.load(d)
    running = dict(fleet.running_processes())
    # `dev up` gives members the full control plane by default.
    assert set(running) == {
        "etcd",
        "kube-apiserver/management",
        "kube-apiserver/member-1",
        "kube-controller-manager/member-1",
        "kube-scheduler/member-1",
        "kwok/member-1",
        "standins",
    }
    pids = [p.pid for p in running.values()]
    nodes = subprocess.run(
        [
            str(kube_binaries.kubectl),
            "--kubeconfig",
            str(d / "member-1.kubeconfig"),  # type: ignore[attr-defined]
            "get",
            "nodes",
            "--show-labels",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3" in nodes
    again = subprocess.run([*cli, "up", "--dir", str(d), "--no-charts"], capture_output=True, text=True, timeout=60)
    assert again.returncode == 1 and "already running" in again.stderr
    status = subprocess.run([*cli, "status", "--dir", str(d), "-o", "json"], capture_output=True, text=True)
    assert status.returncode == 0 and '"ready": true' in status.stdout
    down = subprocess.run([*cli, "down", "--dir", str(d)], capture_output=True, text=True, timeout=60)
    assert down.returncode == 0, down.stderr
    for pid in pids:
        assert not _running(pid), f"process {pid} still running after dev down"
    gone = subprocess.run([*cli, "status", "--dir", str(d)], capture_output=True, text=True)
    assert gone.returncode == 1 and "no fleet" in gone.stderr


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return state != "Z"


def test_down_stops_etcd_only_after_everything_else_has_exited(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An API server removes its endpoint lease from etcd while it shuts down; with etcd
    signalled at the same time it waited for that write until killed (seconds per fleet)."""

    def proc(pid: int, cmd: str) -> ProcessState:
        return ProcessState(pid=pid, cmd=cmd, log="")

    def cluster(name: str, pid: int, components: dict[str, ProcessState]) -> ClusterState:
        return ClusterState(
            name=name, role="member", port=1, etcd_prefix="/", kubeconfig="", audit_log="",
            process=proc(pid, "kube-apiserver"), components=components,
        )

    state = FleetState(
        directory=str(tmp_path),
        etcd_port=1,
        etcd=proc(1, "etcd"),
        clusters=[
            cluster("management", 2, {}),
            cluster("full-1", 3, {"kwok": proc(4, "kwok"), "kube-scheduler": proc(5, "kube-scheduler")}),
        ],
        extra_processes={"standins": proc(6, "python")},
    )
    batches: list[list[int]] = []

    def terminate(procs: list[ProcessState]) -> list[str]:
        batches.append([p.pid for p in procs])  # each batch is waited for before the next
        return [f"{p.cmd}[{p.pid}]" for p in procs]

    monkeypatch.setattr(fleet_mod, "_terminate", terminate)
    stopped = Fleet(tmp_path, state).down(remove=False)
    assert batches == [[4, 5, 2, 3, 6], [1]]
    assert stopped[-1] == "etcd[1]" and len(stopped) == 6


def test_missing_binary_and_bad_profile_give_clear_errors(tmp_path: Path) -> None:
    cli = [sys.executable, "-m", "blueprintd", "dev", "up", "--dir", str(tmp_path / "x"), "--no-charts"]
    bad = subprocess.run([*cli, "--nodes", "h900"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "unknown profile(s) h900" in bad.stderr and "h100" in bad.stderr
    shape = subprocess.run([*cli, "--control-plane", "kubelet"], capture_output=True, text=True, timeout=60)
    assert shape.returncode == 1 and "--control-plane: 'kubelet' is not one of: full, api-only" in shape.stderr
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "KUBEBUILDER_ASSETS": str(tmp_path / "empty"),
        "BLUEPRINTD_CACHE": str(tmp_path / "cache"),
    }
    missing = subprocess.run(cli, capture_output=True, text=True, timeout=60, env=env)
    assert missing.returncode == 1
    assert "Go is not installed" in missing.stderr and "KUBEBUILDER_ASSETS" in missing.stderr


def test_readyz_requires_client_certificate(member: ClusterHandle, fleet: Fleet) -> None:
    ctx = ssl.create_default_context(cafile=str(fleet.directory / "pki" / "ca.crt"))
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(f"{member.server}/api/v1/namespaces", context=ctx, timeout=5)
    assert exc.value.code in (401, 403)
