"""Is an add-on ready? Health gates between dependent add-ons.

``object_ready`` is pure (one object's status → ready + reason), so the same rules serve the
reconciler's gates and the status a user reads. An add-on is ready when its Helm release is
deployed, every workload it rendered reports ready, every CRD it ships is Established, and
its explicit ``readiness.checks`` pass.
"""

from __future__ import annotations

from typing import Any

WORKLOAD_KINDS = frozenset({"Deployment", "DaemonSet", "StatefulSet", "Job", "CustomResourceDefinition"})


def object_ready(obj: dict[str, Any] | None) -> tuple[bool, str]:
    """Readiness of one live object, with a reason a user can act on."""
    if obj is None:
        return False, "not found"
    kind = obj.get("kind", "")
    name = (obj.get("metadata") or {}).get("name", "")
    status = obj.get("status") or {}
    gen = (obj.get("metadata") or {}).get("generation")
    observed = status.get("observedGeneration")
    if kind in ("Deployment", "StatefulSet", "DaemonSet") and gen is not None and observed != gen:
        return False, f"{kind} {name}: controller has not observed generation {gen} yet"
    if kind == "Deployment":
        want = (obj.get("spec") or {}).get("replicas", 1)
        have = status.get("availableReplicas") or 0
        updated = status.get("updatedReplicas") or 0
        return (have >= want and updated >= want), f"Deployment {name}: {have}/{want} available"
    if kind == "StatefulSet":
        want = (obj.get("spec") or {}).get("replicas", 1)
        have = status.get("readyReplicas") or 0
        return have >= want, f"StatefulSet {name}: {have}/{want} ready"
    if kind == "DaemonSet":
        want = status.get("desiredNumberScheduled", 0)
        have = status.get("numberReady") or 0
        updated = status.get("updatedNumberScheduled") or 0
        return (have >= want and updated >= want), f"DaemonSet {name}: {have}/{want} ready"
    if kind == "Job":
        conds = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
        if conds.get("Failed") == "True":
            return False, f"Job {name} failed"
        return conds.get("Complete") == "True", f"Job {name}: {'complete' if conds.get('Complete') else 'running'}"
    if kind == "CustomResourceDefinition":
        conds = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
        return conds.get(
            "Established"
        ) == "True", f"CRD {name}: {'established' if conds.get('Established') else 'not established'}"
    return True, f"{kind} {name}: exists"


def gated_refs(rendered: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The objects of a release/manifest add-on whose readiness gates the add-on."""
    return [o for o in rendered if isinstance(o, dict) and o.get("kind") in WORKLOAD_KINDS]


CHECK_API = {
    "Deployment": ("apps/v1", "Deployment"),
    "DaemonSet": ("apps/v1", "DaemonSet"),
    "StatefulSet": ("apps/v1", "StatefulSet"),
    "Job": ("batch/v1", "Job"),
    "CRD": ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
}
