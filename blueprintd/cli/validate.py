"""``blueprintd validate``: check Blueprint files before they reach a cluster.

Runs every check the operator runs (schema, SemVer, unique add-ons, dependencies without
cycles, CEL conditions and templates, patch targets) on local files, so a mistake fails in
an editor or a CI job with ``file:line: field.path: message (allowed: …)`` instead of in the
fleet. Exit status: 0 valid, 1 invalid, 2 usage error.
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
) -> None:
    """Validate Blueprints (and other blueprintd objects) without a cluster.

    Every problem is reported, each on its own line:

        blueprints/gpu-platform/blueprint.yaml:42: spec.addons[2].helm.version: chart version 'latest' is
        not an exact SemVer version such as 1.2.3 or v1.2.3

    Examples:

        blueprintd validate blueprints/gpu-platform

        blueprintd validate bp1.yaml bp2.yaml -o json | jq .issues

    Exit status: 0 when everything is valid, 1 when a problem was found, 2 on usage errors.
    """
    try:
        loaded = load_objects(paths, replace(DEFAULT_LIMITS, cel_cost=cel_cost_limit))
        issues: list[Issue] = []
    except InvalidInput as exc:
        loaded = []
        issues = exc.issues
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
        print(json.dumps(report, indent=2))
        raise typer.Exit(1 if issues else 0)
    if issues:
        print_issues(issues)
        raise typer.Exit(1)
    if not loaded:
        err.print("[yellow]no blueprintd objects found[/yellow] (looked for *.yaml and *.yml)")
        raise typer.Exit(1)
    for item in loaded:
        err.print(f"[green]ok[/green] {_describe(item)} ({item.document.source})")
