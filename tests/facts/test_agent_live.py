"""The node agent against a real kube-apiserver (the shared ``fleet``, member-1).

The agent runs with exactly the identity and permissions the Helm chart gives it: the chart's
ServiceAccount, ClusterRole and ClusterRoleBinding are rendered by helm, created in the
member, and the agent authenticates with a token of that ServiceAccount. Writes are counted
in the API server's own audit log, so "no write when nothing changed" is proven server-side.
Only NVML is simulated (FakeNvml machines).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from typer.testing import CliRunner

from blueprintd.cli.main import app
from blueprintd.devfleet.binaries import Binaries
from blueprintd.devfleet.fleet import ClusterHandle
from blueprintd.devfleet.testing import unique_name, wait_for
from blueprintd.facts.agent import CycleResult, KubeNodeApi, NodeAgent
from blueprintd.facts.annotation import (
    ANNOTATION_KEY,
    LABEL_COUNT,
    LABEL_MIG_ENABLED,
    LABEL_PRODUCT,
    decode_inventory,
)
from blueprintd.facts.nvml import FakeNvml, discover

pytestmark = pytest.mark.fleet

CHART = Path(__file__).resolve().parents[2] / "charts" / "blueprintd-node-agent"
RELEASE = "facts"


@pytest.fixture
def admin(member: ClusterHandle) -> Iterator[Any]:
    api_client = member.api_client()
    try:
        yield api_client
    finally:
        api_client.close()


@pytest.fixture
def node(admin: Any) -> Iterator[str]:
    """A Node of its own, labelled like a GPU node by someone else (the agent must keep those)."""
    name = unique_name("agent-node")
    core = client.CoreV1Api(admin)
    core.create_node({"metadata": {"name": name, "labels": {"nvidia.com/gpu.present": "true", "team": "a"}}})
    try:
        yield name
    finally:
        with contextlib.suppress(ApiException):
            core.delete_node(name)


@pytest.fixture
def agent_identity(
    member: ClusterHandle, admin: Any, member_namespace: str, kube_binaries: Binaries, tmp_path: Path
) -> Iterator[tuple[Any, str, Path]]:
    """(ApiClient, audit user name, kubeconfig) of the chart's ServiceAccount, RBAC as rendered."""
    rendered = subprocess.run(
        [
            str(kube_binaries.helm),
            "template",
            RELEASE,
            str(CHART),
            "-n",
            member_namespace,
            "--show-only",
            "templates/serviceaccount.yaml",
            "--show-only",
            "templates/rbac.yaml",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    assert [d["kind"] for d in docs] == ["ServiceAccount", "ClusterRole", "ClusterRoleBinding"]
    # Cluster-scoped names get the namespace appended so parallel runs do not collide.
    suffix = f"-{member_namespace}"
    docs[1]["metadata"]["name"] += suffix
    docs[2]["metadata"]["name"] += suffix
    docs[2]["roleRef"]["name"] += suffix
    core, rbac = client.CoreV1Api(admin), client.RbacAuthorizationV1Api(admin)
    sa = docs[0]["metadata"]["name"]
    core.create_namespaced_service_account(member_namespace, docs[0])
    rbac.create_cluster_role(docs[1])
    rbac.create_cluster_role_binding(docs[2])
    token = core.create_namespaced_service_account_token(
        sa, member_namespace, {"spec": {"expirationSeconds": 3600}}
    ).status.token
    # Same server and CA as the admin kubeconfig, the ServiceAccount's token instead of the cert.
    kube = yaml.safe_load(member.kubeconfig.read_text())
    kube["users"] = [{"name": "agent", "user": {"token": token}}]
    kube["contexts"][0]["context"]["user"] = "agent"
    path = tmp_path / "agent.kubeconfig"
    path.write_text(yaml.safe_dump(kube))
    api_client = config.new_client_from_config(config_file=str(path))
    try:
        yield api_client, f"system:serviceaccount:{member_namespace}:{sa}", path
    finally:
        api_client.close()
        with contextlib.suppress(ApiException):
            rbac.delete_cluster_role_binding(docs[2]["metadata"]["name"])
        with contextlib.suppress(ApiException):
            rbac.delete_cluster_role(docs[1]["metadata"]["name"])


def _read(admin: Any, name: str) -> dict[str, Any]:
    resp = client.CoreV1Api(admin).read_node(name, _preload_content=False)
    node: dict[str, Any] = json.loads(resp.data)
    return node


def _node_writes(member: ClusterHandle, mark: int, user: str, node: str) -> list[Any]:
    """The user's writes to ``node`` after ``mark``, once the API server has logged them: it writes
    the ResponseComplete audit event after the client already has its response."""
    deadline = time.monotonic() + 10
    while True:
        writes = [w for w in member.audit.writes(mark, user=user) if w.name == node]
        if writes or time.monotonic() > deadline:
            return writes
        time.sleep(0.1)


def test_agent_publishes_republishes_on_change_and_skips_unchanged(
    member: ClusterHandle, admin: Any, node: str, agent_identity: tuple[Any, str, Path]
) -> None:
    api_client, user, _ = agent_identity
    fake = FakeNvml.from_machine("dgx-h100-mig")
    agent = NodeAgent(api=KubeNodeApi(api_client), nvml=fake, node_name=node)

    # 1. First cycle: one patch, the Node carries the inventory and the labels.
    mark = member.audit.mark()
    first = agent.run_once()
    assert first.wrote
    published = _read(admin, node)
    meta = published["metadata"]
    assert decode_inventory(meta["annotations"][ANNOTATION_KEY], node) == discover(fake, node)
    assert meta["labels"][LABEL_PRODUCT] == "NVIDIA-H100-80GB-HBM3"
    assert meta["labels"][LABEL_COUNT] == "8" and meta["labels"][LABEL_MIG_ENABLED] == "true"
    assert meta["labels"]["team"] == "a" and meta["labels"]["nvidia.com/gpu.present"] == "true"
    writes = _node_writes(member, mark, user, node)
    assert [(w.verb, w.resource, w.code) for w in writes] == [("patch", "nodes", 200)]

    # 2. Nothing changed: zero write calls, verified in the API server's audit log.
    mark = member.audit.mark()
    for _ in range(3):
        assert not agent.run_once().wrote
    assert [w for w in member.audit.writes(mark, user=user) if w.name == node] == []

    # 3. MIG manager re-partitions GPU 0: exactly one patch with the new layout.
    fake.set_mig_layout(0, ["3g.40gb", "3g.40gb"])
    mark = member.audit.mark()
    assert agent.run_once().wrote
    assert len(_node_writes(member, mark, user, node)) == 1
    inventory = decode_inventory(_read(admin, node)["metadata"]["annotations"][ANNOTATION_KEY], node)
    assert [m.profile for m in inventory.gpus[0].mig_devices] == ["3g.40gb", "3g.40gb"]

    # 4. MIG off everywhere: labels follow.
    fake.set_mig_mode(None, False)
    assert agent.run_once().wrote
    assert _read(admin, node)["metadata"]["labels"][LABEL_MIG_ENABLED] == "false"


def test_agent_loop_runs_until_stopped_and_writes_once(
    member: ClusterHandle, node: str, agent_identity: tuple[Any, str, Path]
) -> None:
    api_client, user, _ = agent_identity
    cycles: list[CycleResult] = []
    agent = NodeAgent(
        api=KubeNodeApi(api_client),
        nvml=FakeNvml.from_machine("dgx-a100"),
        node_name=node,
        interval_s=0.05,
        on_cycle=cycles.append,
    )
    mark = member.audit.mark()
    thread = threading.Thread(target=agent.run_forever, daemon=True)
    thread.start()
    try:
        wait_for(lambda: len(cycles) >= 4, timeout=30, what="four agent cycles")
    finally:
        agent.stop()
        thread.join(timeout=10)
    assert not thread.is_alive()
    assert [c.wrote for c in cycles[:4]] == [True, False, False, False]
    assert len(_node_writes(member, mark, user, node)) == 1


def test_agent_rbac_is_least_privilege(agent_identity: tuple[Any, str, Path], node: str) -> None:
    api_client, _, _ = agent_identity
    core = client.CoreV1Api(api_client)
    core.read_node(node, _preload_content=False)  # allowed
    for forbidden in (
        lambda: core.list_node(_preload_content=False),
        lambda: core.delete_node(node),
        lambda: core.replace_node(node, {"metadata": {"name": node}}),
        lambda: core.list_namespaced_pod("default", _preload_content=False),
    ):
        with pytest.raises(ApiException) as exc:
            forbidden()
        assert exc.value.status == 403


def test_driver_disappearing_is_published_not_fatal(
    admin: Any, node: str, agent_identity: tuple[Any, str, Path]
) -> None:
    api_client, _, _ = agent_identity
    fake = FakeNvml.from_machine("l4-server")
    agent = NodeAgent(api=KubeNodeApi(api_client), nvml=fake, node_name=node)
    agent.run_once()
    fake.inject_fault("nvmlInit", "DRIVER_NOT_LOADED")
    result = agent.run_once()
    assert result.wrote and result.inventory.partial
    meta = _read(admin, node)["metadata"]
    assert LABEL_PRODUCT not in meta["labels"] and meta["labels"][LABEL_COUNT] == "0"
    assert "not loaded" in decode_inventory(meta["annotations"][ANNOTATION_KEY]).errors[0]


def test_node_agent_command_once(
    member: ClusterHandle, admin: Any, node: str, agent_identity: tuple[Any, str, Path]
) -> None:
    _, user, kubeconfig = agent_identity
    runner = CliRunner()
    args = ["node-agent", "--once", "--kubeconfig", str(kubeconfig), "--fake-nvml", "t4-node"]
    result = runner.invoke(app, args, env={"NODE_NAME": node})
    assert result.exit_code == 0, result.output
    assert "facts published" in result.output
    mark = member.audit.mark()
    result = runner.invoke(app, args, env={"NODE_NAME": node})
    assert result.exit_code == 0 and "facts unchanged" in result.output
    assert [w for w in member.audit.writes(mark, user=user) if w.name == node] == []
    # The operator-side view of the same cluster picks the node up as a T4 pool member.
    out = runner.invoke(app, ["facts", "--kubeconfig", str(member.kubeconfig), "-o", "json"])
    assert out.exit_code == 0, out.output
    pools = json.loads(out.stdout)["pools"]
    (t4,) = [p for p in pools if node in p["nodes"]]
    assert (
        t4["name"] == "t4" and t4["gpuProduct"] == "Tesla-T4" and t4["sources"]["gpuProduct"] == "nodeAgent"
    )


def test_node_agent_command_reports_a_missing_node(agent_identity: tuple[Any, str, Path]) -> None:
    _, _, kubeconfig = agent_identity
    result = CliRunner().invoke(
        app,
        [
            "node-agent",
            "--once",
            "--kubeconfig",
            str(kubeconfig),
            "--fake-nvml",
            "t4-node",
            "--node-name",
            "no-such-node",
        ],
    )
    assert result.exit_code == 1
    assert "cannot read Node no-such-node: 404" in result.output
