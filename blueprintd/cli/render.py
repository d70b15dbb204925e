"""``blueprintd render``: show exactly what a Blueprint means for one cluster.

Renders a Blueprint against a cluster's hardware facts (a ``ClusterFacts`` YAML, as printed
by ``blueprintd facts -o yaml`` or written by hand, see ``examples/facts/``) with the same
code the operator uses, so "what will this change do to the H100 cluster?" is answered
before anything is applied. ``--explain`` says which overlay fired on which pool and why.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.table import Table

from blueprintd.api.blueprint import Blueprint
from blueprintd.api.facts import ClusterFacts
from blueprintd.api.issues import InvalidInput
from blueprintd.api.load import load_blueprints, load_model_file
from blueprintd.cli.validate import print_issues
from blueprintd.errors import BlueprintdError
from blueprintd.render import DesiredState, RenderOptions, render

err = Console(stderr=True, soft_wrap=True, highlight=False)


class StateFormat(StrEnum):
    YAML = "yaml"
    JSON = "json"


def parse_pairs(pairs: list[str], what: str, example: str) -> dict[str, str]:
    """``KEY=VALUE`` options → dict; a malformed one is a usage error (exit 2)."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key or not value:
            raise typer.BadParameter(f"{pair!r} is not {what}=VALUE (e.g. {example})")
        out[key] = value
    return out


def _scalar(text: str) -> Any:
    """A parameter value as YAML reads it: 8 → int, true → bool, else the string."""
    value = yaml.safe_load(text)
    return value if isinstance(value, str | int | float | bool) else text


def pick_blueprint(blueprints: list[Blueprint], name: str | None, where: str) -> Blueprint:
    if name is not None:
        for bp in blueprints:
            if bp.name == name:
                return bp
        found = ", ".join(bp.name for bp in blueprints) or "none"
        raise BlueprintdError(f"no Blueprint named {name!r} in {where} (found: {found})")
    if len(blueprints) != 1:
        found = ", ".join(bp.name for bp in blueprints) or "none"
        raise BlueprintdError(f"{where} holds {len(blueprints)} Blueprints ({found}); choose one with --blueprint")
    return blueprints[0]


def print_explanation(state: DesiredState) -> None:
    """Overlay decisions, install order and node labels, for people (on stderr)."""
    table = Table(title=f"{state.blueprint}@{state.version} on {state.cluster or '(unnamed cluster)'}")
    table.add_column("Overlay")
    table.add_column("Scope")
    table.add_column("Pool")
    table.add_column("Applied")
    table.add_column("Why")
    for e in state.explanations:
        table.add_row(e.overlay, e.scope, e.pool or "-", "[green]yes[/green]" if e.fired else "no", e.reason)
    err.print(table)
    order = " → ".join(s.addon for s in state.steps)
    err.print(f"install order: {order}")
    for labels in state.node_labels:
        shown = ", ".join(f"{k}={v}" for k, v in labels.labels.items())
        err.print(f"node labels, pool {labels.pool} ({len(labels.nodes)} nodes): {shown}")


def render_cmd(
    path: Annotated[Path, typer.Argument(exists=True, help="Blueprint YAML file, or a folder holding it.")],
    facts: Annotated[
        Path,
        typer.Option("--facts", "-f", exists=True, dir_okay=False, help="ClusterFacts YAML of the cluster."),
    ],
    explain: Annotated[
        bool, typer.Option("--explain", help="Also print which overlays applied and why (on stderr).")
    ] = False,
    output: Annotated[StateFormat, typer.Option("--output", "-o", help="Format of the rendered state.")] = (
        StateFormat.YAML
    ),
    chart_mirror: Annotated[
        list[str] | None,
        typer.Option(
            "--chart-mirror",
            help="UPSTREAM=MIRROR: fetch charts of repository UPSTREAM from MIRROR (repeatable).",
        ),
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="NAME=VALUE: override a Blueprint parameter (repeatable)."),
    ] = None,
    blueprint: Annotated[
        str | None, typer.Option("--blueprint", "-b", help="Blueprint name, when PATH holds several.")
    ] = None,
) -> None:
    """Render a Blueprint for one cluster: Helm releases, manifests, node labels, in install order.

    The output is the DesiredState the operator would apply: add-ons ordered by dependsOn, Helm
    values after overlays, manifests with namespaces filled in, and the labels each node pool gets.

    Examples:

        blueprintd render blueprints/gpu-platform --facts examples/facts/mixed.yaml --explain

        blueprintd render blueprints/gpu-platform -f examples/facts/l4-only.yaml -o json \\
            -p timeSlicingReplicas=8

        blueprintd render bp.yaml -f facts.yaml \\
            --chart-mirror https://helm.ngc.nvidia.com/nvidia=http://127.0.0.1:8080/nvidia

    Same input, same output: the JSON is byte-identical across runs, so it diffs cleanly.
    """
    mirrors = parse_pairs(chart_mirror or [], "UPSTREAM", "https://helm.ngc.nvidia.com/nvidia=http://mirror/nvidia")
    raw_params = parse_pairs(param or [], "NAME", "timeSlicingReplicas=8")
    try:
        chosen = pick_blueprint(load_blueprints([path]), blueprint, str(path))
        declared = chosen.spec.parameters
        # a string parameter takes the text as typed (-p mode=true is "true", not a boolean)
        params = {k: v if k in declared and declared[k].type == "string" else _scalar(v) for k, v in raw_params.items()}
        cluster = load_model_file(facts, ClusterFacts)
        state = render(chosen, cluster, RenderOptions(chart_mirrors=mirrors, parameters=params))
    except InvalidInput as exc:
        print_issues(exc.issues)
        raise typer.Exit(1) from None
    except BlueprintdError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    if explain:
        print_explanation(state)
    if output is StateFormat.JSON:
        print(state.to_json(indent=2))
    else:
        print(state.to_yaml(), end="")
