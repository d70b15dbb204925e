"""`blueprintd plan` and the reconcile agree: the preview's plan is the plan the next reconcile carries out.

The Controller runs in process against the shared fleet's management cluster and member-1,
with a Blueprint of our own (manifests only, in namespaces of our own). Before each reconcile
the read-only preview (what ``blueprintd plan`` prints) is taken; the reconcile's result then
shows the plan it carried out. Scenarios: first install, a quiet resync, drift in a remediate
add-on and in a notify add-on, and a new version.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from blueprintd.cluster.management import ManagementStore
from blueprintd.devfleet.binaries import Binaries
from blueprintd.devfleet.demo import member_registration
from blueprintd.devfleet.fleet import ClusterHandle, Fleet
from blueprintd.devfleet.testing import unique_suffix
from blueprintd.operator import status
from blueprintd.operator.controller import Controller, MemberReconcile
from blueprintd.operator.pipeline import MemberPlan, preview
from blueprintd.operator.settings import OperatorSettings
from blueprintd.plan.planner import Action

pytestmark = pytest.mark.fleet

REPO = Path(__file__).resolve().parents[2]


class NoDrift:
    """The drift monitor left out: it would put remediate-mode drift back behind the test's back."""

    def reconciling(self, *_: Any) -> None:
        return None

    def observed_changes(self, *_: Any) -> int | None:
        return None  # never watched: every resync is a full one

    def will_write(self, *_: Any) -> None:
        return None

    async def track(self, *_: Any) -> None:
        return None

    async def forget(self, *_: Any) -> None:
        return None

    async def release_blueprint(self, *_: Any) -> None:
        return None


@dataclass
class Env:
    fleet: Fleet
    bins: Binaries
    member: ClusterHandle
    ns: str
    bp: str
    app_ns: str
    store: ManagementStore
    controller: Controller


def kubectl(env: Env, *args: str, stdin: str | None = None) -> None:
    proc = subprocess.run(
        [str(env.bins.kubectl), "--kubeconfig", str(env.fleet.management.kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr


def blueprint(env: Env, version: str, level: str) -> dict[str, Any]:
    def cm(name: str, data: dict[str, str]) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}

    return {
        "apiVersion": "blueprintd.io/v1alpha1",
        "kind": "Blueprint",
        "metadata": {"name": env.bp, "namespace": env.ns},
        "spec": {
            "version": version,
            "clusterSelector": {"matchLabels": {"plan-test": env.bp}},
            "onUnselect": "Prune",
            "addons": [
                {"name": "app", "namespace": env.app_ns, "manifests": [cm("app-config", {"level": level})]},
                {
                    "name": "watched",
                    "namespace": env.app_ns,
                    "dependsOn": ["app"],
                    "manifests": [cm("watched-config", {"quota": "8"})],
                    "drift": {"mode": "notify"},
                },
            ],
        },
    }


@pytest.fixture(scope="module")
def env(fleet: Fleet, kube_binaries: Binaries, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    uid = unique_suffix()
    ns = f"plan-{uid}"
    settings = OperatorSettings(namespace=ns, helm=kube_binaries.helm, workdir=tmp_path_factory.mktemp("op"))
    store = ManagementStore(fleet.management.api_client(), ns)
    controller = Controller(store, settings)
    controller.drift = NoDrift()  # type: ignore[assignment]
    e = Env(fleet, kube_binaries, fleet.members[0], ns, f"plan-{uid}", f"plan-app-{uid}", store, controller)
    kubectl(e, "apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    kubectl(e, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    docs: list[dict[str, Any]] = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}]
    docs += member_registration(fleet, e.member, ns, {"plan-test": e.bp})
    kubectl(e, "apply", "--server-side", "-f", "-", stdin=yaml.safe_dump_all(docs))
    try:
        yield e
    finally:
        kubectl(e, "delete", "namespace", ns, "--wait=false")
        core = client.CoreV1Api(e.member.api_client())
        core.delete_namespace(e.app_ns)


def publish(env: Env, version: str, level: str) -> None:
    kubectl(env, "apply", "-f", "-", stdin=yaml.safe_dump(blueprint(env, version, level)))

    async def go() -> None:
        bp = await env.store.get("Blueprint", env.bp)
        assert bp is not None
        await env.controller.publish(bp)
        bp = await env.store.get("Blueprint", env.bp)
        assert bp is not None
        await env.controller.rollout(bp)

    asyncio.run(go())


def preview_then_reconcile(env: Env) -> tuple[MemberPlan, MemberReconcile]:
    async def go() -> tuple[MemberPlan, MemberReconcile]:
        seen = await preview(env.store, env.bp, env.member.name, helm=env.bins.helm, chart_mirrors={})
        mc = await env.store.get("MemberCluster", env.member.name)
        assert mc is not None
        return seen, await env.controller.reconcile_member(mc)

    return asyncio.run(go())


def actions(actions: list[Action]) -> list[tuple[str, str, str, str]]:
    return [(a.addon or "", a.kind, a.target, a.reason) for a in actions]


def agree(env: Env) -> tuple[MemberPlan, status.Applied]:
    seen, done = preview_then_reconcile(env)
    [applied] = [o for o in done.outcomes if isinstance(o, status.Applied) and o.blueprint == env.bp]
    assert seen.assignment.version == applied.version, "the preview plans the version the reconcile applies"
    assert actions(seen.plan.actions()) == actions(applied.result.plan.actions())
    assert actions(seen.plan.held) == actions(applied.result.plan.held)
    assert applied.result.writes == len(seen.plan.actions())
    return seen, applied


def test_first_install(env: Env) -> None:
    publish(env, "1.0.0", "info")
    seen, applied = agree(env)
    assert {a.target for a in seen.plan.actions()} >= {
        f"v1|ConfigMap|{env.app_ns}|app-config",
        f"v1|ConfigMap|{env.app_ns}|watched-config",
    }
    assert applied.result.ready


def test_a_quiet_resync_plans_nothing_and_writes_nothing(env: Env) -> None:
    seen, applied = agree(env)
    assert seen.plan.empty and applied.result.writes == 0


def test_drift_in_remediate_and_notify_addons(env: Env) -> None:
    core = client.CoreV1Api(env.member.api_client())
    core.patch_namespaced_config_map("app-config", env.app_ns, {"data": {"level": "debug"}})
    core.patch_namespaced_config_map("watched-config", env.app_ns, {"data": {"quota": "64"}})
    seen, _ = agree(env)
    assert [a.target for a in seen.plan.actions()] == [f"v1|ConfigMap|{env.app_ns}|app-config"]
    assert [a.target for a in seen.plan.held] == [f"v1|ConfigMap|{env.app_ns}|watched-config"]
    assert core.read_namespaced_config_map("app-config", env.app_ns).data == {"level": "info"}, "remediated"
    assert core.read_namespaced_config_map("watched-config", env.app_ns).data == {"quota": "64"}, "held"


def test_a_new_version(env: Env) -> None:
    publish(env, "1.1.0", "warn")
    seen, applied = agree(env)
    assert seen.assignment.version == "1.1.0" and applied.result.ready
    core = client.CoreV1Api(env.member.api_client())
    assert core.read_namespaced_config_map("app-config", env.app_ns).data == {"level": "warn"}
