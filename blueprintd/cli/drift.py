"""``blueprintd drift``: what differs in the fleet, and what was done about it.

``drift`` reads the DriftReports the operator keeps (it never talks to member clusters): a
fleet-wide table, or every field with ``-o json|yaml``. Its exit code answers "is any drift
open?" (1: yes), so it can gate a CI pipeline or a change window.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from blueprintd.api import yamltext
from blueprintd.cli.fleetview import KubeconfigOpt, NamespaceOpt, _api, _list, err
from blueprintd.cli.output import name_column, stdout_console

OutputFmt = Annotated[str, typer.Option("--output", "-o", help="table, json or yaml")]


# --- blueprintd drift -----------------------------------------------------------------------


def restore_ops(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """The RFC 6902 operations that would restore one entry's field (shown with -o json|yaml)."""
    pointer = entry.get("pointer") or ""
    if not pointer or entry.get("path") == "." or (entry.get("object") or {}).get("kind") == "HelmRelease":
        return []
    if entry.get("expected") is None:
        return [{"op": "remove", "path": pointer}]
    op = "add" if entry.get("actual") is None else "replace"
    return [{"op": op, "path": pointer, "value": entry.get("expected")}]


def drift_summary(
    reports: list[dict[str, Any]], members: list[dict[str, Any]], cluster: str | None = None
) -> dict[str, Any]:
    """What ``drift -o json`` prints (pure): per cluster its counts and entries, open first."""
    by_name = {r["metadata"]["name"]: r for r in reports}
    names = sorted({m["metadata"]["name"] for m in members} | set(by_name))
    clusters = []
    for name in names:
        if cluster and name != cluster:
            continue
        rep = by_name.get(name)
        st = (rep or {}).get("status") or {}
        entries = [dict(e, patch=restore_ops(e)) for e in st.get("entries") or []]
        clusters.append(
            {
                "name": name,
                "monitored": rep is not None,
                "summary": st.get("summary") or {},
                "protected": st.get("protected") or [],
                "lastUpdated": st.get("lastUpdated"),
                "entries": entries,
            }
        )
    open_ = sum(1 for c in clusters for e in c["entries"] if not e.get("resolvedAt"))
    return {"clusters": clusters, "open": open_}


def _short(value: Any, width: int = 40) -> str:
    text = "-" if value is None else (value if isinstance(value, str) else json.dumps(value, sort_keys=True))
    return text if len(text) <= width else text[: width - 1] + "…"


def _ref(obj: dict[str, Any]) -> str:
    ns = f"{obj['namespace']}/" if obj.get("namespace") else ""
    return f"{obj.get('kind')} {ns}{obj.get('name')}"


def render_drift(data: dict[str, Any], console: Console, detail: bool) -> None:
    ct = Table(title="Drift per member cluster")
    name_column(ct, "cluster", (c["name"] for c in data["clusters"]))
    for col in ("open", "remediated", "notified", "protected", "updated"):
        ct.add_column(col)
    for c in data["clusters"]:
        s = c["summary"]
        if not c["monitored"]:
            ct.add_row(c["name"], "[yellow]not monitored yet[/yellow]", "", "", "", "")
            continue
        open_ = s.get("open", 0)
        ct.add_row(
            c["name"],
            f"[red]{open_}[/red]" if open_ else "[green]0[/green]",
            str(s.get("remediated", 0)),
            str(s.get("notified", 0)),
            str(s.get("protected", 0)),
            str(c["lastUpdated"] or "-"),
        )
    console.print(ct)
    rows = [(c["name"], e) for c in data["clusters"] for e in c["entries"] if detail or not e.get("resolvedAt")]
    if not rows:
        return
    et = Table(title="Drifted fields" if detail else "Open drift")
    name_column(et, "cluster", (name for name, _ in rows))
    name_column(et, "blueprint/add-on", (f"{e.get('blueprint', '')}/{e.get('addon') or '-'}" for _, e in rows))
    for col in ("object", "field", "expected", "actual", "by", "action", "seen"):
        et.add_column(col, overflow="fold")
    for name, e in rows:
        state = e["action"] if not e.get("resolvedAt") else f"{e['action']} (resolved)"
        color = {"remediated": "green", "notified": "yellow", "open": "red", "blocked": "cyan"}.get(e["action"], "")
        et.add_row(
            name,
            f"{e.get('blueprint', '')}/{e.get('addon') or '-'}",
            _ref(e.get("object") or {}),
            e.get("path", ""),
            _short(e.get("expected")),
            _short(e.get("actual")),
            e.get("manager") or "-",
            f"[{color}]{state}[/{color}]" if color else state,
            str(e.get("firstSeen") or "-"),
        )
    console.print(et)


drift_app = typer.Typer(
    help="Drift in the fleet: show it (the default), or have the operator put held drift back (restore).",
)


