"""``blueprintd dev``: start, inspect and stop the embedded local fleet.

The local fleet is real ``kube-apiserver`` + ``etcd`` processes, one management cluster and N
member clusters with simulated GPU nodes; a ``full`` member (the default) also runs
kube-controller-manager, kube-scheduler and kwok playing its kubelets. It is what the demo, the tests and the
benchmarks run on, and a safe place to try a Blueprint before it meets real clusters.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, cast, get_args

import typer
from rich.console import Console
from rich.table import Table

from blueprintd.cli.main import app
from blueprintd.devfleet import binaries
from blueprintd.devfleet.fleet import Fleet
from blueprintd.devfleet.nodes import PROFILES, ControlPlane, load_fleet_file, uniform_fleet
from blueprintd.errors import BlueprintdError, DevFleetError

dev_app = typer.Typer(
    help=(
        "Run a local fleet of real Kubernetes API servers (management + members)\n"
        "with simulated GPU nodes.\n\n"
        "Example:\n\n"
        "  blueprintd dev up --members 3 --dir /tmp/f --nodes h100 l4\n\n"
        "  kubectl --kubeconfig /tmp/f/member-1.kubeconfig get nodes --show-labels\n\n"
        "  blueprintd dev down --dir /tmp/f"
    ),
    no_args_is_help=True,
)
app.add_typer(dev_app, name="dev")

DEFAULT_DIR = Path(".blueprintd-fleet")
err = Console(stderr=True, soft_wrap=True)
DirOpt = Annotated[
    Path, typer.Option("--dir", help="Directory holding the fleet's kubeconfigs, logs and state.")
]


def _fail(exc: BlueprintdError) -> None:
    err.print(f"[red]error:[/red] {exc}", highlight=False)
    raise typer.Exit(1)


@dev_app.command("up")
def up(
    members: Annotated[
        int, typer.Option("--members", "-m", min=0, max=64, help="Number of member clusters.")
    ] = 2,
    directory: DirOpt = DEFAULT_DIR,
    nodes: Annotated[
        list[str] | None,
        typer.Option(
            "--nodes",
            help="Node profiles every member gets (repeatable or space separated): "
            f"{', '.join(sorted(PROFILES))}.",
        ),
    ] = None,
    nodes_per_profile: Annotated[
        int, typer.Option("--nodes-per-profile", min=1, help="Nodes per profile.")
    ] = 2,
    fleet_file: Annotated[
        Path | None,
        typer.Option(
            "--fleet",
            help="YAML fleet file (members with their own labels and node profiles); "
            "overrides --members/--nodes.",
        ),
    ] = None,
    charts: Annotated[
        bool, typer.Option("--charts/--no-charts", help="Also serve the stand-in Helm charts on 127.0.0.1.")
    ] = True,
    control_plane: Annotated[
        str | None,
        typer.Option(
            "--control-plane",
            help="Members' control plane: full (API server + controller-manager + scheduler + kwok "
            "kubelets; the default) or api-only (API server alone). Overrides controlPlane in --fleet.",
        ),
    ] = None,
    extra_args: Annotated[list[str] | None, typer.Argument(hidden=True)] = None,
) -> None:
    """Start etcd, the management API server and N member API servers; write kubeconfigs to DIR."""
    try:
        profiles = list(nodes or []) + list(extra_args or [])
        fleet_spec = (
            load_fleet_file(fleet_file) if fleet_file else uniform_fleet(members, profiles, nodes_per_profile)
        )
        if control_plane is not None:
            shapes = get_args(ControlPlane)
            if control_plane not in shapes:
                raise DevFleetError(f"--control-plane: {control_plane!r} is not one of: {', '.join(shapes)}")
            for m in fleet_spec.members:
                m.control_plane = cast(ControlPlane, control_plane)
        bins = binaries.ensure(progress=lambda m: err.print(m, highlight=False))
        fleet = Fleet.up(directory, fleet_spec, bins, progress=lambda m: err.print(m, highlight=False))
        fleet.start_helper("standins", "blueprintd.devfleet.standins", str(fleet.directory))
        if charts:
            from blueprintd.devfleet.chartserve import start_detached_chart_repo

            start_detached_chart_repo(fleet, progress=lambda m: err.print(m, highlight=False))
    except BlueprintdError as exc:
        _fail(exc)
        return
    d = fleet.directory
    err.print(f"[green]fleet up[/green] in {d}")
    for c in fleet.status():
        err.print(f"  {c['name']:<14} {c['server']:<26} kubeconfig={c['kubeconfig']}", highlight=False)
    if fleet.chart_repo_url:
        err.print(f"  charts         {fleet.chart_repo_url}", highlight=False)
    err.print(f"stop it with: blueprintd dev down --dir {d}", highlight=False)


@dev_app.command("status")
def status(
    directory: DirOpt = DEFAULT_DIR,
    output: Annotated[str, typer.Option("--output", "-o", help="table or json")] = "table",
) -> None:
    """Show each cluster of the fleet: process, readiness, nodes. Exit 1 if any is not ready."""
    try:
        fleet = Fleet.load(directory)
        rows = fleet.status()
    except BlueprintdError as exc:
        _fail(exc)
        return
    if output == "json":
        json.dump(
            {"directory": str(fleet.directory), "chartRepo": fleet.chart_repo_url, "clusters": rows},
            sys.stdout,
            indent=2,
        )
        sys.stdout.write("\n")
    else:
        table = Table(title=f"fleet {fleet.directory}")
        for col in ("cluster", "role", "control plane", "server", "pid", "ready", "nodes", "labels"):
            table.add_column(col)
        for r in rows:
            ready = (
                "[green]yes[/green]"
                if r["ready"]
                else ("[yellow]starting[/yellow]" if r["running"] else "[red]down[/red]")
            )
            labels = ",".join(f"{k}={v}" for k, v in r["labels"].items())
            plane = r["controlPlane"] if r["role"] == "member" else "-"
            table.add_row(
                r["name"], r["role"], plane, r["server"], str(r["pid"] or "-"), ready, str(r["nodes"]), labels
            )
        Console().print(table)
    if not all(r["ready"] for r in rows):
        raise typer.Exit(1)


@dev_app.command("down")
def down(directory: DirOpt = DEFAULT_DIR) -> None:
    """Stop exactly the processes `dev up` started (by PID) and remove the fleet's data."""
    try:
        fleet = Fleet.load(directory)
    except BlueprintdError as exc:
        _fail(exc)
        return
    stopped = fleet.down(remove=True)
    err.print(
        f"stopped {len(stopped)} processes: {' '.join(stopped) or '(none were running)'}", highlight=False
    )


@dev_app.command("build")
def build() -> None:
    """Find or build the pinned fleet binaries (kube-apiserver, controller-manager, scheduler, etcd,
    helm, kwok) and print their paths."""
    try:
        bins = binaries.ensure(progress=lambda m: err.print(m, highlight=False))
    except BlueprintdError as exc:
        _fail(exc)
        return
    for name, path in bins.by_name().items():
        typer.echo(f"{name}: {path}")


def demo_cmd(
    directory: DirOpt = DEFAULT_DIR,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for convergence.")] = 600,
) -> None:
    """Start a local fleet and roll the GPU platform blueprint onto it, showing progress.

    Management + 3 members (an H100 MIG cluster, an L4 cluster, a mixed H100 + L4 cluster);
    the fleet keeps running afterwards. Stop it with `blueprintd dev down`.
    """
    from blueprintd.devfleet.demo import run_demo

    try:
        bins = binaries.ensure(progress=lambda m: err.print(m, highlight=False))
        code = run_demo(directory, bins, lambda m: err.print(m, highlight=False), timeout)
    except BlueprintdError as exc:
        _fail(exc)
        return
    raise typer.Exit(code)


app.command("demo")(demo_cmd)
