"""The generated CRDs on a real kube-apiserver: accepted, and their rules enforced server-side.

Unit tests prove the schema is structural by inspection; only an API server proves that it
accepts the CEL rules (syntax and cost budget) and enforces them the way users will meet them.
"""

from __future__ import annotations

import copy
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from blueprintd.devfleet.binaries import Binaries
from blueprintd.devfleet.fleet import ClusterHandle
from blueprintd.devfleet.testing import temp_namespace

pytestmark = pytest.mark.fleet

REPO_ROOT = Path(__file__).resolve().parents[2]


class Kubectl:
    def __init__(self, binaries: Binaries, cluster: ClusterHandle) -> None:
        self.argv = [str(binaries.kubectl), "--kubeconfig", str(cluster.kubeconfig)]

    def run(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.argv, *args], input=stdin, capture_output=True, text=True, timeout=60)

    def apply(self, obj: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        return self.run("apply", "--server-side", "--field-manager=crd-test", "-f", "-", stdin=yaml.safe_dump(obj))


@pytest.fixture(scope="module")
def kubectl(kube_binaries: Binaries, management: ClusterHandle) -> Kubectl:
    k = Kubectl(kube_binaries, management)
    done = k.run(
        "apply", "--server-side", "--force-conflicts", "--field-manager=crd-test", "-f", str(REPO_ROOT / "crds")
    )
    assert done.returncode == 0, done.stderr
    ready = k.run("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
    assert ready.returncode == 0, ready.stderr
    wait_for_parameters_policy(k)
    return k


def wait_for_parameters_policy(k: Kubectl) -> None:
    """Until the API server enforces the parameters policy (it loads new policies within seconds)."""
    probe: dict[str, Any] = {
        "apiVersion": "blueprintd.io/v1alpha1",
        "kind": "Blueprint",
        "metadata": {"name": "policy-probe", "namespace": "default"},
        "spec": {"version": "1.0.0", "parameters": {"p": "plain"}},
    }
    deadline = time.monotonic() + 60
    while True:
        done = k.run("apply", "--server-side", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump(probe))
        if "blueprint-parameters.blueprintd.io" in done.stderr:
            return
        assert time.monotonic() < deadline, f"the parameters policy is not enforced: {done.stderr or done.stdout}"
        time.sleep(0.5)


@pytest.fixture
def ns(management: ClusterHandle) -> Iterator[str]:
    with temp_namespace(management, "crd") as name:
        yield name


def default_blueprint(ns: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((REPO_ROOT / "blueprints/gpu-platform/blueprint.yaml").read_text())
    data["metadata"]["namespace"] = ns
    return data


def test_default_blueprint_is_accepted_and_listed(kubectl: Kubectl, ns: str) -> None:
    created = kubectl.apply(default_blueprint(ns))
    assert created.returncode == 0, created.stderr
    listed = kubectl.run("get", "bp", "-n", ns)
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()[:2]
    assert header.split()[:4] == ["NAME", "VERSION", "CLUSTERS", "READY"]
    assert row.split()[:2] == ["gpu-platform", "1.0.0"]


def test_changing_content_without_a_version_bump_is_refused(kubectl: Kubectl, ns: str) -> None:
    bp = default_blueprint(ns)
    assert kubectl.apply(bp).returncode == 0
    changed = copy.deepcopy(bp)
    changed["spec"]["parameters"]["timeSlicingReplicas"]["default"] = 8
    refused = kubectl.apply(changed)
    assert refused.returncode != 0
    assert "spec changed without a new spec.version: bump spec.version (semver)" in refused.stderr
    changed["spec"]["version"] = "1.1.0"
    accepted = kubectl.apply(changed)
    assert accepted.returncode == 0, accepted.stderr


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda s: s.update(version="1.0"), "spec.version in body should match"),
        (
            lambda s: s["addons"][0].update(manifests=[{"apiVersion": "v1", "kind": "ConfigMap"}]),
            "set exactly one of helm or manifests",
        ),
        (
            lambda s: s["overlays"][0].update(scope="cluster"),
            "nodeLabels are only allowed on overlays with scope nodePool",
        ),
        (lambda s: s["rollout"].update(canary={}), "set exactly one of count or selector"),
    ],
)
def test_server_side_rules(kubectl: Kubectl, ns: str, mutate: Any, message: str) -> None:
    bp = default_blueprint(ns)
    mutate(bp["spec"])
    refused = kubectl.apply(bp)
    assert refused.returncode != 0
    assert message in refused.stderr


def test_revisions_are_immutable(kubectl: Kubectl, ns: str) -> None:
    rev = {
        "apiVersion": "blueprintd.io/v1alpha1",
        "kind": "BlueprintRevision",
        "metadata": {"name": "gpu-platform-v1.0.0", "namespace": ns},
        "spec": {
            "blueprint": "gpu-platform",
            "version": "1.0.0",
            "contentHash": "sha256:0",
            "spec": default_blueprint(ns)["spec"],
        },
    }
    assert kubectl.apply(rev).returncode == 0
    rev["spec"]["contentHash"] = "sha256:1"
    refused = kubectl.apply(rev)
    assert refused.returncode != 0
    assert "BlueprintRevision is immutable" in refused.stderr


def test_other_kinds_are_served(kubectl: Kubectl, ns: str) -> None:
    objects = [
        {"kind": "MemberCluster", "spec": {"kubeconfigSecretRef": {"name": "m1"}}},
        {"kind": "GitSource", "spec": {"url": "https://git.example.com/p.git", "ref": {"branch": "main"}}},
        {"kind": "DriftReport", "spec": {"cluster": "m1"}},
    ]
    for obj in objects:
        obj.update(apiVersion="blueprintd.io/v1alpha1", metadata={"name": "m1", "namespace": ns})
        done = kubectl.apply(obj)
        assert done.returncode == 0, done.stderr
    explained = kubectl.run("explain", "membercluster.spec.allowExecAuth")
    assert "Allow kubeconfigs that run a command" in explained.stdout


