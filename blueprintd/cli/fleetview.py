"""``blueprintd status``, ``rollout status|pause|resume`` and ``rollback``: the fleet from the
management cluster's point of view.

These commands only read objects, or set an annotation the operator acts on: all rollout
state lives in the Blueprint's status, so the CLI and every operator replica agree.
"""

from __future__ import annotations

import json
import sys
import uuid
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from blueprintd.api import GROUP, VERSION
from blueprintd.cli.output import name_column, stdout_console
from blueprintd.operator.controller import PAUSE_ANNOTATION, RESUME_ANNOTATION, ROLLBACK_ANNOTATION

KubeconfigOpt = Annotated[
    str | None, typer.Option("--kubeconfig", envvar="KUBECONFIG", help="Management cluster kubeconfig.")
]
NamespaceOpt = Annotated[
    str, typer.Option("--namespace", "-n", envvar="BLUEPRINTD_NAMESPACE", help="Namespace of the blueprintd objects.")
]
OutputOpt = Annotated[str, typer.Option("--output", "-o", help="table or json")]
err = Console(stderr=True, soft_wrap=True)


def _api(kubeconfig: str | None) -> Any:
    from kubernetes import client, config

    try:
        if kubeconfig:
            return client.CustomObjectsApi(config.new_client_from_config(config_file=kubeconfig))
        config.load_incluster_config()
        return client.CustomObjectsApi()
    except Exception as exc:
        err.print(f"[red]error:[/red] cannot reach the management cluster: {exc} (pass --kubeconfig)")
        raise typer.Exit(2) from None


def _list(api: Any, ns: str, plural: str) -> list[dict[str, Any]]:
    from kubernetes.client.rest import ApiException

    try:
        return list(api.list_namespaced_custom_object(GROUP, VERSION, ns, plural).get("items", []))
    except ApiException as exc:
        err.print(f"[red]error:[/red] listing {plural} in {ns}: {exc.reason} (are the CRDs installed?)")
        raise typer.Exit(2) from None
    except Exception as exc:  # connection refused and friends
        err.print(f"[red]error:[/red] management cluster unreachable: {type(exc).__name__}")
        raise typer.Exit(2) from None


def fleet_summary(blueprints: list[dict[str, Any]], members: list[dict[str, Any]]) -> dict[str, Any]:
    """The data ``status -o json`` prints: per cluster and per blueprint (pure)."""
    clusters = []
    for mc in sorted(members, key=lambda m: m["metadata"]["name"]):
        st = mc.get("status") or {}
        addons = st.get("addons") or []
        clusters.append(
            {
                "name": mc["metadata"]["name"],
                "reachable": bool(st.get("reachable")),
                "ready": any(
                    c.get("type") == "Ready" and c.get("status") == "True" for c in st.get("conditions") or []
                ),
                "applied": {a["blueprint"]: a["version"] for a in st.get("appliedRevisions") or []},
                "blueprints": [
                    {k: p.get(k) for k in ("blueprint", "version", "state", "failedAddon", "message", "current")}
                    | _backoff(p if p.get("state") == "Failed" else {})
                    for p in st.get("blueprints") or []
                ],
                "addons": {"ready": sum(1 for a in addons if a.get("state") == "Ready"), "total": len(addons)},
                "drift": (st.get("drift") or {}).get("open", 0),
                "pools": st.get("factsSummary") or [],
                "lastError": st.get("lastError", ""),
                **_backoff(st if not st.get("reachable") else {}),
            }
        )
    bps = []
    for bp in sorted(blueprints, key=lambda b: b["metadata"]["name"]):
        st = bp.get("status") or {}
        ro = st.get("rollout") or {}
        valid: dict[str, Any] = next((c for c in st.get("conditions") or [] if c.get("type") == "Valid"), {})
        bps.append(
            {
                "name": bp["metadata"]["name"],
                "version": (bp.get("spec") or {}).get("version"),
                "valid": valid.get("status") == "True",
                "validMessage": valid.get("message", ""),
                "targetVersion": ro.get("targetVersion"),
                "phase": ro.get("phase"),
                "wave": ro.get("wave"),
                "waves": len(ro.get("waves") or []),
                "message": ro.get("message", ""),
                "matchedClusters": st.get("matchedClusters", 0),
                "readyClusters": st.get("readyClusters", 0),
            }
        )
    return {"blueprints": bps, "clusters": clusters}


def _backoff(st: dict[str, Any]) -> dict[str, Any]:
    """``failures`` and ``nextAttempt`` of a failed entry or an unreachable member (retries back off)."""
    backoff = st.get("backoff") or {}
    return {"failures": backoff.get("failures", 0), "nextAttempt": backoff.get("nextAttempt")}


