"""Progress during a long install, end to end (issue 13 item 5): real API servers, real helm,
Kubernetes' own Job and Deployment controllers with kwok kubelets.

The test add-on's chart has a pre-install hook Job that is created suspended, so helm waits on
it until the test lets it run, and a Deployment whose Pod kwok keeps unready until the test
changes its template. While each lasts, the MemberCluster status (as `blueprintd status -o
json` reads it) names the add-on, when the step started and the object it waits for; when the
install succeeded the in-progress entry is gone. Nothing here is timed: every wait polls with
a generous timeout.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from blueprintd.cli.fleetview import fleet_summary, progress_text
from blueprintd.cluster.management import ManagementStore
from blueprintd.devfleet.binaries import Binaries
from blueprintd.devfleet.chartrepo import ChartRepoServer, build_chart_repo
from blueprintd.devfleet.demo import member_registration
from blueprintd.devfleet.fleet import ClusterHandle, Fleet
from blueprintd.devfleet.kwok import UNHEALTHY, UNREADY
from blueprintd.devfleet.testing import unique_suffix
from blueprintd.operator.controller import Controller
from blueprintd.operator.settings import OperatorSettings

pytestmark = pytest.mark.fleet

REPO = Path(__file__).resolve().parents[2]
GROUP, VERSION = "blueprintd.io", "v1alpha1"
UPSTREAM = "https://charts.progress-test.invalid"
CHART, HOOK_JOB, DEPLOYMENT = "slow-install", "slow-install-prepare", "slow-install-app"
TIMEOUT = 300.0


def write_chart(root: Path) -> Path:
    """A chart whose install waits on a suspended pre-install hook Job, then on an unready Deployment."""
    chart = root / CHART
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(yaml.safe_dump({"apiVersion": "v2", "name": CHART, "version": "0.1.0"}))
    pod = {"containers": [{"name": "main", "image": "registry.invalid/app:1"}]}
    hook = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": HOOK_JOB,
            "labels": {"app.kubernetes.io/instance": "{{ .Release.Name }}"},
            "annotations": {"helm.sh/hook": "pre-install", "helm.sh/hook-delete-policy": "before-hook-creation"},
        },
        "spec": {"suspend": True, "backoffLimit": 0, "template": {"spec": {**pod, "restartPolicy": "Never"}}},
    }
    deploy = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": DEPLOYMENT},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": DEPLOYMENT}},
            "template": {
                "metadata": {"labels": {"app": DEPLOYMENT}, "annotations": {UNHEALTHY: UNREADY}},
                "spec": pod,
            },
        },
    }
    (chart / "templates" / "all.yaml").write_text(yaml.safe_dump_all([hook, deploy]))
    return chart


def blueprint(ns: str, app_ns: str, uid: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Blueprint",
        "metadata": {"name": f"progress-{uid}", "namespace": ns},
        "spec": {
            "version": "1.0.0",
            "clusterSelector": {"matchLabels": {"progress-test": uid}},
            "addons": [
                {
                    "name": "slow",
                    "namespace": app_ns,
                    "helm": {"repo": UPSTREAM, "chart": CHART, "version": "0.1.0", "releaseName": CHART},
                }
            ],
        },
    }


def kubectl(bins: Binaries, kubeconfig: Path, *args: str, stdin: str | None = None) -> None:
    proc = subprocess.run([str(bins.kubectl), "--kubeconfig", str(kubeconfig), *args],
                          input=stdin, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


async def until(what: str, check: Callable[[], Awaitable[Any]], task: asyncio.Task[Any]) -> Any:
    """Poll ``check`` until it returns something truthy; fail when the reconcile ended first."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    last: Any = None
    while loop.time() < deadline:
        last = await check()
        if last:
            return last
        if task.done():
            raise AssertionError(f"the reconcile ended before {what}: {task.result()}")
        await asyncio.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_long_install_shows_the_addon_and_what_it_waits_for_until_it_is_done(
    full_fleet: Fleet, full_member: ClusterHandle, kube_binaries: Binaries, tmp_path: Path
) -> None:
    uid = unique_suffix()
    ns, app_ns = f"progress-{uid}", f"slow-{uid}"
    mgmt = full_fleet.management.kubeconfig
    kubectl(kube_binaries, mgmt, "apply", "--server-side", "-f", str(REPO / "crds"))
    kubectl(kube_binaries, mgmt, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    docs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
            *member_registration(full_fleet, full_member, ns, labels={"progress-test": uid})]
    kubectl(kube_binaries, mgmt, "apply", "--server-side", "-f", "-", stdin=yaml.safe_dump_all(docs))
    repo = build_chart_repo([write_chart(tmp_path / "src")], tmp_path / "repo", kube_binaries.helm)
    mgmt_api, member_api = full_fleet.management.api_client(), full_member.api_client()
    custom, batch, apps = client.CustomObjectsApi(mgmt_api), client.BatchV1Api(member_api), client.AppsV1Api(member_api)

    def get(plural: str, name: str) -> dict[str, Any]:
        return dict(custom.get_namespaced_custom_object(GROUP, VERSION, ns, plural, name))

    async def scenario(server: ChartRepoServer) -> None:
        settings = OperatorSettings(
            namespace=ns,
            helm=kube_binaries.helm,
            workdir=tmp_path / "operator",
            chart_mirrors={UPSTREAM: server.url},
            chart_preflight=False,
            progress_interval_seconds=1.0,
        )
        controller = Controller(ManagementStore(mgmt_api, ns), settings)
        bp = blueprint(ns, app_ns, uid)
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, "blueprints", bp)
        name = bp["metadata"]["name"]
        await controller.publish(get("blueprints", name))
        await controller.rollout(get("blueprints", name))
        assert get("blueprints", name)["status"]["rollout"]["assignments"] == {full_member.name: "1.0.0"}

        task = asyncio.create_task(controller.reconcile_member(get("memberclusters", full_member.name)))

        async def current() -> dict[str, Any] | None:
            mc = await asyncio.to_thread(get, "memberclusters", full_member.name)
            entry = next((p for p in (mc.get("status") or {}).get("blueprints") or [] if p["blueprint"] == name), {})
            return entry.get("current")

        def waits_on(kind: str, obj: str, reason: str) -> Callable[[], Awaitable[Any]]:
            async def check() -> Any:
                cur = await current()
                items = (cur or {}).get("waitingFor") or []
                return cur if {"kind": kind, "name": obj, "reason": reason} in items else None

            return check

        try:
            # 1. helm waits on the pre-install hook Job: status names the add-on and the Job.
            during = await until(
                "the hook Job in status",
                waits_on("Job", f"{app_ns}/{HOOK_JOB}", "pre-install hook Job running"),
                task,
            )
            assert (during["addon"], during["step"], during["version"]) == ("slow", "install", "1.0.0")
            assert during["since"]
            summary = fleet_summary([], [await asyncio.to_thread(get, "memberclusters", full_member.name)])
            [row] = [b for b in summary["clusters"][0]["blueprints"] if b["blueprint"] == name]
            assert row["current"]["addon"] == "slow"  # `blueprintd status -o json`
            assert f"installing slow since {during['since']}, waiting for Job {app_ns}/{HOOK_JOB}" in progress_text(
                row["current"]
            )
            await asyncio.to_thread(batch.patch_namespaced_job, HOOK_JOB, app_ns, {"spec": {"suspend": False}})

            # 2. the hook completed; the Deployment's Pod stays unready: status says so.
            later = await until(
                "the unready Deployment in status",
                waits_on("Deployment", f"{app_ns}/{DEPLOYMENT}", "0/1 available"),
                task,
            )
            assert later["since"] == during["since"], "one step, one start time"
            assert not any(i["kind"] == "Job" for i in later["waitingFor"]), later
            await asyncio.to_thread(
                apps.patch_namespaced_deployment,
                DEPLOYMENT,
                app_ns,
                {"spec": {"template": {"metadata": {"annotations": {UNHEALTHY: None}}}}},
            )

            # 3. done: the add-on is Ready and nothing is in progress any more.
            result = await asyncio.wait_for(task, TIMEOUT)
        finally:
            if not task.done():
                task.cancel()
        assert result.status is not None
        [entry] = [p for p in result.status.blueprints if p.blueprint == name]
        assert (entry.state, entry.current) == ("Ready", None), entry.message
        stored = get("memberclusters", full_member.name)["status"]
        [wire] = [p for p in stored["blueprints"] if p["blueprint"] == name]
        assert wire["state"] == "Ready" and "current" not in wire
        assert [a["state"] for a in stored["addons"] if a["blueprint"] == name] == ["Ready"]
        # a second reconcile has nothing to do: no step runs, so no progress write either
        again = await controller.reconcile_member(get("memberclusters", full_member.name))
        assert again.writes == 0 and not again.patched
        await asyncio.to_thread(custom.delete_namespaced_custom_object, GROUP, VERSION, ns, "blueprints", name)
        await controller.reconcile_member(get("memberclusters", full_member.name))  # releases the add-on
        await controller.drift.close()
        for session in list(controller._sessions):
            controller.forget(session)

    try:
        with ChartRepoServer(repo) as server:
            asyncio.run(scenario(server))
    finally:
        for kubeconfig, namespace in ((full_member.kubeconfig, app_ns), (mgmt, ns)):
            kubectl(kube_binaries, kubeconfig, "delete", "namespace", namespace, "--ignore-not-found", "--wait=false")
        mgmt_api.close()
        member_api.close()
