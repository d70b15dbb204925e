"""A CEL bomb in one Blueprint fails only that Blueprint's render, and the operator keeps going.

The real ``blueprintd operator`` process on a private fleet (management + 2 members). The
operator runs with the static CEL cost limit raised, so a Blueprint carrying the issue's
five-nested-comprehension bomb is published (the worst case: it slipped past validation)
and selects member ``victim``; its runtime cost budget is raised too, so each bomb render
runs until the render deadline, burning a core. Meanwhile another Blueprint converges on
member ``steady`` and takes new versions; the time each version takes to reach the member is
measured and printed (the operator's responsiveness under the bomb).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client

from blueprintd.devfleet.binaries import Binaries
from blueprintd.devfleet.demo import register_members
from blueprintd.devfleet.fleet import Fleet
from blueprintd.devfleet.nodes import FleetFile, MemberSpec, NodeGroupSpec
from blueprintd.devfleet.testing import or_none, running_fleet, wait_for

pytestmark = pytest.mark.fleet

NS = "blueprintd-system"
GROUP, VERSION = "blueprintd.io", "v1alpha1"
RENDER_TIMEOUT = 3
THIRTY = "[" + ",".join(str(i) for i in range(30)) + "]"
BOMB = f"{THIRTY}.all(a, {THIRTY}.all(b, {THIRTY}.all(c, {THIRTY}.all(d, {THIRTY}.all(e, a+b+c+d+e >= 0)))))"

BOMB_FLEET = FleetFile(
    members=[
        MemberSpec(name="victim", labels={"role": "bomb"}, nodes=[NodeGroupSpec(profile="h100", count=1)]),
        MemberSpec(name="steady", labels={"role": "good"}, nodes=[NodeGroupSpec(profile="l4", count=1)]),
    ]
)


def kubectl(bins: Binaries, fleet: Fleet, *args: str, stdin: str | None = None) -> str:
    proc = subprocess.run(
        [str(bins.kubectl), "--kubeconfig", str(fleet.management.kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def bomb_fleet(kube_binaries: Binaries, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with running_fleet(tmp_path_factory.mktemp("bombfleet"), BOMB_FLEET, kube_binaries) as fleet:
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        kubectl(kube_binaries, fleet, "apply", "--server-side", "-f", os.path.join(root, "crds"))
        kubectl(kube_binaries, fleet, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        register_members(fleet, kube_binaries, NS)
        yield fleet


@pytest.fixture(scope="module")
def operator(
    bomb_fleet: Fleet, kube_binaries: Binaries, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[subprocess.Popen[bytes]]:
    log = (tmp_path_factory.mktemp("oplog") / "operator.log").open("ab")
    env = {
        **os.environ,
        "BLUEPRINTD_CEL_COST_LIMIT": str(10**15),  # the bomb slips past validation
        "BLUEPRINTD_CEL_COST_BUDGET": str(10**15),  # and only the deadline stops its renders
        "BLUEPRINTD_RENDER_TIMEOUT": str(RENDER_TIMEOUT),
    }
    args = [
        sys.executable, "-m", "blueprintd", "operator", "--kubeconfig", str(bomb_fleet.management.kubeconfig),
        "-n", NS, "--helm", str(kube_binaries.helm), "--metrics-port", "0", "--member-resync", "2",
    ]  # fmt: skip
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def blueprint(name: str, version: str, role: str, data: dict[str, str], when: str = "true") -> dict[str, Any]:
    return {
        "apiVersion": "blueprintd.io/v1alpha1",
        "kind": "Blueprint",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "version": version,
            "clusterSelector": {"matchLabels": {"role": role}},
            "addons": [
                {
                    "name": "settings",
                    "namespace": "default",
                    "manifests": [
                        {
                            "apiVersion": "v1",
                            "kind": "ConfigMap",
                            "metadata": {"name": f"{name}-settings", "namespace": "default"},
                            "data": {"base": "1"},
                        }
                    ],
                }
            ],
            "overlays": [
                {
                    "name": name,
                    "scope": "nodePool",
                    "when": when,
                    "patches": [
                        {
                            "addon": "settings",
                            "target": {"kind": "ConfigMap", "name": f"{name}-settings"},
                            "mergePatch": {"data": data},
                        }
                    ],
                }
            ],
        },
    }


def member_progress(fleet: Fleet, member: str, blueprint_name: str) -> dict[str, Any]:
    obj = client.CustomObjectsApi(fleet.management.api_client()).get_namespaced_custom_object(
        GROUP, VERSION, NS, "memberclusters", member
    )
    entries = (obj.get("status") or {}).get("blueprints") or []
    return next((e for e in entries if e.get("blueprint") == blueprint_name), {})


def config_map(fleet: Fleet, member: str, name: str) -> dict[str, str] | None:
    core = client.CoreV1Api(fleet.cluster(member).api_client())
    cm = or_none(lambda: core.read_namespaced_config_map(name, "default"))
    return dict(cm.data or {}) if cm is not None else None


def test_bomb_fails_only_its_member_while_another_blueprint_keeps_converging(
    bomb_fleet: Fleet, operator: subprocess.Popen[bytes], kube_binaries: Binaries
) -> None:
    def apply(doc: dict[str, Any]) -> None:
        kubectl(kube_binaries, bomb_fleet, "apply", "-f", "-", stdin=yaml.safe_dump(doc))

    apply(blueprint("bomb", "1.0.0", "bomb", {"bomb": "fired"}, when=BOMB))
    apply(blueprint("good", "1.0.0", "good", {"round": "0"}))

    failed = wait_for(
        lambda: (p := member_progress(bomb_fleet, "victim", "bomb")).get("state") == "Failed" and p,
        timeout=180,
        interval=0.5,
        what="the bomb's render to fail on victim",
    )
    message = failed["message"]
    assert "Blueprint 'bomb' overlay 'bomb'" in message and "spec.overlays[0].when" in message, message
    assert f"render deadline of {RENDER_TIMEOUT}s" in message, message
    assert config_map(bomb_fleet, "victim", "bomb-settings") is None, "nothing of the bomb reaches its member"
    wait_for(lambda: config_map(bomb_fleet, "steady", "good-settings"), timeout=120, interval=0.5, what="good 1.0.0")

    # New versions of both: every bomb version is a new revision, rendered again for victim
    # (another deadline's worth of CPU each) while each good version has to reach steady.
    latencies = []
    for round_ in range(1, 4):
        started = time.monotonic()
        apply(blueprint("bomb", f"1.0.{round_}", "bomb", {"bomb": str(round_)}, when=BOMB))
        apply(blueprint("good", f"1.0.{round_}", "good", {"round": str(round_)}))
        wait_for(
            lambda r=round_: (config_map(bomb_fleet, "steady", "good-settings") or {}).get("round") == str(r),
            timeout=120,
            interval=0.2,
            what=f"good 1.0.{round_} on steady",
        )
        latencies.append(time.monotonic() - started)
    print(f"\ngood Blueprint version → member latencies under the bomb: {[f'{s:.1f}s' for s in latencies]}")

    last = wait_for(
        lambda: (
            (p := member_progress(bomb_fleet, "victim", "bomb")).get("version") == "1.0.3"
            and p.get("state") == "Failed"
            and p
        ),
        timeout=120,
        interval=0.5,
        what="the bomb's latest version to fail on victim",
    )
    assert f"render deadline of {RENDER_TIMEOUT}s" in last["message"]
    assert config_map(bomb_fleet, "victim", "bomb-settings") is None
    assert operator.poll() is None, "the operator is still running"


def test_a_bomb_over_the_operator_limit_is_refused_before_publishing(
    bomb_fleet: Fleet, operator: subprocess.Popen[bytes], kube_binaries: Binaries
) -> None:
    """Admission: the operator validates before it creates a BlueprintRevision, with its own
    (here raised) limits; eleven nested comprehensions are over even those."""
    eleven = "a0 >= 0"
    for i in range(11):
        eleven = f"{THIRTY}.all(a{i}, {eleven})"
    doc = blueprint("bigger", "1.0.0", "bomb", {"x": "1"}, when=eleven)
    kubectl(kube_binaries, bomb_fleet, "apply", "-f", "-", stdin=yaml.safe_dump(doc))
    api = client.CustomObjectsApi(bomb_fleet.management.api_client())

    def valid_condition() -> dict[str, Any] | None:
        obj = api.get_namespaced_custom_object(GROUP, VERSION, NS, "blueprints", "bigger")
        conds = (obj.get("status") or {}).get("conditions") or []
        return next((c for c in conds if c["type"] == "Valid"), None)

    cond = wait_for(valid_condition, timeout=60, interval=0.5, what="Valid condition of 'bigger'")
    assert cond["status"] == "False", cond
    assert "spec.overlays[0].when" in cond["message"] and "estimated CEL cost" in cond["message"], cond
    assert f"exceeds the limit of {10**15}" in cond["message"], cond
    revisions = api.list_namespaced_custom_object(GROUP, VERSION, NS, "blueprintrevisions")["items"]
    assert not [r for r in revisions if r["spec"]["blueprint"] == "bigger"], "no revision: nothing reaches a member"
    assert member_progress(bomb_fleet, "victim", "bigger") == {}
