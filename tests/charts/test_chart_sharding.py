"""charts/blueprintd runs 3 sharded replicas by default, with a PodDisruptionBudget and Lease RBAC."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from blueprintd.devfleet.binaries import Binaries

CHART = Path(__file__).resolve().parents[2] / "charts" / "blueprintd"


def rendered(helm: Path, *sets: str) -> dict[tuple[str, str], dict[str, Any]]:
    args = [str(helm), "template", "bpd", str(CHART), "-n", "x"]
    for s in sets:
        args += ["--set", s]
    out = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(out.stdout) if d}


def test_three_sharded_replicas_with_a_disruption_budget_and_lease_rbac(kube_binaries: Binaries) -> None:
    docs = rendered(kube_binaries.helm)
    deploy = docs[("Deployment", "blueprintd")]
    assert deploy["spec"]["replicas"] == 3
    container = deploy["spec"]["template"]["spec"]["containers"][0]
    assert "--shards" in container["args"] and "--shard-lease-seconds=15" in container["args"]
    assert not any(a.startswith("--peering") for a in container["args"])
    # The replica id is the pod name: distinct per replica, stable while the pod lives.
    assert {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in container["env"]
    pdb = docs[("PodDisruptionBudget", "blueprintd")]
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == deploy["spec"]["selector"]["matchLabels"]
    rules = docs[("Role", "blueprintd")]["rules"]
    lease_rule = next(r for r in rules if r["apiGroups"] == ["coordination.k8s.io"])
    assert lease_rule["resources"] == ["leases"]
    assert {"get", "list", "create", "update", "delete"} <= set(lease_rule["verbs"])


def test_a_single_unsharded_replica_has_no_budget_and_no_lease_rights(kube_binaries: Binaries) -> None:
    docs = rendered(kube_binaries.helm, "sharding.enabled=false", "replicas=1")
    assert ("PodDisruptionBudget", "blueprintd") not in docs
    args = docs[("Deployment", "blueprintd")]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--shards" not in args
    assert all(r["apiGroups"] != ["coordination.k8s.io"] for r in docs[("Role", "blueprintd")]["rules"])
