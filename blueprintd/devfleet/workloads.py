"""Play kube-controller-manager and the kubelets for workload status in the local fleet.

The fleet runs API servers only: no controller ever reports a Deployment available or a
DaemonSet scheduled, so readiness gates (which a real operator must have) would wait
forever. This simulator watches Deployments, DaemonSets, StatefulSets and Jobs in member
clusters and writes the status a healthy cluster would report — DaemonSets count the nodes
their nodeSelector matches, so a GPU DaemonSet on a CPU-only cluster schedules nothing.

A workload annotated ``devfleet.blueprintd.io/unhealthy: "true"`` is left unready, so tests
can make a health gate fail on purpose. It runs under its own identity
(``devfleet:controllers``) so audit-log counts of the operator's writes stay exact.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

from blueprintd.devfleet.fleet import Fleet

UNHEALTHY = "devfleet.blueprintd.io/unhealthy"
IDENTITY = "devfleet:controllers"

_KINDS = (
    ("apps/v1", "Deployment"),
    ("apps/v1", "DaemonSet"),
    ("apps/v1", "StatefulSet"),
    ("batch/v1", "Job"),
)


def _matches(selector: dict[str, str] | None, labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in (selector or {}).items())


def desired_status(
    kind: str, obj: dict[str, Any], node_labels: list[dict[str, str]]
) -> dict[str, Any] | None:
    """The status a healthy cluster would report for ``obj`` (None: leave it alone)."""
    meta = obj.get("metadata") or {}
    if (meta.get("annotations") or {}).get(UNHEALTHY) == "true":
        return None
    spec = obj.get("spec") or {}
    gen = meta.get("generation", 1)
    if kind == "Deployment":
        n = spec.get("replicas", 1)
        return {
            "observedGeneration": gen,
            "replicas": n,
            "updatedReplicas": n,
            "readyReplicas": n,
            "availableReplicas": n,
            "conditions": [
                {
                    "type": "Available",
                    "status": "True",
                    "reason": "MinimumReplicasAvailable",
                    "message": "simulated by blueprintd devfleet",
                }
            ],
        }
    if kind == "StatefulSet":
        n = spec.get("replicas", 1)
        return {
            "observedGeneration": gen,
            "replicas": n,
            "readyReplicas": n,
            "currentReplicas": n,
            "updatedReplicas": n,
            "availableReplicas": n,
        }
    if kind == "DaemonSet":
        selector = ((spec.get("template") or {}).get("spec") or {}).get("nodeSelector")
        n = sum(1 for labels in node_labels if _matches(selector, labels))
        return {
            "observedGeneration": gen,
            "currentNumberScheduled": n,
            "desiredNumberScheduled": n,
            "numberReady": n,
            "numberAvailable": n,
            "updatedNumberScheduled": n,
            "numberMisscheduled": 0,
        }
    if kind == "Job":
        return {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}
    return None


def _needs(status: dict[str, Any] | None, want: dict[str, Any]) -> bool:
    have = status or {}
    return any(have.get(k) != v for k, v in want.items() if k != "conditions") or (
        "conditions" in want
        and not any(
            c.get("type") == want["conditions"][0]["type"] and c.get("status") == "True"
            for c in have.get("conditions") or []
        )
    )


class WorkloadSimulator:
    """Background threads, one per (member cluster, workload kind)."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for member in self.fleet.members:
            kubeconfig = self.fleet.mint_kubeconfig(member.name, IDENTITY, ["system:masters"])
            for api_version, kind in _KINDS:
                t = threading.Thread(
                    target=self._run,
                    args=(str(kubeconfig), api_version, kind),
                    name=f"sim-{member.name}-{kind}",
                    daemon=True,
                )
                t.start()
                self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5)

    def _run(self, kubeconfig: str, api_version: str, kind: str) -> None:
        from kubernetes import config, dynamic

        while not self._stop.is_set():
            try:
                client = config.new_client_from_config(config_file=kubeconfig)
                dyn = dynamic.DynamicClient(client)
                res = dyn.resources.get(api_version=api_version, kind=kind)
                nodes_res = dyn.resources.get(api_version="v1", kind="Node")
                self._loop(dyn, res, nodes_res, kind)
            except Exception:  # the member API server may be stopped on purpose; retry
                if self._stop.wait(1.0):
                    return

    def _loop(self, dyn: Any, res: Any, nodes_res: Any, kind: str) -> None:
        while not self._stop.is_set():
            listed = res.get()
            node_labels = [dict(n.metadata.labels or {}) for n in nodes_res.get().items]
            for item in listed.items:
                self._reconcile(res, kind, item.to_dict(), node_labels)
            rv = listed.metadata.resourceVersion
            for event in dyn.watch(res, resource_version=rv, timeout=5):
                if self._stop.is_set():
                    return
                if event["type"] in ("ADDED", "MODIFIED"):
                    self._reconcile(res, kind, event["raw_object"], node_labels)

    def _reconcile(self, res: Any, kind: str, obj: dict[str, Any], node_labels: list[dict[str, str]]) -> None:
        want = desired_status(kind, obj, node_labels)
        if want is None or not _needs(obj.get("status"), want):
            return
        meta = obj["metadata"]
        with contextlib.suppress(Exception):
            res.status.patch(
                name=meta["name"],
                namespace=meta.get("namespace"),
                body={"status": want},
                content_type="application/merge-patch+json",
            )


def main(directory: str) -> None:
    """``python -m blueprintd.devfleet.workloads DIR``: run until SIGTERM (started by ``dev up``)."""
    import signal
    from pathlib import Path

    sim = WorkloadSimulator(Fleet.load(Path(directory)))
    sim.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(1.0):
        time.sleep(0)
    sim.stop()


if __name__ == "__main__":
    import sys

    main(sys.argv[1])
