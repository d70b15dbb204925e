"""``blueprintd validate``: check Blueprint files before they reach a cluster.

Runs every check the operator runs (schema, SemVer, unique add-ons, dependencies without
cycles, CEL conditions and templates, patch targets) on local files, so a mistake fails in
an editor or a CI job with ``file:line: field.path: message (allowed: …)`` instead of in the
fleet. With ``--charts`` it also runs the chart pre-flight (``blueprintd.preflight``): every
Helm add-on's pinned chart is templated by the real helm with the values rendered for each
cluster. Exit status: 0 valid, 1 invalid, 2 usage error.
"""

from __future__ import annotations

import json
from dataclasses import replace
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from blueprintd.api.blueprint import Blueprint
from blueprintd.api.issues import InvalidInput, Issue
from blueprintd.api.limits import DEFAULT_LIMITS
from blueprintd.api.load import Loaded, load_objects
from blueprintd.errors import BlueprintdError

err = Console(stderr=True, soft_wrap=True, highlight=False)


class ReportFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


def print_issues(issues: list[Issue]) -> None:
    """One issue per line on stdout (greppable, editor-clickable), a count on stderr."""
    for issue in issues:
        print(issue)
    count = len(issues)
    err.print(f"[red]{count} problem{'s' if count != 1 else ''} found[/red]")


def _describe(item: Loaded) -> str:
    obj = item.obj
    name = getattr(getattr(obj, "metadata", None), "name", "")
    if isinstance(obj, Blueprint):
        return f"Blueprint {name}@{obj.spec.version}"
    return f"{item.kind} {name}"


def validate_cmd(
    paths: Annotated[
        list[Path],
        typer.Argument(exists=True, help="Blueprint YAML files or folders (searched recursively for *.yaml, *.yml)."),
    ],
    output: Annotated[
        ReportFormat, typer.Option("--output", "-o", help="text: one line per problem; json: for machines.")
    ] = ReportFormat.TEXT,
    cel_cost_limit: Annotated[
        int,
        typer.Option(
            "--cel-cost-limit",
            min=1,
            help="Largest estimated cost of one CEL expression (match the operator's BLUEPRINTD_CEL_COST_LIMIT).",
        ),
    ] = DEFAULT_LIMITS.cel_cost,
    charts: Annotated[
        bool,
        typer.Option(
            "--charts",
            help="Also template every Helm add-on's pinned chart with the values rendered for each "
            "cluster (needs helm; charts come from the chart cache or are pulled).",
        ),
    ] = False,
    facts: Annotated[
        list[Path] | None,
        typer.Option(
            "--facts", "-f", exists=True, dir_okay=False,
            help="ClusterFacts YAML of a cluster to render for (repeatable; with --charts).",
        ),
    ] = None,
    kubeconfig: Annotated[
        Path | None,
        typer.Option(
            "--kubeconfig", exists=True, dir_okay=False,
            help="Management cluster: render for every reachable MemberCluster (with --charts).",
        ),
    ] = None,
    namespace: Annotated[
        str, typer.Option("--namespace", "-n", help="Namespace of the MemberClusters (with --kubeconfig).")
    ] = "blueprintd-system",
    chart_mirror: Annotated[
        list[str] | None,
        typer.Option("--chart-mirror", help="UPSTREAM=MIRROR: fetch charts of repository UPSTREAM from MIRROR."),
    ] = None,
    chart_cache: Annotated[
        Path | None,
        typer.Option(
            "--chart-cache", file_okay=False,
            help="Chart cache folder (default $BLUEPRINTD_CHART_CACHE or ~/.cache/blueprintd/charts).",
        ),
    ] = None,
    helm: Annotated[
        str | None, typer.Option("--helm", help="helm binary (default: $BLUEPRINTD_HELM, then helm on PATH).")
    ] = None,
) -> None:
    """Validate Blueprints (and other blueprintd objects) without a cluster.

    Every problem is reported, each on its own line:

        blueprints/gpu-platform/blueprint.yaml:42: spec.addons[2].helm.version: chart version 'latest' is
        not an exact SemVer version such as 1.2.3 or v1.2.3

    Examples:

        blueprintd validate blueprints/gpu-platform

        blueprintd validate bp1.yaml bp2.yaml -o json | jq .issues

        blueprintd validate --charts -f examples/facts/mixed.yaml -f examples/facts/l4-only.yaml \\
            blueprints/gpu-platform

    With --charts, each problem a chart finds is one line per add-on and cluster:

        kata (kata-deploy 3.24.0) for secure-1: schema: shims.disableAll: got boolean, want object

    Exit status: 0 when everything is valid, 1 when a problem was found, 2 on usage errors.
    """
    if (facts or kubeconfig) and not charts:
        raise typer.BadParameter("--facts and --kubeconfig go with --charts", param_hint="--charts")
    if charts and not facts and kubeconfig is None:
        raise typer.BadParameter(
            "--charts needs clusters to render for: --facts FILE (repeatable) or --kubeconfig MANAGEMENT",
            param_hint="--charts",
        )
    limits = replace(DEFAULT_LIMITS, cel_cost=cel_cost_limit)
    try:
        loaded = load_objects(paths, limits)
        issues: list[Issue] = []
    except InvalidInput as exc:
        loaded = []
        issues = exc.issues
    chart_report = None
    if charts and not issues:
        from blueprintd.cli.preflight import run_chart_preflight

        try:
            chart_report = run_chart_preflight(
                [item.obj for item in loaded if isinstance(item.obj, Blueprint)],
                facts or [],
                kubeconfig,
                namespace,
                chart_mirror or [],
                chart_cache,
                helm,
                limits,
            )
        except InvalidInput as exc:
            issues = exc.issues
        except BlueprintdError as exc:
            err.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(1) from None
    failed = bool(issues) or (chart_report is not None and not chart_report.ok)
    if output is ReportFormat.JSON:
        report = {
            "valid": not issues,
            "objects": [
                {
                    "kind": item.kind,
                    "name": getattr(getattr(item.obj, "metadata", None), "name", ""),
                    "version": item.obj.spec.version if isinstance(item.obj, Blueprint) else None,
                    "file": item.document.source,
                    "line": item.document.start_line,
                }
                for item in loaded
            ],
            "issues": [issue.to_dict() for issue in issues],
        }
        if chart_report is not None:
            report["valid"] = not failed
            report["charts"] = [c.to_wire() | {"ok": c.ok} for c in chart_report.checks]
        print(json.dumps(report, indent=2))
        raise typer.Exit(1 if failed else 0)
    if issues:
        print_issues(issues)
        raise typer.Exit(1)
    if not loaded:
        err.print("[yellow]no blueprintd objects found[/yellow] (looked for *.yaml and *.yml)")
        raise typer.Exit(1)
    for item in loaded:
        err.print(f"[green]ok[/green] {_describe(item)} ({item.document.source})")
    if chart_report is not None:
        from blueprintd.cli.preflight import print_chart_report

        print_chart_report(chart_report)
        if not chart_report.ok:
            raise typer.Exit(1)
