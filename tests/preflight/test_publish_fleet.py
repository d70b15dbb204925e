"""The chart pre-flight at publish time, end to end: the real ``blueprintd operator`` process,
real API servers, real helm and the stand-in charts served on 127.0.0.1.

A version whose kata-deploy values the chart refuses is never captured as a revision and never
reaches a member: Valid=False names the add-on, the cluster it was rendered for and Helm's
message. The corrected version is published.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from blueprintd.devfleet.binaries import Binaries
from blueprintd.devfleet.demo import mirror_flags, register_members
from blueprintd.devfleet.fleet import Fleet
from blueprintd.devfleet.nodes import FleetFile, MemberSpec, NodeGroupSpec
from blueprintd.devfleet.standins import StandIns
from blueprintd.devfleet.testing import OperatorProcess, running_fleet, wait_for

pytestmark = pytest.mark.fleet

REPO = Path(__file__).resolve().parents[2]
NS = "blueprintd-system"
GROUP, VERSION = "blueprintd.io", "v1alpha1"
FLEET = FleetFile(
    members=[
        # api-only: nothing is meant to reach these members; the stand-ins play the controllers.
        MemberSpec(name="pf-mixed", labels={"env": "test"}, control_plane="api-only",
                   nodes=[NodeGroupSpec(profile="h100", count=1), NodeGroupSpec(profile="l4", count=1)]),
        MemberSpec(name="pf-l4", labels={"env": "test"}, control_plane="api-only",
                   nodes=[NodeGroupSpec(profile="l4", count=1)]),
    ]
)


def kubectl(bins: Binaries, fleet: Fleet, *args: str, stdin: str | None = None) -> str:
    proc = subprocess.run([str(bins.kubectl), "--kubeconfig", str(fleet.management.kubeconfig), *args],
                          input=stdin, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def fleet(kube_binaries: Binaries, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with running_fleet(tmp_path_factory.mktemp("pffleet"), FLEET, kube_binaries) as f:
        sim = StandIns(f)
        sim.start()
        try:
            kubectl(kube_binaries, f, "apply", "--server-side", "-f", str(REPO / "crds"))
            kubectl(kube_binaries, f, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
            register_members(f, kube_binaries, NS)
            yield f
        finally:
            sim.stop()


@pytest.fixture(scope="module")
def operator(fleet: Fleet, kube_binaries: Binaries, chart_repo: str,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    work = tmp_path_factory.mktemp("pfop")
    args = [sys.executable, "-m", "blueprintd", "operator", "--kubeconfig", str(fleet.management.kubeconfig),
            "-n", NS, "--helm", str(kube_binaries.helm), "--metrics-port", "0", "--member-resync", "2"]
    for m in mirror_flags(chart_repo):
        args += ["--chart-mirror", m]
    op = OperatorProcess(args, work / "operator.log")
    op.start()
    try:
        yield op
    finally:
        op.stop()


def blueprint(version: str, kata_shims: dict[str, Any]) -> dict[str, Any]:
    doc = yaml.safe_load((REPO / "blueprints" / "gpu-platform" / "blueprint.yaml").read_text())
    doc["spec"]["version"] = version
    kata = next(a for a in doc["spec"]["addons"] if a["name"] == "kata")
    kata["helm"]["values"]["shims"] = kata_shims
    return dict(doc)


def custom(fleet: Fleet) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(fleet.management.api_client())


def valid_condition(fleet: Fleet) -> dict[str, Any] | None:
    bp = custom(fleet).get_namespaced_custom_object(GROUP, VERSION, NS, "blueprints", "gpu-platform")
    return next((c for c in (bp.get("status") or {}).get("conditions") or [] if c["type"] == "Valid"), None)


def revisions(fleet: Fleet) -> list[str]:
    items = custom(fleet).list_namespaced_custom_object(GROUP, VERSION, NS, "blueprintrevisions")["items"]
    return sorted(i["metadata"]["name"] for i in items)


def member_footprint(fleet: Fleet) -> dict[str, list[str]]:
    """Per member: Helm release records and the add-on namespaces, i.e. anything applied."""
    out = {}
    for m in fleet.members:
        core = client.CoreV1Api(m.api_client())
        releases = core.list_secret_for_all_namespaces(field_selector="type=helm.sh/release.v1").items
        namespaces = {n.metadata.name for n in core.list_namespace().items}
        addon_namespaces = namespaces & {"gpu-operator", "kata-system", "kai-scheduler", "gatekeeper-system"}
        out[m.name] = sorted([s.metadata.name for s in releases] + sorted(addon_namespaces))
    return out


def test_a_wrong_kata_key_is_refused_at_publish_and_nothing_reaches_a_member(
    fleet: Fleet, operator: OperatorProcess, kube_binaries: Binaries
) -> None:
    # What the real kata-deploy 3.24.0 dies on: `disableAll` is not a shim.
    wrong = {"disableAll": True, "qemu-nvidia-gpu": {"enabled": True}}
    kubectl(kube_binaries, fleet, "apply", "-n", NS, "-f", "-", stdin=yaml.safe_dump(blueprint("1.0.0", wrong)))

    cond = wait_for(lambda: (c := valid_condition(fleet)) and c["status"] == "False" and c,
                    timeout=180, interval=0.5, what=f"Valid=False (operator log: {operator.tail()})")
    assert cond["reason"] == "ChartPreflightFailed"
    msg = cond["message"]
    assert msg.startswith("chart pre-flight failed for version 1.0.0:")
    problem_lines = msg.splitlines()[1:]
    # One line for the kata add-on, naming both clusters it was rendered for and Helm's message.
    assert problem_lines == [
        "add-on kata (kata-deploy 3.24.0) for pf-l4, pf-mixed: schema: shims.disableAll: got boolean, want object"
    ] or problem_lines == [
        "add-on kata (kata-deploy 3.24.0) for pf-mixed, pf-l4: schema: shims.disableAll: got boolean, want object"
    ]
    assert revisions(fleet) == [], "a refused version is not captured"

    # The members are reconciled (reachable, facts read) and still receive nothing.
    for m in fleet.members:
        wait_for(lambda name=m.name: (custom(fleet).get_namespaced_custom_object(
            GROUP, VERSION, NS, "memberclusters", name).get("status") or {}).get("factsSummary"),
            timeout=120, interval=0.5, what=f"member {m.name} reconciled")
    assert member_footprint(fleet) == {m.name: [] for m in fleet.members}
    bp = custom(fleet).get_namespaced_custom_object(GROUP, VERSION, NS, "blueprints", "gpu-platform")
    assert "rollout" not in (bp.get("status") or {}), "no rollout started"

    # The fix: every key under shims is a shim. The corrected version is published.
    right = {"qemu": {"enabled": False}, "qemu-nvidia-gpu": {"enabled": True}}
    kubectl(kube_binaries, fleet, "apply", "-n", NS, "-f", "-", stdin=yaml.safe_dump(blueprint("1.0.1", right)))
    ok = wait_for(lambda: (c := valid_condition(fleet)) and c["status"] == "True" and c,
                  timeout=180, interval=0.5, what=f"Valid=True (operator log: {operator.tail()})")
    assert ok["reason"] == "Published"
    assert revisions(fleet) == ["gpu-platform-v1.0.1"]