def _retry(entry: dict[str, Any]) -> str:
    return f" (retry {entry['nextAttempt']})" if entry.get("nextAttempt") else ""


def status_cmd(
    kubeconfig: KubeconfigOpt = None, namespace: NamespaceOpt = "blueprintd-system", output: OutputOpt = "table"
) -> None:
    """Show the fleet: every Blueprint's rollout and every member cluster's state.

    Exit code 0 when every member cluster is reachable and converged, 1 otherwise.
    """
    api = _api(kubeconfig)
    data = fleet_summary(_list(api, namespace, "blueprints"), _list(api, namespace, "memberclusters"))
    if output == "json":
        json.dump(data, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        render_status(data, stdout_console())
    converged = all(c["reachable"] and c["ready"] for c in data["clusters"])
    raise typer.Exit(0 if converged else 1)


def render_status(data: dict[str, Any], console: Console) -> None:
    """The two ``status`` tables; names are never cut (see cli/output.py)."""
    ct = Table(title="Member clusters")
    name_column(ct, "cluster", (c["name"] for c in data["clusters"]))
    for col in ("reachable", "blueprints", "add-ons", "drift", "pools", "last error"):
        ct.add_column(col, overflow="fold")
    for c in data["clusters"]:
        bps = (
            ", ".join(
                f"{p['blueprint']}@{p['version']} {_state(p['state'])}{progress_text(p.get('current'))}{_retry(p)}"
                for p in c["blueprints"]
            )
            or "-"
        )
        pools = ", ".join(f"{p['pool']}x{p['nodes']}" for p in c["pools"])
        ct.add_row(
            c["name"],
            "[green]yes[/green]" if c["reachable"] else f"[red]no[/red]{_retry(c)}",
            bps,
            f"{c['addons']['ready']}/{c['addons']['total']}",
            str(c["drift"]),
            pools,
            (c["lastError"] or "")[:80],
        )
    console.print(blueprint_table(data["blueprints"]))
    console.print(ct)


def progress_text(current: dict[str, Any] | None) -> str:
    """The add-on step in progress as the status table shows it, "" when none:
    `` (installing gatekeeper since 2026-01-01T10:00:00Z, waiting for Job ns/x: pre-install hook Job running)``."""
    if not current:
        return ""
    phrase = {
        "install": "installing {}",
        "upgrade": "upgrading {}",
        "apply": "applying {}",
        "wait": "{} becoming ready",
    }
    text = " (" + phrase.get(current.get("step", ""), "{}").format(current.get("addon", "?"))
    if current.get("since"):
        text += f" since {current['since']}"
    waits = current.get("waitingFor") or []
    if waits:
        shown = "; ".join(f"{w.get('kind')} {w.get('name')}: {w.get('reason')}" for w in waits[:3])
        more = f"; {len(waits) - 3} more" if len(waits) > 3 else ""
        text += f", waiting for {shown}{more}"
    return text + ")"


def wave_label(wave: int | None, waves: int) -> str:
    """The current wave as ``n/total``, counted from 1 like the rollout's message ("paused at wave 1/3").

    ``status.rollout.wave`` is a 0-based index and equals ``len(waves)`` once every wave is
    done; that shows as ``total/total``.
    """
    return f"{min((wave or 0) + 1, waves)}/{waves}" if waves else "-"


def blueprint_table(blueprints: list[dict[str, Any]]) -> Table:
    """The Blueprints table of ``status`` (rows as ``fleet_summary`` returns them)."""
    bt = Table(title="Blueprints")
    name_column(bt, "blueprint", (b["name"] for b in blueprints))
    for col in ("version", "rollout", "wave", "clusters ready", "message"):
        bt.add_column(col, overflow="fold")
    for b in blueprints:
        phase = b["phase"] or ("[red]invalid[/red]" if not b["valid"] else "-")
        bt.add_row(
            b["name"],
            str(b["version"]),
            str(phase),
            wave_label(b["wave"], b["waves"]),
            f"{b['readyClusters']}/{b['matchedClusters']}",
            b["message"] or b["validMessage"],
        )
    return bt


def rollout_table(ro: dict[str, Any]) -> Table:
    """The waves of ``rollout status``, numbered from 1 (as in the message), the current one marked ``<``."""
    t = Table()
    for col in ("wave", "clusters", "assigned versions"):
        t.add_column(col)
    assignments = ro.get("assignments") or {}
    for i, wave in enumerate(ro.get("waves") or []):
        marker = " <" if i == ro.get("wave") else ""
        t.add_row(f"{i + 1}{marker}", ", ".join(wave), ", ".join(str(assignments.get(c, "-")) for c in wave))
    return t


def _state(state: str | None) -> str:
    color = {"Ready": "green", "Failed": "red"}.get(state or "", "yellow")
    return f"[{color}]{state}[/{color}]"


def _blueprint(api: Any, ns: str, name: str) -> dict[str, Any]:
    from kubernetes.client.rest import ApiException

    try:
        obj: dict[str, Any] = api.get_namespaced_custom_object(GROUP, VERSION, ns, "blueprints", name)
        return obj
    except ApiException as exc:
        err.print(f"[red]error:[/red] Blueprint {ns}/{name}: {exc.reason}")
        raise typer.Exit(2) from None


def _annotate(api: Any, ns: str, name: str, annotations: dict[str, str | None]) -> None:
    api.patch_namespaced_custom_object(
        GROUP, VERSION, ns, "blueprints", name, {"metadata": {"annotations": annotations}}
    )


rollout_app = typer.Typer(help="Inspect and steer a Blueprint's progressive rollout.", no_args_is_help=True)


@rollout_app.command("status")
def rollout_status(
    blueprint: str,
    kubeconfig: KubeconfigOpt = None,
    namespace: NamespaceOpt = "blueprintd-system",
    output: OutputOpt = "table",
) -> None:
    """Waves, assignments and failures of a Blueprint's current rollout. Exit 1 unless Complete."""
    bp = _blueprint(_api(kubeconfig), namespace, blueprint)
    ro = (bp.get("status") or {}).get("rollout") or {}
    if output == "json":
        json.dump(ro, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        console = stdout_console()
        console.print(f"[bold]{blueprint}[/bold] -> {ro.get('targetVersion', '?')}: {ro.get('phase', 'not started')}")
        console.print(ro.get("message", ""))
        console.print(rollout_table(ro))
        for f in ro.get("failures") or []:
            console.print(f"[red]failed[/red] {f.get('cluster')} add-on {f.get('addon')}: {f.get('message')}")
    raise typer.Exit(0 if ro.get("phase") == "Complete" else 1)


@rollout_app.command("pause")
def rollout_pause(
    blueprint: str, kubeconfig: KubeconfigOpt = None, namespace: NamespaceOpt = "blueprintd-system"
) -> None:
    """Freeze the rollout: no further cluster moves to the new version until `resume`."""
    api = _api(kubeconfig)
    _blueprint(api, namespace, blueprint)
    _annotate(api, namespace, blueprint, {PAUSE_ANNOTATION: "true"})
    err.print(f"rollout of {blueprint} paused")


@rollout_app.command("resume")
def rollout_resume(
    blueprint: str, kubeconfig: KubeconfigOpt = None, namespace: NamespaceOpt = "blueprintd-system"
) -> None:
    """Continue a paused rollout (after a failure: retry the failed wave)."""
    api = _api(kubeconfig)
    _blueprint(api, namespace, blueprint)
    _annotate(api, namespace, blueprint, {PAUSE_ANNOTATION: None, RESUME_ANNOTATION: uuid.uuid4().hex[:12]})
    err.print(f"rollout of {blueprint} resumed")


def rollback_cmd(
    blueprint: str,
    to: Annotated[str, typer.Option("--to", help="The earlier version to run again (its BlueprintRevision).")],
    kubeconfig: KubeconfigOpt = None,
    namespace: NamespaceOpt = "blueprintd-system",
) -> None:
    """Roll a Blueprint back to an earlier version, exactly as that version was published.

    The rollback is rolled out like any version (canary, waves). It stays in force until
    spec.version changes again.
    """
    api = _api(kubeconfig)
    bp = _blueprint(api, namespace, blueprint)
    from kubernetes.client.rest import ApiException

    from blueprintd.api.revision import revision_name

    try:
        api.get_namespaced_custom_object(GROUP, VERSION, namespace, "blueprintrevisions", revision_name(blueprint, to))
    except ApiException:
        err.print(
            f"[red]error:[/red] no BlueprintRevision for {blueprint} version {to}; "
            f"published versions: kubectl get blueprintrevisions -n {namespace}"
        )
        raise typer.Exit(1) from None
    spec_version = (bp.get("spec") or {}).get("version")
    _annotate(api, namespace, blueprint, {ROLLBACK_ANNOTATION: f"{to}@{spec_version}", PAUSE_ANNOTATION: None})
    err.print(f"{blueprint}: rolling back to {to} (spec.version stays {spec_version})")