# --- typed parameters (issue 18, item 6) -------------------------------------------------

PARAMETER_REFUSALS = [
    # the incident's commit, in both forms
    (
        {"type": "integer", "default": "many", "minimum": 1, "maximum": 64},
        "spec.parameters.timeSlicingReplicas.default: parameter timeSlicingReplicas: default \"many\" is not "
        "allowed (allowed: an integer from 1 to 64)",
    ),
    (
        "many",
        "spec.parameters.timeSlicingReplicas: parameter timeSlicingReplicas is \"many\" without a declared type; "
        "declare it as {type: string|integer|number|boolean, default: <value>}",
    ),
    (
        {"type": "integer", "default": 100, "minimum": 1, "maximum": 64},
        "default 100 is not allowed (allowed: an integer from 1 to 64)",
    ),
    ({"type": "integer", "default": 4.5}, "default 4.5 is not allowed (allowed: an integer)"),
    ({"type": "number", "default": True}, "default true is not allowed (allowed: a number)"),
    (
        {"type": "string", "default": "turbo", "enum": ["fast", "safe"]},
        'default "turbo" is not allowed (allowed: string, one of "fast", "safe")',
    ),
    (
        {"type": "int", "default": 4},
        'spec.parameters.timeSlicingReplicas.type: parameter timeSlicingReplicas has type "int" '
        "(allowed: string, integer, number, boolean)",
    ),
    ({"type": "integer"}, "parameter timeSlicingReplicas is a list or object without a declared type"),
    (
        {"type": "string", "default": "a", "minimum": 1},
        "minimum and maximum must be numbers with minimum <= maximum, only on integer and number parameters",
    ),
    (
        {"type": "integer", "default": 4, "minimum": 8, "maximum": 2},
        "minimum and maximum must be numbers with minimum <= maximum",
    ),
]


@pytest.mark.parametrize(("declaration", "message"), PARAMETER_REFUSALS)
def test_parameter_declarations_are_checked_at_admission(
    kubectl: Kubectl, ns: str, declaration: Any, message: str
) -> None:
    bp = default_blueprint(ns)
    bp["spec"]["parameters"]["timeSlicingReplicas"] = declaration
    refused = kubectl.apply(bp)
    assert refused.returncode != 0
    assert "ValidatingAdmissionPolicy 'blueprint-parameters.blueprintd.io'" in refused.stderr
    assert message in refused.stderr
    assert kubectl.run("get", "bp", "gpu-platform", "-n", ns).returncode != 0  # nothing was stored


def test_a_changed_parameter_is_checked_on_update(kubectl: Kubectl, ns: str) -> None:
    bp = default_blueprint(ns)
    assert kubectl.apply(bp).returncode == 0
    bp["spec"]["version"] = "1.5.0"
    bp["spec"]["parameters"]["timeSlicingReplicas"]["default"] = "many"
    refused = kubectl.apply(bp)
    assert refused.returncode != 0
    assert 'default "many" is not allowed (allowed: an integer from 1 to 64)' in refused.stderr
    bp["spec"]["parameters"]["timeSlicingReplicas"]["default"] = 8
    accepted = kubectl.apply(bp)
    assert accepted.returncode == 0, accepted.stderr


def test_parameter_declarations_are_explained(kubectl: Kubectl) -> None:
    explained = kubectl.run("explain", "blueprint.spec.parameters")
    assert explained.returncode == 0, explained.stderr
    text = " ".join(explained.stdout.split())
    assert "Typed settings overlays read as params.<name>" in text
    assert "MemberClusters override the value (spec.parameters) within the same bounds" in text


def test_blueprints_stored_untyped_stay_writable(kubectl: Kubectl, ns: str) -> None:
    """The migration: a Blueprint stored before parameters were typed (here: while the policy was
    not installed) keeps its status and metadata writable; a changed parameter must be declared."""
    legacy = default_blueprint(ns)
    legacy["metadata"]["name"] = "legacy"
    legacy["spec"]["parameters"] = {"timeSlicingReplicas": 4}
    policy = str(REPO_ROOT / "crds" / "admissionpolicy-blueprint-parameters.yaml")
    try:
        removed = kubectl.run("delete", "-f", policy, "--wait=true")
        assert removed.returncode == 0, removed.stderr
        _until(lambda: kubectl.apply(legacy).returncode == 0, "the policy to be unloaded")
    finally:
        back = kubectl.run("apply", "--server-side", "--force-conflicts", "--field-manager=crd-test", "-f", policy)
        assert back.returncode == 0, back.stderr
    wait_for_parameters_policy(kubectl)

    status = kubectl.run("patch", "bp", "legacy", "-n", ns, "--subresource=status", "--type=merge",
                         "-p", '{"status": {"matchedClusters": 3}}')
    assert status.returncode == 0, status.stderr
    labelled = kubectl.run("label", "bp", "legacy", "-n", ns, "team=platform")
    assert labelled.returncode == 0, labelled.stderr

    changed = copy.deepcopy(legacy)
    changed["spec"]["version"] = "1.5.0"
    changed["spec"]["parameters"]["timeSlicingReplicas"] = "many"
    refused = kubectl.apply(changed)
    assert refused.returncode != 0
    assert 'parameter timeSlicingReplicas is "many" without a declared type' in refused.stderr
    changed["spec"]["parameters"]["timeSlicingReplicas"] = {"type": "integer", "default": 8, "minimum": 1}
    migrated = kubectl.apply(changed)
    assert migrated.returncode == 0, migrated.stderr


def _until(check: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)
