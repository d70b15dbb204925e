"""Stand-ins for what neither Kubernetes' controllers nor kwok play in the local fleet.

* **Gatekeeper's template controller** (every member): the real one creates the constraint
  CRD (``<kind lowercased>.constraints.gatekeeper.sh``) named by each ConstraintTemplate, which
  a Helm chart cannot do, and blueprints apply their constraints against those CRDs. The
  fleet's Gatekeeper chart is a stand-in whose Pods run no code, so this plays that part.
* **Workload status on api-only members**: such a member is an API server alone (the
  large-fleet benchmark shape), so nothing would ever report a Deployment available or a
  DaemonSet scheduled and readiness gates would wait forever. For those members only, this
  writes the status a healthy cluster would report — DaemonSets count the nodes their
  nodeSelector matches, so a GPU DaemonSet on a CPU-only cluster schedules nothing. ``full``
  members run kube-controller-manager, kube-scheduler and kwok instead and get none of this.

* **Admission-webhook servers** (every member): kwok runs an add-on's Pods but no code in them
  (and an api-only member runs no Pods), so ``devfleet.webhooks.WebhookResponder`` answers
  (allows) the webhooks whose Service has a Ready Pod or ready workload behind it, on the
  Service's loopback ClusterIP. Gatekeeper's webhooks are live, as upstream renders them.

A workload whose Pod template carries ``devfleet.blueprintd.io/unhealthy`` (``unready`` or
``failed``) is left unready here, as kwok leaves such Pods unready or failed on full members.
The stand-ins run under their own identity (``devfleet:standins``) so audit-log counts of the
operator's writes stay exact.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

from blueprintd.devfleet.certs import CertificateAuthority
from blueprintd.devfleet.fleet import Fleet
from blueprintd.devfleet.kwok import UNHEALTHY
from blueprintd.devfleet.webhooks import WebhookResponder

IDENTITY = "devfleet:standins"

_GATEKEEPER = ("templates.gatekeeper.sh/v1", "ConstraintTemplate")
_WORKLOADS = (
    ("apps/v1", "Deployment"),
    ("apps/v1", "DaemonSet"),
    ("apps/v1", "StatefulSet"),
    ("batch/v1", "Job"),
)


def _matches(selector: dict[str, str] | None, labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in (selector or {}).items())


def desired_status(kind: str, obj: dict[str, Any], node_labels: list[dict[str, str]]) -> dict[str, Any] | None:
    """The status a healthy cluster would report for ``obj`` (None: leave it alone)."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    template_meta = (spec.get("template") or {}).get("metadata") or {}
    if (template_meta.get("annotations") or {}).get(UNHEALTHY):
        return None
    gen = meta.get("generation", 1)
    if kind in ("Deployment", "StatefulSet"):
        n = spec.get("replicas", 1)
        counts = ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas")
        status: dict[str, Any] = {"observedGeneration": gen, **dict.fromkeys(counts, n)}
        if kind == "StatefulSet":
            status["currentReplicas"] = n
        else:
            status["conditions"] = [
                {
                    "type": "Available",
                    "status": "True",
                    "reason": "MinimumReplicasAvailable",
                    "message": "simulated by blueprintd devfleet",
                }
            ]
        return status
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
        # The API server (1.31+) accepts a finished Job only with its start and completion
        # times and SuccessCriteriaMet next to Complete.
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        done = {"status": "True", "lastProbeTime": now, "lastTransitionTime": now}
        return {
            "startTime": now,
            "completionTime": now,
            "succeeded": 1,
            "conditions": [{"type": "Complete", **done}, {"type": "SuccessCriteriaMet", **done}],
        }
    return None


def _needs(status: dict[str, Any] | None, want: dict[str, Any]) -> bool:
    have = status or {}
    # Timestamps are "now" in every wanted status: only their presence matters.
    return any(
        (k not in have) if k.endswith("Time") else have.get(k) != v for k, v in want.items() if k != "conditions"
    ) or (
        "conditions" in want
        and not any(
            c.get("type") == want["conditions"][0]["type"] and c.get("status") == "True"
            for c in have.get("conditions") or []
        )
    )


