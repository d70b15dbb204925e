"""The demo: a local fleet converging on the GPU platform blueprint, end to end.

Management + 3 members (an H100 MIG cluster, an L4 cluster, a mixed H100 + L4 + CPU cluster),
the CRDs, the operator (a detached process recorded with the fleet, so ``dev down`` stops
it), MemberClusters with kubeconfig Secrets, then ``examples/`` applied with kubectl and the
fleet's progress shown until every member has converged. It uses exactly what a user would:
the CLI, kubectl and the operator; the only simulation is the fleet itself.
"""

from __future__ import annotations

import base64
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from blueprintd.api import yamltext
from blueprintd.devfleet.binaries import Binaries
from blueprintd.devfleet.chartserve import REPO_ROOT, start_detached_chart_repo
from blueprintd.devfleet.fleet import ClusterHandle, Fleet
from blueprintd.devfleet.nodes import FleetFile, MemberSpec, NodeGroupSpec
from blueprintd.errors import DevFleetError

NAMESPACE = "blueprintd-system"
OPERATOR_USER = "blueprintd-operator"

DEMO_FLEET = FleetFile(
    members=[
        MemberSpec(
            name="h100-mig",
            labels={"env": "demo", "region": "eu-1", "gpu": "h100"},
            nodes=[NodeGroupSpec(profile="h100-mig", count=2), NodeGroupSpec(profile="cpu", count=1)],
        ),
        MemberSpec(
            name="l4-inference",
            labels={"env": "demo", "region": "us-1", "gpu": "l4"},
            nodes=[NodeGroupSpec(profile="l4", count=3), NodeGroupSpec(profile="cpu", count=1)],
        ),
        MemberSpec(
            name="mixed",
            labels={"env": "demo", "region": "us-2", "gpu": "mixed"},
            nodes=[
                NodeGroupSpec(profile="h100", count=2),
                NodeGroupSpec(profile="l4", count=2),
                NodeGroupSpec(profile="cpu", count=1),
            ],
        ),
    ]
)

UPSTREAM_REPOS = (
    "https://helm.ngc.nvidia.com/nvidia",
    "oci://ghcr.io/blueprintd/charts",
    "oci://ghcr.io/nvidia/kai-scheduler",
    "https://open-policy-agent.github.io/gatekeeper/charts",
    "oci://ghcr.io/kata-containers/kata-deploy-charts",
    "https://nvidia.github.io/dcgm-exporter/helm-charts",
)


def kubectl(bins: Binaries, kubeconfig: Path, *args: str, stdin: str | None = None) -> str:
    proc = subprocess.run(
        [str(bins.kubectl), "--kubeconfig", str(kubeconfig), *args], input=stdin, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise DevFleetError(f"kubectl {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def mirror_flags(url: str) -> list[str]:
    return [f"{u}={url}" for u in UPSTREAM_REPOS]


def member_registration(
    fleet: Fleet,
    member: ClusterHandle,
    namespace: str = NAMESPACE,
    labels: dict[str, str] | None = None,
    server: str | None = None,
) -> list[dict[str, Any]]:
    """The kubeconfig Secret (the operator's identity on ``member``; ``server`` replaces the API
    server URL, e.g. with a proxy's) and the MemberCluster, as a platform team would write them."""
    kc = yaml.safe_load(fleet.mint_kubeconfig(member.name, OPERATOR_USER, ["system:masters"]).read_text())
    if server:
        for c in kc["clusters"]:
            c["cluster"]["server"] = server
    return [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {"name": f"{member.name}-kubeconfig", "namespace": namespace},
            "data": {"kubeconfig": base64.b64encode(yamltext.dump(kc).encode()).decode()},
        },
        {
            "apiVersion": "blueprintd.io/v1alpha1",
            "kind": "MemberCluster",
            "metadata": {"name": member.name, "namespace": namespace, "labels": {**member.labels, **(labels or {})}},
            "spec": {"kubeconfigSecretRef": {"name": f"{member.name}-kubeconfig", "key": "kubeconfig"}},
        },
    ]


def register_members(
    fleet: Fleet, bins: Binaries, namespace: str = NAMESPACE, members: list[ClusterHandle] | None = None
) -> None:
    """A kubeconfig Secret and a MemberCluster per member (``members``: only these), and their
    namespace."""
    docs: list[dict[str, Any]] = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}]
    for m in fleet.members if members is None else members:
        docs += member_registration(fleet, m, namespace)
    kubectl(bins, fleet.management.kubeconfig, "apply", "--server-side", "-f", "-", stdin=yamltext.dump_all(docs))


