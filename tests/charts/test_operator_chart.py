"""charts/blueprintd: installs the operator with least privilege (checked by the API server's RBAC)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from blueprintd.devfleet.binaries import Binaries
from blueprintd.devfleet.fleet import Fleet
from blueprintd.devfleet.testing import unique_name

pytestmark = pytest.mark.fleet
CHART = Path(__file__).resolve().parents[2] / "charts" / "blueprintd"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=120)


def test_operator_chart_installs_with_least_privilege(fleet: Fleet, kube_binaries: Binaries) -> None:
    ns = unique_name("bpd-chart")
    kc = str(fleet.management.kubeconfig)
    install = _run(str(kube_binaries.helm), "install", "bpd", str(CHART), "-n", ns, "--create-namespace",
                   "--kubeconfig", kc, "--set", "chartMirrors.https://helm\\.ngc\\.nvidia\\.com/nvidia=http://mirror",
                   "--set", "gitWebhook.port=9443")
    assert install.returncode == 0, install.stderr
    try:
        kubectl = [str(kube_binaries.kubectl), "--kubeconfig", kc]
        crds = _run(*kubectl, "get", "crd", "-o", "name").stdout
        assert "blueprints.blueprintd.io" in crds and "memberclusters.blueprintd.io" in crds
        args = _run(*kubectl, "get", "deploy", "blueprintd", "-n", ns, "-o",
                    "jsonpath={.spec.template.spec.containers[0].args}").stdout
        assert "--chart-mirror=https://helm.ngc.nvidia.com/nvidia=http://mirror" in args
        assert "--webhook-port=9443" in args
        svc = _run(*kubectl, "get", "service", "blueprintd-git-webhook", "-n", ns, "-o",
                   "jsonpath={.spec.ports[0].targetPort}").stdout
        assert svc == "git-webhook", "GitSource push webhooks reach the operator through a Service"
        sa = f"system:serviceaccount:{ns}:blueprintd"

        def can(*what: str) -> str:
            return _run(*kubectl, "auth", "can-i", "--as", sa, *what).stdout.strip()

        assert can("patch", "memberclusters.blueprintd.io/status", "-n", ns) == "yes"
        assert can("get", "secrets", "-n", ns) == "yes"
        assert can("update", "leases.coordination.k8s.io", "-n", ns) == "yes", "sharded replicas renew Leases"
        assert can("list", "secrets", "-n", ns) == "no", "kubeconfig Secrets are read by name only"
        assert can("get", "secrets", "-n", "kube-system") == "no"
        assert can("create", "deployments", "-n", ns) == "no"
        assert can("list", "customresourcedefinitions") == "yes"
        assert can("delete", "customresourcedefinitions") == "no"
    finally:
        _run(str(kube_binaries.helm), "uninstall", "bpd", "-n", ns, "--kubeconfig", kc)
