"""``blueprintd diff``: what a Blueprint change would do to every member cluster, before it rolls out.

The question of a pull request that edits blueprint YAML. ``diff`` renders, per member
cluster, the version the cluster is assigned now and the version the change would give it
(its pin, else the new version), with the operator's pipeline (blueprintd/preview/fleet.py),
and prints what differs, identical changes grouped across clusters. It writes nothing.
Exit codes: 0 nothing changes, 1 something changes, 2 an error (bad input, unreachable cluster).
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from blueprintd.cli.fleetview import KubeconfigOpt, NamespaceOpt, err
from blueprintd.cli.output import stdout_console
from blueprintd.preview.group import FleetPreview, describe_clusters

if TYPE_CHECKING:
    from blueprintd.operator.settings import OperatorSettings


async def _run(
    settings: OperatorSettings,
    path: Path | None,
    version: str | None,
    blueprint: str | None,
    cluster: str | None,
    selector: str | None,
) -> FleetPreview:
    from blueprintd.api.load import load_blueprints
    from blueprintd.cluster.management import ManagementStore
    from blueprintd.errors import BlueprintdError
    from blueprintd.operator.pipeline import revision_blueprint
    from blueprintd.operator.run import management_client
    from blueprintd.preview.fleet import Candidate, preview
    from blueprintd.preview.select import parse_selector

    only = parse_selector(selector) if selector else None
    candidates: list[Candidate] = []
    if path is not None:  # bad input fails here, before any cluster is contacted
        bps = load_blueprints([path])
        if blueprint is not None:
            bps = [b for b in bps if b.name == blueprint]
        if not bps:
            raise BlueprintdError(f"{path} holds no Blueprint" + (f" named {blueprint!r}" if blueprint else ""))
        candidates = [Candidate(b, str(path)) for b in bps]
    namespace = settings.namespace
    store = ManagementStore(management_client(settings.kubeconfig), namespace)
    if not candidates:
        assert version is not None
        if blueprint is None:
            names = sorted(b["metadata"]["name"] for b in await store.list("Blueprint"))
            if len(names) != 1:
                raise BlueprintdError(
                    f"{namespace} holds {len(names)} Blueprints ({', '.join(names) or 'none'}): "
                    "choose one with --blueprint"
                )
            blueprint = names[0]
        from blueprintd.api.revision import revision_name

        rev = await store.get("BlueprintRevision", revision_name(blueprint, version))
        if rev is None:
            raise BlueprintdError(
                f"no BlueprintRevision for {blueprint} {version}: published versions: "
                f"kubectl get blueprintrevisions -n {namespace} -l blueprintd.io/blueprint={blueprint}"
            )
        candidates = [Candidate(revision_blueprint(blueprint, rev), f"BlueprintRevision {rev['metadata']['name']}")]
    return await preview(store, candidates, settings, only=only, cluster=cluster)


def rollout_groups(data: FleetPreview) -> dict[tuple[str, str, str], list[str]]:
    """Changed members by (Blueprint, version from → to, rollout wave or pin): one row per wave, not per cluster."""
    out: dict[tuple[str, str, str], list[str]] = {}
    for m in data.members:
        if not m.error and m.changed:
            key = (m.blueprint, f"{m.version_from or '-'} → {m.version_to or '-'}", m.why)
            out.setdefault(key, []).append(m.cluster)
    return out


def render_preview(data: FleetPreview, console: Console) -> None:
    """The grouped table (names never cut: see cli/output.py)."""
    total = len({m.cluster for m in data.members})
    if data.groups:
        t = Table(title="Changes (identical changes grouped across clusters)")
        t.add_column("clusters", overflow="fold")
        t.add_column("change", overflow="fold")
        for g in data.groups:
            t.add_row(describe_clusters(g.clusters, total), g.change)
        console.print(t)
        w = Table(title="Rollout: which version each cluster gets, and when")
        w.add_column("clusters", overflow="fold")
        for col in ("blueprint", "version", "when"):
            w.add_column(col, overflow="fold")
        for (bp, version, why), clusters in rollout_groups(data).items():
            w.add_row(describe_clusters(clusters, total), bp, version, why)
        console.print(w)
    if data.unchanged:
        console.print(f"unchanged: {describe_clusters(data.unchanged, total)}", highlight=False)
    if not data.members:
        console.print("no member cluster is selected by the Blueprint, before or after the change")
    for e in data.errors:
        console.print(f"[red]error[/red] {e.cluster} ({e.blueprint}): {e.error}", highlight=False)


def diff_cmd(
    path: Annotated[
        Path | None,
        typer.Argument(help="Blueprint file or directory (e.g. a git checkout) to preview, unpublished."),
    ] = None,
    version: Annotated[
        str | None, typer.Option("--version", help="Preview a published version (its BlueprintRevision) instead.")
    ] = None,
    blueprint: Annotated[
        str | None, typer.Option("--blueprint", "-b", help="Which Blueprint, when PATH or the namespace holds several.")
    ] = None,
    cluster: Annotated[str | None, typer.Option("--cluster", help="Only this member cluster.")] = None,
    selector: Annotated[
        str | None, typer.Option("--selector", "-l", help="Only member clusters with these labels (kubectl syntax).")
    ] = None,
    output: Annotated[str, typer.Option("--output", "-o", help="table or json")] = "table",
    chart_mirror: Annotated[
        list[str] | None,
        typer.Option("--chart-mirror", envvar="BLUEPRINTD_CHART_MIRRORS", help="UPSTREAM=MIRROR, as the operator."),
    ] = None,
    helm: Annotated[
        Path | None, typer.Option("--helm", help="helm binary (default: helm on PATH, else the pinned one).")
    ] = None,
    kubeconfig: KubeconfigOpt = None,
    namespace: NamespaceOpt = "blueprintd-system",
) -> None:
    """Preview a Blueprint change on every member cluster before it rolls out. Writes nothing.

    For each member cluster the Blueprint would select: the version it would get (its pin,
    else the new version, and its rollout wave), add-ons installed, upgraded (chart version
    from → to) or removed, value and object changes field by field, node labels per pool,
    overlays that fire differently, and clusters newly selected or no longer selected.
    Identical changes are grouped across clusters. It renders with the operator's own
    pipeline (kubeconfig Secrets, facts, chart mirrors, parameters, plan) and only reads.

    Exit code: 0 nothing changes, 1 something changes, 2 error. In a pull request:

      blueprintd diff blueprints/ --kubeconfig mgmt.kubeconfig -n blueprintd-system

      blueprintd diff --version 1.1.0 --blueprint gpu-platform --selector env=prod -o json
    """
    from blueprintd.errors import BlueprintdError
    from blueprintd.operator.settings import OperatorSettings, parse_mirrors

    if (path is None) == (version is None):
        err.print("[red]error:[/red] give either a PATH (unpublished Blueprint files) or --version V (published)")
        raise typer.Exit(2)
    if cluster and selector:
        err.print("[red]error:[/red] use either --cluster NAME or --selector LABELS")
        raise typer.Exit(2)
    if output not in ("table", "json"):
        err.print(f"[red]error:[/red] unknown output {output!r}: use table or json")
        raise typer.Exit(2)
    try:
        if helm is None:  # helm on PATH (a CI runner), else the pinned one of the dev tools
            import shutil

            from blueprintd.devfleet.binaries import ensure

            found = shutil.which("helm")
            helm = Path(found) if found else ensure().helm
        settings = OperatorSettings.from_env(  # the operator's settings: mirrors, limits, CEL budget
            namespace=namespace,
            kubeconfig=kubeconfig,
            helm=helm,
            chart_mirrors=parse_mirrors(list(chart_mirror or [])),
        )
        data = asyncio.run(_run(settings, path, version, blueprint, cluster, selector))
    except BlueprintdError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False)
        raise typer.Exit(2) from None
    except Exception as exc:  # the management API server is unreachable
        err.print(f"error: {type(exc).__name__}: {str(exc)[:300]}", markup=False, highlight=False)
        raise typer.Exit(2) from None
    if output == "json":
        json.dump(
            {**data.model_dump(by_alias=True, mode="json"), "exitCode": data.exit_code},
            sys.stdout,
            indent=2,
            ensure_ascii=False,
        )
        sys.stdout.write("\n")
    else:
        render_preview(data, stdout_console())
    raise typer.Exit(data.exit_code)
