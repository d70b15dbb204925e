"""Start the operator: clients, controller, kopf, metrics endpoint."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import kopf

from blueprintd.cluster.management import ManagementStore
from blueprintd.operator.controller import Controller
from blueprintd.operator.handlers import register
from blueprintd.operator.settings import OperatorSettings


def management_client(kubeconfig: str | None) -> Any:
    """In-cluster credentials in a pod; otherwise the kubeconfig file (flag or $KUBECONFIG)."""
    from kubernetes import config

    path = kubeconfig or os.environ.get("KUBECONFIG")
    if path:
        return config.new_client_from_config(config_file=path)
    config.load_incluster_config()
    from kubernetes import client

    return client.ApiClient()


def run(settings: OperatorSettings) -> None:
    kubeconfig = settings.kubeconfig
    logging.basicConfig(
        level=logging.DEBUG if os.environ.get("BLUEPRINTD_DEBUG") else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # helm's and kopf's per-call chatter would bury what the operator decides.
    logging.getLogger("pyhelm3").setLevel(logging.ERROR)
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    if settings.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(settings.metrics_port)
    store = ManagementStore(management_client(kubeconfig), settings.namespace)
    controller = Controller(store, settings)
    registry = kopf.OperatorRegistry()
    register(registry, controller, settings)
    # Standalone unless a peering name is given: kopf then needs its peering CRDs installed.
    peering: dict[str, Any] = {"peering_name": settings.peering} if settings.peering else {"standalone": True}
    asyncio.run(kopf.operator(registry=registry, namespaces=[settings.namespace], clusterwide=False, **peering))
