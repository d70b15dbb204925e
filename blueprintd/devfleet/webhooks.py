"""Play the admission-webhook servers of add-ons whose Pods are simulated (every member).

On a full member kwok runs an add-on's Pods, but no code runs in them; an api-only member has
no Pods at all, only the workload status ``devfleet.standins`` reports. When the add-on
registers a Validating/MutatingWebhookConfiguration that points at its Service, the member's
API server dials the Service's ClusterIP (loopback, see ``fleet.service_cidr``) and nothing
listens there — "connection refused", and with ``failurePolicy: Fail`` every matching write
fails. This responder plays the part of those webhook servers:

* it serves a webhook only while the Service has a running Pod behind it (its selector matches a
  Pod kwok runs) or, on an api-only member, a workload with replicas whose Pod template the
  selector matches: when the real server would listen. An add-on scaled to zero (or not yet
  installed) still refuses connections, as a real one does (with ``failurePolicy: Fail`` the
  API server then refuses the write: Gatekeeper's ``check-ignore-label`` and namespaces);
* it listens on ``<ClusterIP>:<port>`` (a 127.x address) with a serving certificate for
  ``<service>.<namespace>.svc`` signed by the fleet CA, and writes that CA into the webhook's
  ``caBundle`` the way the add-on's own certificate controller (Gatekeeper's cert-controller,
  cert-manager's cainjector) would patch it;
* it **allows every request** (``response.allowed: true``, no patch for mutating webhooks) and
  records what it answered. It enforces no policy: constraints and mutations of the real
  add-on are not simulated.

Port 443 is a privileged port: the responder needs root or ``CAP_NET_BIND_SERVICE`` (or a
lowered ``net.ipv4.ip_unprivileged_port_start``); otherwise it logs why it cannot serve.
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import logging
import ssl
import sys
import threading
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from blueprintd.devfleet import certs

log = logging.getLogger(__name__)

_KINDS = ("validating", "mutating")


@dataclass(frozen=True)
class Target:
    """One webhook endpoint: where the API server dials, and which Service that is."""

    ip: str
    port: int
    namespace: str
    service: str


@dataclass
class Answer:
    """One AdmissionReview the responder answered."""

    target: Target
    path: str
    kind: str
    operation: str
    namespace: str
    name: str


def admission_response(review: dict[str, Any]) -> dict[str, Any]:
    """The AdmissionReview answer: allowed, same uid and apiVersion, no patch."""
    request = review.get("request") or {}
    return {
        "apiVersion": review.get("apiVersion", "admission.k8s.io/v1"),
        "kind": "AdmissionReview",
        "response": {"uid": request.get("uid", ""), "allowed": True},
    }


def selector_matches(selector: dict[str, str], labels: dict[str, str] | None) -> bool:
    """A Service's equality selector matches these labels (an empty selector matches nothing,
    as a Service without a selector has no Pods behind it)."""
    have = labels or {}
    return bool(selector) and all(have.get(k) == v for k, v in selector.items())


def workload_running(obj: dict[str, Any]) -> bool:
    """A Deployment / StatefulSet / DaemonSet that runs Pods: replicas wanted (DaemonSets: nodes
    to run on), or ready ones reported."""
    spec, st = obj.get("spec") or {}, obj.get("status") or {}
    if obj.get("kind") == "DaemonSet":
        return int(st.get("desiredNumberScheduled") or st.get("numberReady") or 0) > 0
    return int(spec.get("replicas", 1) or 0) > 0 or int(st.get("readyReplicas") or 0) > 0


def pod_running(pod: dict[str, Any]) -> bool:
    """A Pod whose containers run (kwok reports Running / Ready) and that is not going away."""
    meta, st = pod.get("metadata") or {}, pod.get("status") or {}
    if meta.get("deletionTimestamp"):
        return False
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in st.get("conditions") or [])
    return ready or st.get("phase") == "Running"


def backed_by_running(selector: dict[str, str], pods: list[dict[str, Any]], workloads: list[dict[str, Any]]) -> bool:
    """Whether a Service with ``selector`` has a webhook server behind it: a running Pod it
    selects (full members), or else a running workload whose Pod template it selects (api-only
    members, where no Pod exists). Running, not Ready: a real webhook server answers as soon as
    its container listens, and waiting for readiness here would open a window in which the next
    add-on's namespace is refused although a real cluster would admit it."""
    selected = [p for p in pods if selector_matches(selector, (p.get("metadata") or {}).get("labels"))]
    if selected:
        return any(pod_running(p) for p in selected)  # real Pods say it, not the workload status
    return any(
        selector_matches(selector, (((w.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels"))
        and workload_running(w)
        for w in workloads
    )


def service_refs(config: dict[str, Any]) -> list[tuple[int, str, str, int]]:
    """(webhook index, namespace, service, port) of each webhook that calls a Service."""
    out = []
    for i, hook in enumerate(config.get("webhooks") or []):
        svc = (hook.get("clientConfig") or {}).get("service")
        if svc:
            out.append((i, svc["namespace"], svc["name"], int(svc.get("port") or 443)))
    return out


def ca_bundle_patch(config: dict[str, Any], targets: set[tuple[str, str]], ca_b64: str) -> list[dict[str, Any]]:
    """JSON patch setting ``caBundle`` to the fleet CA on the webhooks that call ``targets``."""
    ops = []
    for i, ns, name, _port in service_refs(config):
        hook = config["webhooks"][i]
        if (ns, name) in targets and (hook.get("clientConfig") or {}).get("caBundle") != ca_b64:
            ops.append({"op": "add", "path": f"/webhooks/{i}/clientConfig/caBundle", "value": ca_b64})
    return ops


class _HttpServer(http.server.ThreadingHTTPServer):
    """A caller that hung up is not an error of the responder. An API server gives up on a
    webhook call after its ``timeoutSeconds`` (on a loaded machine, before the answer is
    written) and closes the connection; socketserver would print a traceback for each."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (BrokenPipeError, ConnectionResetError, ssl.SSLEOFError, ssl.SSLZeroReturnError)):
            log.debug("webhook caller %s hung up: %s", client_address, exc)
            return
        super().handle_error(request, client_address)


@dataclass
class _Server:
    httpd: http.server.ThreadingHTTPServer
    thread: threading.Thread
    files: list[Path] = field(default_factory=list)


class WebhookResponder:
    """Serves the webhooks of one member; ``sync()`` is one reconcile pass (poll it)."""

    def __init__(self, api_client: Any, ca: certs.CertificateAuthority, workdir: Path) -> None:
        """``workdir`` holds the serving certificates (``ssl`` loads them from files only): a
        directory of the fleet, so a process killed before ``close()`` leaves nothing outside it."""
        self.api = api_client
        self.ca = ca
        self.ca_b64 = base64.b64encode(ca.cert_pem).decode()
        self.answers: list[Answer] = []
        self.errors: dict[Target, str] = {}
        self._servers: dict[Target, _Server] = {}
        # sync() runs on the responder's poll thread and, right before a workload is reported
        # ready, on the stand-in's thread (devfleet.standins): one at a time.
        self._sync_lock = threading.Lock()
        self._lock = threading.Lock()
        self._workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)

    # --- reconcile ------------------------------------------------------------------------

    def sync(self) -> set[Target]:
        """Serve exactly the webhook Services that have a running Pod (or workload); patch their caBundle."""
        with self._sync_lock:
            return self._sync()

    def _sync(self) -> set[Target]:
        from kubernetes import client

        adm = client.AdmissionregistrationV1Api(self.api)
        core = client.CoreV1Api(self.api)
        configs = {
            "validating": [_camel(c.to_dict()) for c in adm.list_validating_webhook_configuration().items],
            "mutating": [_camel(c.to_dict()) for c in adm.list_mutating_webhook_configuration().items],
        }
        # Several webhooks (often all of an add-on's) call one Service: read each Service once.
        refs = {ref[1:] for cfgs in configs.values() for cfg in cfgs for ref in service_refs(cfg)}
        wanted = {t for ref in refs if (t := self._target(core, *ref)) is not None}
        served_services = {(t.namespace, t.service) for t in wanted}
        for target in wanted - set(self._servers):
            self._start(target)
        for target in set(self._servers) - wanted:
            self._stop(target)
        for kind in _KINDS:
            for cfg in configs[kind]:
                ops = ca_bundle_patch(cfg, served_services, self.ca_b64)
                if ops:
                    patch = getattr(adm, f"patch_{kind}_webhook_configuration")
                    patch(cfg["metadata"]["name"], ops)
        return wanted

    def _target(self, core: Any, ns: str, name: str, port: int) -> Target | None:
        from kubernetes import client
        from kubernetes.client.rest import ApiException

        try:
            svc = core.read_namespaced_service(name, ns)
        except ApiException:
            return None
        ip = svc.spec.cluster_ip
        if not ip or ip == "None" or not svc.spec.selector:
            return None
        selector = dict(svc.spec.selector)
        label_selector = ",".join(f"{k}={v}" for k, v in selector.items())
        wire = self.api.sanitize_for_serialization  # the objects as the API server sends them
        pods = [wire(p) for p in core.list_namespaced_pod(ns, label_selector=label_selector).items]
        workloads: list[dict[str, Any]] = []
        if not pods:
            apps = client.AppsV1Api(self.api)
            for kind, method in (
                ("Deployment", "deployment"),
                ("StatefulSet", "stateful_set"),
                ("DaemonSet", "daemon_set"),
            ):
                listed = getattr(apps, f"list_namespaced_{method}")(ns).items  # list items carry no kind
                workloads += [{**wire(w), "kind": kind} for w in listed]
        return Target(ip, port, ns, name) if backed_by_running(selector, pods, workloads) else None

    # --- servers --------------------------------------------------------------------------

    def _start(self, target: Target) -> None:
        dns = f"{target.service}.{target.namespace}.svc"
        pair = self.ca.serving([dns, f"{dns}.cluster.local", target.ip])
        stem = self._workdir / f"{target.namespace}-{target.service}-{target.port}"
        cert, key = stem.with_suffix(".crt"), stem.with_suffix(".key")
        pair.write(cert, key)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(cert), str(key))
        responder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    review = json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    self.send_error(400, "body is not an AdmissionReview")
                    return
                responder._record(target, urllib.parse.urlsplit(self.path).path, review)
                body = json.dumps(admission_response(review)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        try:
            httpd = _HttpServer((target.ip, target.port), Handler)
        except OSError as exc:
            reason = f"cannot listen on {target.ip}:{target.port} for {target.namespace}/{target.service}: {exc}"
            if target.port < 1024:
                reason += " (a port below 1024 needs root or CAP_NET_BIND_SERVICE)"
            if self.errors.get(target) != reason:
                log.warning("%s", reason)
            self.errors[target] = reason
            return
        httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
        t = threading.Thread(target=httpd.serve_forever, name=f"webhook-{target.service}", daemon=True)
        t.start()
        self.errors.pop(target, None)
        self._servers[target] = _Server(httpd, t, [cert, key])

    def _stop(self, target: Target) -> None:
        server = self._servers.pop(target)
        server.httpd.shutdown()
        server.httpd.server_close()
        for f in server.files:
            f.unlink(missing_ok=True)

    def _record(self, target: Target, path: str, review: dict[str, Any]) -> None:
        req = review.get("request") or {}
        with self._lock:
            self.answers.append(
                Answer(
                    target=target,
                    path=path,
                    kind=(req.get("kind") or {}).get("kind", ""),
                    operation=req.get("operation", ""),
                    namespace=req.get("namespace", ""),
                    name=req.get("name", ""),
                )
            )

    def close(self) -> None:
        with self._sync_lock:
            for target in list(self._servers):
                self._stop(target)
        with contextlib.suppress(OSError):
            for f in self._workdir.iterdir():
                f.unlink()
            self._workdir.rmdir()


def _camel(obj: dict[str, Any]) -> dict[str, Any]:
    """The python client's ``to_dict()`` uses snake_case; the helpers above read wire names."""
    out: dict[str, Any] = {"metadata": {"name": obj["metadata"]["name"]}, "webhooks": []}
    for hook in obj.get("webhooks") or []:
        cc = hook.get("client_config") or {}
        svc = cc.get("service")
        out["webhooks"].append(
            {
                "clientConfig": {
                    "caBundle": cc.get("ca_bundle"),
                    **({"service": {k: v for k, v in svc.items() if v is not None}} if svc else {}),
                }
            }
        )
    return out
