"""``blueprintd git status``: what each GitSource applied, what it last fetched, and why not.

Read-only: everything shown comes from the GitSources' status, which the operator writes, so
the command answers the same on every machine and for every operator replica. The first
thing a platform engineer wants after a push is "did the fleet take my commit, and if not,
which file and line is wrong" — that is the last-error column.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from blueprintd.cli.fleetview import KubeconfigOpt, NamespaceOpt, OutputOpt, _api, _list

git_app = typer.Typer(help="GitOps sources: the commits the fleet follows.", no_args_is_help=True)


def _ref(ref: dict[str, Any]) -> str:
    for kind in ("branch", "tag", "commit"):
        if ref.get(kind):
            return f"{kind} {ref[kind]}"
    return "-"


def _condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    found: dict[str, Any] = next((c for c in status.get("conditions") or [] if c.get("type") == type_), {})
    return found


def gitsource_summary(sources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows ``git status`` prints, one per GitSource (pure)."""
    rows = []
    for src in sorted(sources, key=lambda s: s["metadata"]["name"]):
        spec = src.get("spec") or {}
        st = src.get("status") or {}
        ready = _condition(st, "Ready")
        error = st.get("lastError") or None
        rows.append(
            {
                "name": src["metadata"]["name"],
                "url": spec.get("url", ""),
                "ref": _ref(spec.get("ref") or {}),
                "path": spec.get("path", "."),
                "interval": spec.get("interval", "5m"),
                "ready": ready.get("status") == "True",
                "reason": ready.get("reason", "Pending" if not st else ""),
                "message": ready.get("message", ""),
                "lastAppliedCommit": st.get("lastAppliedCommit", ""),
                "lastFetchedCommit": st.get("lastFetchedCommit", ""),
                "lastSyncTime": st.get("lastSyncTime"),
                "blueprints": st.get("blueprints") or [],
                "orphanedBlueprints": st.get("orphanedBlueprints") or [],
                "lastError": error,
                "errors": st.get("errors") or [],
            }
        )
    return rows


def format_error(error: dict[str, Any] | None) -> str:
    """``file:line: message`` (or just the message when the error is not about a file)."""
    if not error:
        return ""
    where = error.get("file") or ""
    if where and error.get("line") is not None:
        where += f":{error['line']}"
    return f"{where}: {error.get('message', '')}" if where else str(error.get("message", ""))


@git_app.command("status")
def git_status_cmd(
    kubeconfig: KubeconfigOpt = None, namespace: NamespaceOpt = "blueprintd-system", output: OutputOpt = "table"
) -> None:
    """Show every GitSource: URL, ref, commit applied, commit last fetched, last error (file:line).

    Exit code 0 when every GitSource has applied its current commit, 1 otherwise (an error,
    or not synced yet), so CI can wait on it.

    Example:

      blueprintd git status --kubeconfig mgmt.kubeconfig -n blueprintd-system
    """
    rows = gitsource_summary(_list(_api(kubeconfig), namespace, "gitsources"))
    if output == "json":
        json.dump({"sources": rows}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        table = Table(title="GitSources")
        for col in ("source", "url", "ref", "applied", "fetched", "ready", "blueprints", "last error"):
            table.add_column(col, overflow="fold")
        for r in rows:
            applied, fetched = r["lastAppliedCommit"][:12] or "-", r["lastFetchedCommit"][:12] or "-"
            if fetched not in ("-", applied):
                fetched = f"[red]{fetched}[/red]"
            table.add_row(
                r["name"],
                r["url"],
                f"{r['ref']} {r['path']}",
                applied,
                fetched,
                "[green]yes[/green]" if r["ready"] else f"[red]no[/red] {r['reason']}",
                ", ".join(r["blueprints"])
                + (f" (kept: {', '.join(r['orphanedBlueprints'])})" if r["orphanedBlueprints"] else ""),
                format_error(r["lastError"]),
            )
        Console(soft_wrap=True).print(table)
        if not rows:
            Console(stderr=True).print(f"no GitSources in namespace {namespace}")
    raise typer.Exit(0 if rows and all(r["ready"] for r in rows) else 1)
