"""The webhook responder's pure parts: what it answers and how it installs its CA."""

from __future__ import annotations

from typing import Any

import pytest

from blueprintd.devfleet import webhooks
from blueprintd.devfleet.webhooks import admission_response, ca_bundle_patch, service_refs

CONFIG = {
    "metadata": {"name": "gatekeeper-validating-webhook-configuration"},
    "webhooks": [
        {
            "clientConfig": {
                "service": {"namespace": "gatekeeper-system", "name": "gatekeeper-webhook-service", "path": "/v1/admit"}
            }
        },
        {"clientConfig": {"url": "https://127.0.0.1:9443/x"}},
        {"clientConfig": {"service": {"namespace": "other", "name": "svc", "port": 8443}, "caBundle": "QUJD"}},
    ],
}


def test_every_request_is_allowed_with_its_uid() -> None:
    review = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {"uid": "705ab4f5-6393-11e8-b7cc-42010a800002", "operation": "CREATE"},
    }
    assert admission_response(review) == {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": "705ab4f5-6393-11e8-b7cc-42010a800002", "allowed": True},
    }


def test_service_refs_default_port_443_and_skip_url_webhooks() -> None:
    assert service_refs(CONFIG) == [
        (0, "gatekeeper-system", "gatekeeper-webhook-service", 443),
        (2, "other", "svc", 8443),
    ]


def test_ca_bundle_is_patched_only_for_served_services_that_lack_it() -> None:
    served = {("gatekeeper-system", "gatekeeper-webhook-service"), ("other", "svc")}
    assert ca_bundle_patch(CONFIG, served, "QUJD") == [
        {"op": "add", "path": "/webhooks/0/clientConfig/caBundle", "value": "QUJD"}
    ]
    assert ca_bundle_patch(CONFIG, set(), "QUJD") == []


SELECTOR = {"app.kubernetes.io/name": "gatekeeper", "control-plane": "controller-manager"}


def _pod(
    phase: str, labels: dict[str, str] = SELECTOR, *, ready: bool = False, deleting: bool = False
) -> dict[str, Any]:
    meta: dict[str, Any] = {"labels": labels}
    if deleting:
        meta["deletionTimestamp"] = "2026-11-30T00:00:00Z"
    conditions = [{"type": "Ready", "status": "True" if ready else "False"}]
    return {"metadata": meta, "status": {"phase": phase, "conditions": conditions}}


def _deployment(replicas: int, labels: dict[str, str] = SELECTOR) -> dict[str, Any]:
    return {"kind": "Deployment", "spec": {"replicas": replicas, "template": {"metadata": {"labels": labels}}}}


def test_a_running_pod_the_service_selects_is_served_and_a_pending_or_leaving_one_is_not() -> None:
    assert webhooks.backed_by_running(SELECTOR, [_pod("Running")], [])
    assert webhooks.backed_by_running(SELECTOR, [_pod("Pending"), _pod("Running", ready=True)], [])
    assert not webhooks.backed_by_running(SELECTOR, [_pod("Pending")], [_deployment(1)])
    assert not webhooks.backed_by_running(SELECTOR, [_pod("Running", deleting=True)], [_deployment(1)])


def test_without_pods_a_workload_with_replicas_is_served_on_api_only_members() -> None:
    assert webhooks.backed_by_running(SELECTOR, [], [_deployment(2)])
    assert not webhooks.backed_by_running(SELECTOR, [], [_deployment(0)])  # scaled to zero: refused
    assert not webhooks.backed_by_running(SELECTOR, [], [_deployment(2, {"app": "other"})])
    daemonset = {"kind": "DaemonSet", "spec": {"template": {"metadata": {"labels": SELECTOR}}}, "status": {}}
    assert not webhooks.backed_by_running(SELECTOR, [], [daemonset])  # no node to run on
    daemonset["status"] = {"desiredNumberScheduled": 3}
    assert webhooks.backed_by_running(SELECTOR, [], [daemonset])


def test_an_empty_selector_selects_nothing() -> None:
    assert not webhooks.backed_by_running({}, [_pod("Running", {})], [_deployment(1, {})])


def test_a_caller_that_hung_up_is_not_reported_but_a_responder_bug_is(capsys: pytest.CaptureFixture[str]) -> None:
    """The API server closes a webhook call it gave up on: no traceback for that, one for a bug."""
    import http.server
    import threading
    import urllib.request

    from blueprintd.devfleet.webhooks import _HttpServer

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            raise BrokenPipeError("the caller hung up") if self.path == "/gone" else ValueError("a responder bug")

        def log_message(self, format: str, *args: object) -> None:
            return

    srv = _HttpServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        for path in ("/gone", "/bug"):
            with pytest.raises(OSError):  # the connection closes without an answer
                urllib.request.urlopen(f"http://127.0.0.1:{srv.server_address[1]}{path}", timeout=10)
    finally:
        srv.shutdown()
        srv.server_close()
    err = capsys.readouterr().err
    assert "BrokenPipeError: the caller hung up" not in err
    assert err.count("Exception occurred during processing") == 1 and "ValueError: a responder bug" in err
