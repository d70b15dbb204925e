"""kopf wiring: which events call which Controller method. No logic lives here."""

from __future__ import annotations

import copy
from typing import Any

import kopf

from blueprintd.api import GROUP, VERSION
from blueprintd.gitsource.controller import TICK_SECONDS, GitSourceRunner, gitsource_timer
from blueprintd.operator import metrics
from blueprintd.operator.controller import Controller
from blueprintd.operator.settings import OperatorSettings


def _plain(body: Any) -> dict[str, Any]:
    return copy.deepcopy(dict(body))


def connection_info(kubeconfig: str | None) -> kopf.ConnectionInfo:
    """kopf's connection from a kubeconfig file, or in-cluster credentials when none is given."""
    from kubernetes import client, config

    cfg = client.Configuration()
    if kubeconfig:
        config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
    else:
        config.load_incluster_config(client_configuration=cfg)
    auth = (cfg.api_key or {}).get("authorization") or (cfg.api_key or {}).get("BearerToken")
    scheme, _, token = (auth or "").partition(" ")
    return kopf.ConnectionInfo(
        server=cfg.host,
        ca_path=cfg.ssl_ca_cert,
        insecure=not cfg.verify_ssl,
        certificate_path=cfg.cert_file,
        private_key_path=cfg.key_file,
        scheme=scheme or None,
        token=token or None,
    )


def unpublished(bp: dict[str, Any]) -> bool:
    """This Blueprint generation has not been captured (or refused) yet."""
    return bool((bp.get("status") or {}).get("observedGeneration") != bp["metadata"].get("generation"))


def register(registry: kopf.OperatorRegistry, controller: Controller, settings: OperatorSettings) -> None:
    shard = controller.shard
    leads = controller.leads

    if shard is not None:

        @kopf.on.startup(registry=registry)
        async def heartbeat(**_: Any) -> None:
            await shard.start()

        @kopf.on.cleanup(registry=registry)
        async def release(**_: Any) -> None:
            await shard.stop()

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        # Progress and diff-base in annotations: our CRD status schemas are ours alone.
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="blueprintd.io")
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="blueprintd.io")
        settings.posting.level = 100  # events are posted by the controller, with meaning
        settings.watching.server_timeout = 300

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        # A private registry does not inherit kopf's default login handlers, and the client's
        # default kubeconfig path is fixed at import time: load the configured one explicitly.
        return connection_info(settings.kubeconfig)

    @kopf.on.resume(GROUP, VERSION, "blueprints", registry=registry)
    @kopf.on.create(GROUP, VERSION, "blueprints", registry=registry)
    @kopf.on.update(GROUP, VERSION, "blueprints", registry=registry)
    async def publish(body: kopf.Body, **_: Any) -> None:
        if leads():
            await controller.publish(_plain(body))

    @kopf.timer(GROUP, VERSION, "blueprints", interval=settings.rollout_resync_seconds, registry=registry)
    async def rollout(body: kopf.Body, **_: Any) -> None:
        if not leads():
            return
        bp = _plain(body)
        if shard is not None and unpublished(bp):
            await controller.publish(bp)  # the event came while another replica led
        await controller.rollout(bp)

    @kopf.timer(GROUP, VERSION, "memberclusters", interval=settings.member_resync_seconds, registry=registry)
    async def member(body: kopf.Body, **_: Any) -> None:
        await controller.reconcile_member(_plain(body))

    @kopf.on.delete(GROUP, VERSION, "memberclusters", registry=registry, optional=True)
    def forget(name: str, **_: Any) -> None:
        controller.forget(name)
        metrics.forget_cluster(name)

    @kopf.on.delete(GROUP, VERSION, "blueprints", registry=registry, optional=True)
    def forget_blueprint(name: str, **_: Any) -> None:
        metrics.forget_blueprint(name)

    # GitSources: a short fixed tick; the runner syncs each source when its spec.interval is
    # due, its spec changed, or a push webhook asked for it.
    gitsources = GitSourceRunner.from_settings(controller.store, settings)

    @kopf.timer(GROUP, VERSION, "gitsources", interval=TICK_SECONDS, registry=registry)
    async def gitsource(body: kopf.Body, **_: Any) -> None:
        if leads():
            await gitsource_timer(gitsources, _plain(body))

    @kopf.on.startup(registry=registry)
    async def gitsource_webhooks(**_: Any) -> None:
        await gitsources.start_webhook()  # no-op unless --webhook-port is set
