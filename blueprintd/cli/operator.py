"""``blueprintd operator``: run the fleet operator (in the management cluster or beside it)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from blueprintd.operator.settings import OperatorSettings, parse_mirrors


def operator_cmd(
    namespace: Annotated[
        str,
        typer.Option(
            "--namespace", "-n", envvar="BLUEPRINTD_NAMESPACE", help="Namespace holding Blueprints and MemberClusters."
        ),
    ] = "blueprintd-system",
    kubeconfig: Annotated[
        str | None,
        typer.Option("--kubeconfig", help="Management cluster kubeconfig (default: in-cluster, or $KUBECONFIG)."),
    ] = None,
    chart_mirror: Annotated[
        list[str] | None,
        typer.Option(
            "--chart-mirror",
            envvar="BLUEPRINTD_CHART_MIRRORS",
            help="UPSTREAM_REPO=MIRROR_URL; charts are fetched from the mirror (air-gapped sites). Repeatable.",
        ),
    ] = None,
    helm: Annotated[Path | None, typer.Option("--helm", help="helm binary (default: the pinned one).")] = None,
    metrics_port: Annotated[
        int,
        typer.Option(
            "--metrics-port", envvar="BLUEPRINTD_METRICS_PORT", help="Serve Prometheus metrics on this port (0: off)."
        ),
    ] = 8080,
    member_resync: Annotated[float, typer.Option("--member-resync", help="Seconds between member reconciles.")] = 10.0,
    member_full_resync: Annotated[
        float | None,
        typer.Option(
            "--member-full-resync",
            help="A converged member whose watches saw no change skips its resync, but is reconciled in full "
            "at least this often, in seconds [env BLUEPRINTD_MEMBER_FULL_RESYNC; default 300].",
        ),
    ] = None,
    webhook_port: Annotated[
        int,
        typer.Option(
            "--webhook-port",
            envvar="BLUEPRINTD_WEBHOOK_PORT",
            help="Serve GitSource push webhooks (POST /hooks/<name>) on this port (0: off).",
        ),
    ] = 0,
    backoff_base: Annotated[
        float | None,
        typer.Option(
            "--backoff-base",
            help="Seconds before the first retry of a failed install or an unreachable member; "
            "doubled per failure [env BLUEPRINTD_BACKOFF_BASE; default 5].",
        ),
    ] = None,
    backoff_cap: Annotated[
        float | None,
        typer.Option(
            "--backoff-cap",
            help="The longest wait between retries, in seconds [env BLUEPRINTD_BACKOFF_CAP; default 300].",
        ),
    ] = None,
    peering: Annotated[
        str | None,
        typer.Option(
            "--peering", help="kopf peering name for several replicas (needs the peering CRDs); default: standalone."
        ),
    ] = None,
    shards: Annotated[
        bool | None,
        typer.Option(
            "--shards/--no-shards",
            help="Spread members over all running replicas by heartbeat Leases (docs/ha.md; $BLUEPRINTD_SHARDS).",
        ),
    ] = None,
    replica_id: Annotated[
        str | None,
        typer.Option("--replica-id", help="This replica's id (default: $BLUEPRINTD_REPLICA_ID, $POD_NAME, random)."),
    ] = None,
    shard_lease_seconds: Annotated[
        int | None,
        typer.Option("--shard-lease-seconds", help="Heartbeat Lease duration (default 15); renewed every third."),
    ] = None,
) -> None:
    """Run the blueprintd operator.

    It captures each Blueprint version as a BlueprintRevision, rolls versions out to the
    MemberClusters they select in waves, and keeps every member converged.

    Example:

      blueprintd operator --kubeconfig mgmt.kubeconfig -n blueprintd-system \\
        --chart-mirror https://helm.ngc.nvidia.com/nvidia=http://127.0.0.1:8879
    """
    from blueprintd.operator.run import run

    if helm is None:
        from blueprintd.devfleet.binaries import ensure

        helm = ensure().helm
    try:
        settings = OperatorSettings.from_env(
            namespace=namespace,
            chart_mirrors=parse_mirrors(list(chart_mirror or [])),
            helm=helm,
            metrics_port=metrics_port,
            member_resync_seconds=member_resync,
            member_full_resync_seconds=member_full_resync,
            webhook_port=webhook_port,
            peering=peering,
            kubeconfig=kubeconfig,
            sharding=shards,
            replica_id=replica_id,
            shard_lease_seconds=shard_lease_seconds,
            backoff_base_seconds=backoff_base,
            backoff_cap_seconds=backoff_cap,
        )
    except ValueError as exc:  # a bad environment value, flag combination or backoff numbers: name them
        raise typer.BadParameter(str(exc)) from None
    run(settings)
