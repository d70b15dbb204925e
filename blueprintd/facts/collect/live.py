"""Read a cluster's facts: one Node list, one ResourceSlice list, then the pure collector.

Two list calls whatever the cluster size, because everything a node knows is on its Node
(GFD labels, the node agent annotation) or in its ResourceSlices. The ``resource.k8s.io``
API may be missing (clusters before 1.32, or DRA disabled): ``v1`` is tried first, then
``v1beta2`` and ``v1beta1``, and a cluster serving none of them simply contributes no slices.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from blueprintd.api.facts import ClusterFacts
from blueprintd.errors import ClusterError
from blueprintd.facts.collect.pools import build_cluster_facts
from blueprintd.facts.collect.slices import DEFAULT_DRA_DRIVER

log = logging.getLogger(__name__)

Json = dict[str, Any]
#: resource.k8s.io versions whose ResourceSlices this collector reads, newest first.
RESOURCE_API_VERSIONS = ("v1", "v1beta2", "v1beta1")


def _items(resp: Any) -> list[Json]:
    items: list[Json] = json.loads(resp.data).get("items") or []
    return items


def _api_error(what: str, exc: Exception) -> ClusterError:
    status = getattr(exc, "status", None)
    reason = getattr(exc, "reason", None) or type(exc).__name__
    detail = f"{status} {reason}" if status else str(reason)
    return ClusterError(f"cannot list {what}: {detail}")


def list_nodes(api_client: Any, timeout_s: float = 30.0) -> list[Json]:
    from kubernetes import client
    from urllib3.exceptions import HTTPError

    try:
        resp = client.CoreV1Api(api_client).list_node(_preload_content=False, _request_timeout=timeout_s)
        return _items(resp)
    except (client.ApiException, HTTPError, OSError) as exc:
        raise _api_error("nodes", exc) from exc


def list_resource_slices(
    api_client: Any, driver: str = DEFAULT_DRA_DRIVER, timeout_s: float = 30.0
) -> list[Json]:
    """The driver's ResourceSlices from the newest ``resource.k8s.io`` version served; [] if none."""
    from kubernetes import client
    from urllib3.exceptions import HTTPError

    apis: Mapping[str, Callable[[Any], Any]] = {
        "v1": client.ResourceV1Api,
        "v1beta2": client.ResourceV1beta2Api,
        "v1beta1": client.ResourceV1beta1Api,
    }
    for version in RESOURCE_API_VERSIONS:
        api = apis[version](api_client)
        try:
            resp = api.list_resource_slice(
                field_selector=f"spec.driver={driver}", _preload_content=False, _request_timeout=timeout_s
            )
        except client.ApiException as exc:
            if exc.status == 404:
                log.debug("resource.k8s.io/%s not served", version)
                continue
            raise _api_error(f"resource.k8s.io/{version} resourceslices", exc) from exc
        except (HTTPError, OSError) as exc:
            raise _api_error("resourceslices", exc) from exc
        return _items(resp)
    return []


def server_version(api_client: Any, timeout_s: float = 10.0) -> str:
    """The API server's ``gitVersion``; "" when it cannot be read (informational only)."""
    from kubernetes import client

    try:
        resp = client.VersionApi(api_client).get_code(_preload_content=False, _request_timeout=timeout_s)
        return str(json.loads(resp.data).get("gitVersion", ""))
    except Exception as exc:  # the version is a nicety, never a reason to fail
        log.debug("cannot read server version: %s", exc)
        return ""


def collect_cluster_facts(
    api_client: Any,
    cluster_name: str,
    *,
    cluster_labels: Mapping[str, str] | None = None,
    dra_driver: str = DEFAULT_DRA_DRIVER,
) -> ClusterFacts:
    """``ClusterFacts`` of the cluster behind ``api_client`` (a kubernetes ``ApiClient``).

    Raises ``ClusterError`` when Nodes cannot be listed, or ResourceSlices fail for a reason
    other than the API not being served.
    """
    nodes = list_nodes(api_client)
    slices = list_resource_slices(api_client, dra_driver)
    return build_cluster_facts(
        nodes,
        slices,
        cluster=cluster_name,
        cluster_labels=cluster_labels,
        kubernetes_version=server_version(api_client),
        dra_driver=dra_driver,
        collected_at=datetime.now(UTC),
    )
