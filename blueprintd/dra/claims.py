"""Reading ResourceClaims from the API server (thin adapter around the kubernetes client).

The kubelet only sends a claim's namespace, name and UID; what to prepare is in the claim's
``status.allocation``, which the scheduler wrote. The claim is read fresh for every prepare
(no informer cache): prepare happens once per pod start, and a cached claim could predate
the allocation that triggered the call.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

from kubernetes import client
from kubernetes.client.rest import ApiException


class ClaimReadError(RuntimeError):
    """The claim could not be read; the message ends up in the per-claim error."""


class ClaimSource(Protocol):
    """Something that returns a ResourceClaim (``resource.k8s.io/v1``) as a plain dict."""

    def get_claim(self, namespace: str, name: str) -> dict[str, Any]:
        """Raises :class:`ClaimReadError` when the claim is missing or unreadable."""


@dataclass
class KubeClaimSource:
    """Reads claims through ``ResourceV1Api`` and returns the raw JSON (no model round-trip).

    Raw JSON keeps opaque config parameters exactly as stored and avoids the generated
    models' client-side validation rejecting fields newer than the client library.
    """

    api_client: client.ApiClient
    timeout_s: float = 10.0  # well inside the kubelet's 45 s call timeout

    def get_claim(self, namespace: str, name: str) -> dict[str, Any]:
        api = client.ResourceV1Api(self.api_client)
        try:
            resp = api.read_namespaced_resource_claim(
                name, namespace, _preload_content=False, _request_timeout=self.timeout_s
            )
        except ApiException as exc:
            if exc.status == 404:
                raise ClaimReadError(f"ResourceClaim {namespace}/{name} not found") from exc
            raise ClaimReadError(
                f"reading ResourceClaim {namespace}/{name}: {exc.status} {exc.reason}"
            ) from exc
        except Exception as exc:  # connection errors, timeouts
            raise ClaimReadError(f"reading ResourceClaim {namespace}/{name}: {exc}") from exc
        data: dict[str, Any] = json.loads(resp.data)
        return data