class StandIns:
    """Background threads, one per (member cluster, kind played)."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.webhooks: dict[str, WebhookResponder] = {}

    def start(self) -> None:
        for member in self.fleet.members:
            kubeconfig = self.fleet.mint_kubeconfig(member.name, IDENTITY, ["system:masters"])
            kinds = [_GATEKEEPER, *(_WORKLOADS if member.control_plane == "api-only" else ())]
            for api_version, kind in kinds:
                t = threading.Thread(
                    target=self._run,
                    args=(member.name, str(kubeconfig), api_version, kind),
                    name=f"standin-{member.name}-{kind}",
                    daemon=True,
                )
                t.start()
                self._threads.append(t)
            # every member: full ones have kwok's Pods, api-only ones the workload status
            t = threading.Thread(
                target=self._serve_webhooks,
                args=(member.name, str(kubeconfig)),
                name=f"standin-{member.name}-webhooks",
                daemon=True,
            )
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        """Stop every thread; each webhook thread closes its own servers on the way out."""
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5)

    def _serve_webhooks(self, member: str, kubeconfig: str) -> None:
        """Play the webhook servers of simulated add-on Pods (see ``devfleet.webhooks``).

        The thread that runs ``sync()`` is the one that closes the responder (its listeners,
        their threads and certificate files): no server can be started after the close.
        """
        from kubernetes import config

        pki = self.fleet.directory / "pki"
        ca = CertificateAuthority.load(pki / "ca.crt", pki / "ca.key")
        with config.new_client_from_config(config_file=kubeconfig) as api:
            responder = WebhookResponder(api, ca, self.fleet.directory / "webhooks" / member)
            self.webhooks[member] = responder
            try:
                while not self._stop.wait(1.0):
                    with contextlib.suppress(Exception):  # the member may be stopped on purpose; retry
                        responder.sync()
            finally:
                responder.close()

    def _run(self, member: str, kubeconfig: str, api_version: str, kind: str) -> None:
        from kubernetes import config

        from blueprintd.cluster.discovery import dynamic_client

        while not self._stop.is_set():
            try:
                # A fresh client per attempt; the failed one's connections are closed.
                with config.new_client_from_config(config_file=kubeconfig) as client:
                    dyn = dynamic_client(client)
                    res = dyn.resources.get(api_version=api_version, kind=kind)
                    nodes_res = dyn.resources.get(api_version="v1", kind="Node")
                    self._loop(member, dyn, res, nodes_res, kind)
            except Exception:  # the member API server may be stopped on purpose; retry
                if self._stop.wait(3.0):
                    return

    def _loop(self, member: str, dyn: Any, res: Any, nodes_res: Any, kind: str) -> None:
        while not self._stop.is_set():
            listed = res.get()
            node_labels = [dict(n.metadata.labels or {}) for n in nodes_res.get().items]
            for item in listed.items:
                self._reconcile(member, dyn, res, kind, item.to_dict(), node_labels)
            rv = listed.metadata.resourceVersion
            for event in dyn.watch(res, resource_version=rv, timeout=5):
                if self._stop.is_set():
                    return
                if event["type"] in ("ADDED", "MODIFIED"):
                    self._reconcile(member, dyn, res, kind, event["raw_object"], node_labels)

    def _reconcile(
        self, member: str, dyn: Any, res: Any, kind: str, obj: dict[str, Any], node_labels: list[dict[str, str]]
    ) -> None:
        if kind == "ConstraintTemplate":
            self._constraint_crd(dyn, res, obj)
            return
        want = desired_status(kind, obj, node_labels)
        if want is None or not _needs(obj.get("status"), want):
            return
        responder = self.webhooks.get(member)
        if responder is not None and kind != "Job":
            # A webhook server's Pod is Ready only once it serves (its readiness probe says so):
            # serve the webhooks this workload backs before reporting it ready, or the next
            # add-on's writes meet a closed port (a fail-closed webhook refuses them).
            with contextlib.suppress(Exception):
                responder.sync()
        meta = obj["metadata"]
        with contextlib.suppress(Exception):
            res.status.patch(
                name=meta["name"],
                namespace=meta.get("namespace"),
                body={"status": want},
                content_type="application/merge-patch+json",
            )

    def _constraint_crd(self, dyn: Any, res: Any, template: dict[str, Any]) -> None:
        kind = (((template.get("spec") or {}).get("crd") or {}).get("spec") or {}).get("names", {}).get("kind")
        if not kind or (template.get("status") or {}).get("created"):
            return
        crd = constraint_crd(kind)
        with contextlib.suppress(Exception):
            crds = dyn.resources.get(api_version="apiextensions.k8s.io/v1", kind="CustomResourceDefinition")
            crds.server_side_apply(
                body=crd, name=crd["metadata"]["name"], field_manager="gatekeeper-simulator", force_conflicts=True
            )
            res.status.patch(
                name=template["metadata"]["name"],
                body={"status": {"created": True}},
                content_type="application/merge-patch+json",
            )


def constraint_crd(kind: str) -> dict[str, Any]:
    """The CRD Gatekeeper creates for a ConstraintTemplate's constraint kind."""
    plural = kind.lower()
    schema = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.constraints.gatekeeper.sh", "labels": {"gatekeeper.sh/constraint": "yes"}},
        "spec": {
            "group": "constraints.gatekeeper.sh",
            "scope": "Cluster",
            "names": {
                "kind": kind,
                "plural": plural,
                "singular": plural,
                "listKind": f"{kind}List",
                "categories": ["constraint", "constraints"],
            },
            "versions": [
                {
                    "name": v,
                    "served": True,
                    "storage": v == "v1beta1",
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": schema, "status": schema}}},
                    "subresources": {"status": {}},
                }
                for v in ("v1beta1", "v1alpha1", "v1")
            ],
        },
    }


def main(directory: str) -> None:
    """``python -m blueprintd.devfleet.standins DIR``: run until SIGTERM (started by ``dev up``)."""
    import signal
    from pathlib import Path

    sim = StandIns(Fleet.load(Path(directory)))
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
