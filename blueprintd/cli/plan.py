"""``blueprintd plan``: what the operator would change on one member cluster right now.

It runs the operator's own per-member pipeline (``operator.pipeline``): the MemberCluster's
kubeconfig Secret under the same kubeconfig policy, the assigned version, the revision, the
render and the plan against the live state. It writes nothing, anywhere, so a plan is exactly
what the next reconcile does.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from blueprintd.api import yamltext
from blueprintd.cli.fleetview import KubeconfigOpt, NamespaceOpt, err
from blueprintd.cli.output import name_column, stdout_console

OutputFmt = Annotated[str, typer.Option("--output", "-o", help="table, json or yaml")]


def plan_data(result: Any) -> dict[str, Any]:
    """What ``plan -o json`` prints for a ``pipeline.MemberPlan`` (pure)."""
    plan = result.plan
    return {
        "cluster": result.cluster,
        "blueprint": result.blueprint,
        "version": result.assignment.planned,
        "why": result.assignment.reason,
        "selected": result.selected,
        "empty": plan.empty,
        "actions": [a.model_dump(by_alias=True, exclude_none=True, exclude={"object", "ref"}) for a in plan.actions()],
        "held": [a.model_dump(by_alias=True, exclude_none=True, exclude={"object", "ref"}) for a in plan.held],
    }


async def _plan(settings: Any, blueprint: str, cluster: str) -> dict[str, Any]:
    from blueprintd.cluster.management import ManagementStore
    from blueprintd.operator.pipeline import preview
    from blueprintd.operator.run import management_client

    store = ManagementStore(management_client(settings.kubeconfig), settings.namespace)
    result = await preview(
        store,
        blueprint,
        cluster,
        helm=settings.helm,
        chart_mirrors=settings.chart_mirrors,
        limits=settings.blueprint_limits,
        cel_budget=settings.cel_budget,
    )
    return plan_data(result)


def plan_cmd(
    blueprint: Annotated[str, typer.Argument(help="Blueprint name.")],
    cluster: Annotated[str, typer.Option("--cluster", help="MemberCluster to plan for.")],
    output: OutputFmt = "table",
    chart_mirror: Annotated[
        list[str] | None,
        typer.Option("--chart-mirror", envvar="BLUEPRINTD_CHART_MIRRORS", help="UPSTREAM=MIRROR, as the operator."),
    ] = None,
    helm: Annotated[Path | None, typer.Option("--helm", help="helm binary (default: the pinned one).")] = None,
    kubeconfig: KubeconfigOpt = None,
    namespace: NamespaceOpt = "blueprintd-system",
) -> None:
    """Show what the operator would change on one member cluster now, without changing anything.

    Connects to the member through its MemberCluster's kubeconfig Secret (like the operator),
    renders the version the cluster is assigned (its pin, else the rollout's assignment),
    reads releases, objects and node labels, and prints the planned actions in order, plus the
    drift a notify/block add-on holds back. Exit code 0 when there is nothing to do, 1 otherwise.

    Example:

      blueprintd plan gpu-platform --cluster h100-mig --kubeconfig mgmt.kubeconfig -n blueprintd-system
    """
    from blueprintd.errors import BlueprintdError
    from blueprintd.operator.settings import OperatorSettings, parse_mirrors

    if helm is None:
        from blueprintd.devfleet.binaries import ensure

        helm = ensure().helm
    try:
        settings = OperatorSettings.from_env(
            namespace=namespace,
            kubeconfig=kubeconfig,
            helm=helm,
            chart_mirrors=parse_mirrors(list(chart_mirror or [])),
        )
        data = asyncio.run(_plan(settings, blueprint, cluster))
    except (BlueprintdError, ValueError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    except Exception as exc:  # the member or management API server is unreachable
        err.print(f"[red]error:[/red] {type(exc).__name__}: {str(exc)[:300]}")
        raise typer.Exit(2) from None
    if output == "json":
        json.dump(data, sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif output == "yaml":
        sys.stdout.write(yamltext.dump(data, sort_keys=False))
    else:
        render_plan(data, stdout_console())
    raise typer.Exit(0 if data["empty"] else 1)


def render_plan(data: dict[str, Any], console: Console) -> None:
    console.print(
        f"[bold]{data['blueprint']}[/bold] {data['version']} on [bold]{data['cluster']}[/bold] ({data['why']})"
    )
    if not data["selected"]:
        console.print("[yellow]note:[/yellow] the Blueprint's clusterSelector does not select this cluster")
    if data["empty"]:
        console.print("[green]nothing to do: the cluster matches the Blueprint[/green]")
    else:
        t = Table(title="Planned actions (in order)")
        name_column(t, "add-on", (a.get("addon") or "-" for a in data["actions"]))
        for col in ("action", "target", "reason"):
            t.add_column(col, overflow="fold")
        for a in data["actions"]:
            t.add_row(a.get("addon") or "-", a["kind"], a.get("target", ""), a.get("reason", ""))
        console.print(t)
    if data["held"]:
        h = Table(title="Drift left to the add-on's drift mode (notify/block): not applied")
        name_column(h, "add-on", (a.get("addon") or "-" for a in data["held"]))
        for col in ("target", "reason"):
            h.add_column(col, overflow="fold")
        for a in data["held"]:
            h.add_row(a.get("addon") or "-", a.get("target", ""), a.get("reason", ""))
        console.print(h)