@drift_app.callback(invoke_without_command=True)
def drift_cmd(
    ctx: typer.Context,
    cluster: Annotated[str | None, typer.Option("--cluster", help="Only this member cluster.")] = None,
    all_clusters: Annotated[bool, typer.Option("--all", help="Every member cluster (the default).")] = False,
    output: OutputFmt = "table",
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Keep showing the drift as it changes.")] = False,
    interval: Annotated[float, typer.Option("--interval", help="Seconds between refreshes with --watch.")] = 2.0,
    kubeconfig: KubeconfigOpt = None,
    namespace: NamespaceOpt = "blueprintd-system",
) -> None:
    """Show drift across the fleet: what changed in member clusters, and what was done about it.

    Reads the DriftReports the operator keeps in the management cluster. The table lists each
    cluster's counts and every open drift; -o json|yaml prints every entry (resolved ones
    too) with the field path, expected and actual values, who changed it, when, and the
    JSON patch that restores it. Exit code 1 when any drift is open, 0 otherwise.

    Examples:

      blueprintd drift --all --kubeconfig mgmt.kubeconfig -n blueprintd-system

      blueprintd drift --cluster h100-mig -o yaml

      blueprintd drift restore --cluster h100-mig    # put back what notify/block modes hold
    """
    if ctx.invoked_subcommand is not None:
        return
    if cluster and all_clusters:
        err.print("[red]error:[/red] use either --cluster NAME or --all")
        raise typer.Exit(2)
    if output not in ("table", "json", "yaml"):
        err.print(f"[red]error:[/red] unknown output {output!r}: use table, json or yaml")
        raise typer.Exit(2)
    api = _api(kubeconfig)
    console = stdout_console()
    last = ""
    while True:
        data = drift_summary(_list(api, namespace, "driftreports"), _list(api, namespace, "memberclusters"), cluster)
        if cluster and not data["clusters"]:
            err.print(f"[red]error:[/red] no MemberCluster or DriftReport named {cluster!r} in {namespace}")
            raise typer.Exit(2)
        text = json.dumps(data, sort_keys=True)
        if text != last:
            if watch and output == "table":
                console.clear()
            if output == "json":
                json.dump(data, sys.stdout, indent=2)
                sys.stdout.write("\n")
            elif output == "yaml":
                sys.stdout.write(("---\n" if watch and last else "") + yamltext.dump(data, sort_keys=False))
            else:
                render_drift(data, console, detail=bool(cluster))
            sys.stdout.flush()
            last = text
        if not watch:
            break
        try:
            time.sleep(interval)
        except KeyboardInterrupt:
            break
    raise typer.Exit(1 if data["open"] else 0)


@drift_app.command("restore")
def restore_cmd(
    cluster: Annotated[str, typer.Option("--cluster", help="The member cluster to restore.")],
    wait: Annotated[
        float, typer.Option("--wait", help="Seconds to wait for the operator to carry it out (0: do not wait).")
    ] = 120.0,
    kubeconfig: KubeconfigOpt = None,
    namespace: NamespaceOpt = "blueprintd-system",
) -> None:
    """Have the operator put back the drift that notify and block modes leave alone.

    In notify and block mode a changed field, a deleted object or an uninstalled release stays
    as it is and is reported, so that a person decides. Once decided, this asks the operator to
    apply the Blueprint to the cluster once more, held drift included (server-side apply with
    its own identity, which block mode lets through; helm upgrade for releases). It sets the
    MemberCluster annotation blueprintd.io/restore-drift; the next reconcile carries it out and
    records the value in status.driftRestored. Remediate-mode drift is restored anyway.

    Example:

      blueprintd drift restore --cluster h100-mig --kubeconfig mgmt.kubeconfig -n blueprintd-system
    """
    from datetime import UTC, datetime

    from kubernetes.client.rest import ApiException

    from blueprintd.api import GROUP, VERSION
    from blueprintd.api.membercluster import RESTORE_ANNOTATION

    api = _api(kubeconfig)
    token = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    try:
        api.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            "memberclusters",
            cluster,
            {"metadata": {"annotations": {RESTORE_ANNOTATION: token}}},
        )
    except ApiException as exc:
        if exc.status == 404:
            err.print(f"[red]error:[/red] no MemberCluster {namespace}/{cluster}")
        else:
            err.print(f"[red]error:[/red] annotating MemberCluster {namespace}/{cluster}: {exc.reason}")
        raise typer.Exit(2) from None
    console = Console()
    if wait <= 0:
        console.print(f"restore of {cluster} requested ({RESTORE_ANNOTATION}={token})")
        return
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        mc = api.get_namespaced_custom_object(GROUP, VERSION, namespace, "memberclusters", cluster)
        st = mc.get("status") or {}
        if st.get("driftRestored") == token:
            console.print(f"[green]restored[/green] {cluster}: the Blueprint's state was applied again")
            return
        time.sleep(1.0)
    err.print(
        f"[red]error:[/red] the operator did not carry out the restore of {cluster} within {wait:.0f}s: "
        f"see `blueprintd status` and the MemberCluster's status.lastError ({RESTORE_ANNOTATION}={token} stays "
        "set and is carried out once the cluster reconciles)"
    )
    raise typer.Exit(1)
