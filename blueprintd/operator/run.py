"""Start the operator: clients, controller, kopf, metrics endpoint."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf

from blueprintd.cluster.management import ManagementStore
from blueprintd.operator.controller import Controller
from blueprintd.operator.handlers import register
from blueprintd.operator.settings import OperatorSettings


def management_client(kubeconfig: str | None) -> Any:
    """The kubeconfig file when one is given (the flag, or $KUBECONFIG through OperatorSettings);
    otherwise in-cluster credentials."""
    from kubernetes import config

    if kubeconfig:
        return config.new_client_from_config(config_file=kubeconfig)
    config.load_incluster_config()
    from kubernetes import client

    return client.ApiClient()


def run(settings: OperatorSettings) -> None:
    kubeconfig = settings.kubeconfig
    logging.basicConfig(
        level=logging.DEBUG if settings.debug else logging.INFO,
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
    if settings.sharding:
        from blueprintd.cluster.lease import LeaseClient
        from blueprintd.operator.sharding import Sharding

        # Its own connections too: a renewal never waits for a free connection of the store's pool.
        leases = LeaseClient(
            management_client(kubeconfig), settings.namespace, settings.replica_id, settings.shard_lease_seconds
        )
        controller.shard = Sharding(leases, store, drop=controller.let_go)
        logging.getLogger("blueprintd").info(
            "replica %s: sharding members by Leases (%d s)", settings.replica_id, settings.shard_lease_seconds
        )
    registry = kopf.OperatorRegistry()
    register(registry, controller, settings)
    # Standalone unless a peering name is given: kopf then needs its peering CRDs installed.
    peering: dict[str, Any] = {"peering_name": settings.peering} if settings.peering else {"standalone": True}
    asyncio.run(kopf.operator(registry=registry, namespaces=[settings.namespace], clusterwide=False, **peering))
