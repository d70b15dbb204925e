"""The webhook responder's pure parts: what it answers and how it installs its CA."""

from __future__ import annotations

from blueprintd.devfleet.webhooks import admission_response, ca_bundle_patch, service_refs

CONFIG = {
    "metadata": {"name": "gatekeeper-validating-webhook-configuration"},
    "webhooks": [
        {"clientConfig": {"service": {"namespace": "gatekeeper-system", "name": "gatekeeper-webhook-service",
                                      "path": "/v1/admit"}}},
        {"clientConfig": {"url": "https://127.0.0.1:9443/x"}},
        {"clientConfig": {"service": {"namespace": "other", "name": "svc", "port": 8443}, "caBundle": "QUJD"}},
    ],
}


def test_every_request_is_allowed_with_its_uid() -> None:
    review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
              "request": {"uid": "705ab4f5-6393-11e8-b7cc-42010a800002", "operation": "CREATE"}}
    assert admission_response(review) == {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": "705ab4f5-6393-11e8-b7cc-42010a800002", "allowed": True},
    }


def test_service_refs_default_port_443_and_skip_url_webhooks() -> None:
    assert service_refs(CONFIG) == [(0, "gatekeeper-system", "gatekeeper-webhook-service", 443),
                                    (2, "other", "svc", 8443)]


def test_ca_bundle_is_patched_only_for_served_services_that_lack_it() -> None:
    served = {("gatekeeper-system", "gatekeeper-webhook-service"), ("other", "svc")}
    assert ca_bundle_patch(CONFIG, served, "QUJD") == [
        {"op": "add", "path": "/webhooks/0/clientConfig/caBundle", "value": "QUJD"}
    ]
    assert ca_bundle_patch(CONFIG, set(), "QUJD") == []
