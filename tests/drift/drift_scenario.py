"""What the drift end-to-end modules share: a member cluster under a real operator process,
a person ("alice") who changes it, and readers of the DriftReport and MemberCluster status."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client

from blueprintd.api import yamltext
from blueprintd.devfleet.binaries import Binaries
from blueprintd.devfleet.demo import member_registration, mirror_flags
from blueprintd.devfleet.fleet import ClusterHandle, Fleet
from blueprintd.devfleet.testing import OperatorProcess

REPO = Path(__file__).resolve().parents[2]
GROUP, VERSION = "blueprintd.io", "v1alpha1"
RESYNC = 4.0  # drift full-resync interval of the operator runs here (seconds)


@dataclass
class Member:
    """One member cluster as a drift scenario sees it."""

    fleet: Fleet
    bins: Binaries
    member: ClusterHandle
    uid: str
    ns: str  # management namespace
    alice: Path  # a person with cluster-admin rights on the member

    @property
    def cluster(self) -> str:
        return self.member.name


def run(cmd: list[str], check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, input=stdin)
    if check:
        assert proc.returncode == 0, f"{' '.join(cmd[:6])}...: {proc.stderr or proc.stdout}"
    return proc


def kubectl(env: Member, kubeconfig: Path, *args: str, check: bool = True, stdin: str | None = None) -> str:
    return run([str(env.bins.kubectl), "--kubeconfig", str(kubeconfig), *args], check, stdin).stdout


def as_alice(env: Member, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run([str(env.bins.kubectl), "--kubeconfig", str(env.alice), *args], check)


def helm_as_alice(env: Member, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run([str(env.bins.helm), "--kubeconfig", str(env.alice), *args], check)


def blueprintd(*args: str) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "blueprintd", *args], check=False)


def operator_process(fleet: Fleet, bins: Binaries, chart_repo: str, ns: str, log: Path) -> OperatorProcess:
    args = [
        sys.executable, "-m", "blueprintd", "operator", "--kubeconfig", str(fleet.management.kubeconfig),
        "-n", ns, "--helm", str(bins.helm), "--metrics-port", "0", "--member-resync", "3",
    ]
    for m in mirror_flags(chart_repo):
        args += ["--chart-mirror", m]
    return OperatorProcess(args, log, env={"BLUEPRINTD_DRIFT_RESYNC": str(RESYNC)})


def install_crds(env: Member) -> None:
    mgmt = env.fleet.management.kubeconfig
    kubectl(env, mgmt, "apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    kubectl(env, mgmt, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")


def register(env: Member, labels: dict[str, str], server: str | None = None) -> None:
    """The namespace, the kubeconfig Secret (``server``: e.g. a proxy's URL) and the MemberCluster."""
    docs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": env.ns}}]
    docs += member_registration(env.fleet, env.member, env.ns, labels, server)
    kubectl(env, env.fleet.management.kubeconfig, "apply", "--server-side", "-f", "-",
            stdin=yamltext.dump_all(docs))


def custom(env: Member) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(env.fleet.management.api_client())


def report(env: Member) -> dict[str, Any] | None:
    with contextlib.suppress(client.ApiException):
        obj: dict[str, Any] = custom(env).get_namespaced_custom_object(
            GROUP, VERSION, env.ns, "driftreports", env.cluster
        )
        return obj
    return None


def entries(env: Member) -> list[dict[str, Any]]:
    rep = report(env) or {}
    return list((rep.get("status") or {}).get("entries") or [])


def entry(env: Member, kind: str, name: str, path: str | None = None, **want: Any) -> dict[str, Any] | None:
    """The report entry of ``kind``/``name`` (and ``path``) whose fields match ``want``
    (``...``: the field is set; ``None``: it is not)."""
    for e in entries(env):
        if e["object"]["kind"] != kind or e["object"]["name"] != name or (path and e["path"] != path):
            continue
        if all(e.get(k) == v if v is not ... else e.get(k) for k, v in want.items()):
            return e
    return None


def mc_status(env: Member) -> dict[str, Any]:
    obj = custom(env).get_namespaced_custom_object(GROUP, VERSION, env.ns, "memberclusters", env.cluster)
    return dict(obj.get("status") or {})


def addon_state(env: Member, addon: str) -> str:
    return next((a["state"] for a in mc_status(env).get("addons") or [] if a["name"] == addon), "")


def member_core(env: Member) -> client.CoreV1Api:
    return client.CoreV1Api(env.member.api_client())


def remove_from_management(env: Member, blueprints: list[str]) -> None:
    mgmt = env.fleet.management.kubeconfig
    for bp in blueprints:
        kubectl(env, mgmt, "delete", "-n", env.ns, "blueprint", bp, "--ignore-not-found", "--wait=false", check=False)
        kubectl(env, mgmt, "delete", "-n", env.ns, "blueprintrevisions", "-l", f"blueprintd.io/blueprint={bp}",
                "--wait=false", check=False)
    kubectl(env, mgmt, "delete", "-n", env.ns, "driftreports,memberclusters", "--all", "--wait=false", check=False)
    kubectl(env, mgmt, "delete", "namespace", env.ns, "--ignore-not-found", "--wait=false", check=False)


def remove_from_member(env: Member, blueprints: list[str], releases: list[tuple[str, str]],
                       namespaces: list[str], label: str) -> None:
    kc = env.member.kubeconfig
    for release, ns in releases:
        run([str(env.bins.helm), "--kubeconfig", str(kc), "uninstall", release, "-n", ns], check=False)
    for bp in blueprints:
        for suffix in ("", "-nodes"):
            name = f"blueprintd-drift-block-{bp}{suffix}"
            kubectl(env, kc, "delete", "validatingadmissionpolicybinding,validatingadmissionpolicy", name,
                    "--ignore-not-found", check=False)
    kubectl(env, kc, "delete", "namespace", *namespaces, "--ignore-not-found", "--wait=false", check=False)
    for node in env.member.nodes:
        kubectl(env, kc, "label", "node", node, f"{label}-", check=False)


# --- the add-ons the drift scenarios install -----------------------------------------------------


def scheduler_addon(namespace: str, release: str) -> dict[str, Any]:
    """The KAI scheduler stand-in as a Helm add-on: a release whose rendered Deployment people edit."""
    return {
        "name": "scheduler",
        "namespace": namespace,
        "helm": {
            "repo": "oci://ghcr.io/nvidia/kai-scheduler",
            "chart": "kai-scheduler",
            "version": "v0.10.2",
            "releaseName": release,
            "values": {"global": {"gpuSharing": True}},
        },
        "readiness": {"timeoutSeconds": 60},
    }


def tenant_manifests() -> list[dict[str, Any]]:
    """A NetworkPolicy and a Deployment whose replicas an autoscaler owns (ignore /spec/replicas)."""
    return [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "deny-ingress"},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "inference"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "inference"}},
                "template": {
                    "metadata": {"labels": {"app": "inference"}},
                    "spec": {"containers": [{"name": "server", "image": "registry.local/infer:1"}]},
                },
            },
        },
    ]


REPLICAS_OWNED_BY_AUTOSCALER = {"ignore": [{"kind": "Deployment", "paths": ["/spec/replicas"]}]}