def start_operator(fleet: Fleet, bins: Binaries, namespace: str = NAMESPACE, resync: float = 5.0) -> None:
    args = [
        "operator",
        "--kubeconfig",
        str(fleet.management.kubeconfig),
        "-n",
        namespace,
        "--helm",
        str(bins.helm),
        "--metrics-port",
        "0",
        "--member-resync",
        str(resync),
    ]
    for m in mirror_flags(fleet.chart_repo_url):
        args += ["--chart-mirror", m]
    fleet.start_helper("operator", "blueprintd", *args)


def run_demo(directory: Path, bins: Binaries, say: Callable[[str], None], timeout: float = 600) -> int:
    directory = directory.resolve()
    if (directory / "fleet.json").exists():
        fleet = Fleet.load(directory)
        if fleet.running_processes():
            raise DevFleetError(
                f"a fleet is already running in {directory}: `blueprintd dev down --dir {directory}` "
                "first, or explore it with `blueprintd status`"
            )
        fleet.down(remove=True)
    say("1/5 starting the local fleet: management + 3 member clusters with simulated GPU nodes")
    fleet = Fleet.up(directory, DEMO_FLEET, bins, progress=lambda m: say(f"    {m}"))
    fleet.start_helper("standins", "blueprintd.devfleet.standins", str(fleet.directory))
    start_detached_chart_repo(fleet, progress=lambda m: say(f"    {m}"))
    mgmt = fleet.management.kubeconfig
    say("2/5 installing the blueprintd CRDs into the management cluster")
    kubectl(bins, mgmt, "apply", "--server-side", "-f", str(REPO_ROOT / "crds"))
    kubectl(bins, mgmt, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    say("3/5 registering the member clusters (kubeconfig Secrets + MemberCluster objects)")
    register_members(fleet, bins)
    say("4/5 starting the operator (chart mirror -> the local chart repository)")
    start_operator(fleet, bins)
    say("5/5 applying examples/: the GPU platform blueprint")
    kubectl(bins, mgmt, "apply", "-n", NAMESPACE, "-f", str(REPO_ROOT / "examples" / "gpu-platform.yaml"))
    ok = watch_convergence(fleet, bins, say, timeout)
    subprocess.run([sys.executable, "-m", "blueprintd", "status", "--kubeconfig", str(mgmt), "-n", NAMESPACE])
    say("")
    say(
        f"explore: export KUBECONFIG={mgmt}; kubectl get blueprints,memberclusters -n {NAMESPACE}; "
        f"blueprintd status -n {NAMESPACE}   |   stop: blueprintd dev down --dir {directory}"
    )
    return 0 if ok else 1


def watch_convergence(fleet: Fleet, bins: Binaries, say: Callable[[str], None], timeout: float) -> bool:
    import json

    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if fleet.helper_exit_status("operator") is not None:
            log = (fleet.directory / "logs" / "operator.log").read_text()[-3000:]
            raise DevFleetError(f"the operator stopped:\n{log}")
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "blueprintd",
                "status",
                "--kubeconfig",
                str(fleet.management.kubeconfig),
                "-n",
                NAMESPACE,
                "-o",
                "json",
            ],
            capture_output=True,
            text=True,
        )
        try:
            data = json.loads(out.stdout)
        except ValueError:
            time.sleep(2)
            continue
        line = "    " + " | ".join(
            f"{c['name']}: "
            + (
                ", ".join(f"{p['blueprint']}@{p['version']} {p['state']}" for p in c["blueprints"])
                or ("connecting" if not c["reachable"] else "waiting for rollout")
            )
            + f" ({c['addons']['ready']}/{c['addons']['total']} add-ons)"
            for c in data["clusters"]
        )
        if line != last:
            say(line)
            last = line
        if out.returncode == 0 and data["clusters"]:
            say("all member clusters converged")
            return True
        time.sleep(2)
    say(f"not converged after {timeout:.0f}s; see {fleet.directory / 'logs' / 'operator.log'}")
    return False
