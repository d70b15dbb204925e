"""``blueprintd validate --charts``: wiring of the chart pre-flight for the command line.

Clusters to render for come from ClusterFacts files (``--facts``) or from a management cluster
(``--kubeconfig``): every MemberCluster whose kubeconfig Secret can be read and whose API
server answers has its facts collected live, as the operator would. Members that cannot be
reached are named on stderr and skipped; they do not fail the check.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

from rich.console import Console

from blueprintd.api.blueprint import Blueprint
from blueprintd.api.facts import ClusterFacts
from blueprintd.api.limits import DEFAULT_LIMITS, BlueprintLimits
from blueprintd.api.load import load_model_file
from blueprintd.cli.render import parse_pairs
from blueprintd.errors import BlueprintdError
from blueprintd.preflight import HelmPreflight, PreflightReport, run_preflight
from blueprintd.preflight.run import render_states

err = Console(stderr=True, soft_wrap=True, highlight=False)


def find_helm(explicit: str | None) -> Path:
    """``--helm``, then ``$BLUEPRINTD_HELM``, then helm on PATH, then the test bed's pinned helm."""
    import os

    from blueprintd.devfleet import binaries

    for candidate in (explicit, os.environ.get("BLUEPRINTD_HELM")):
        if candidate:
            path = Path(candidate) if "/" in candidate else Path(shutil.which(candidate) or candidate)
            if not path.is_file():
                raise BlueprintdError(f"helm binary {candidate} not found")
            return path
    on_path = shutil.which("helm")
    if on_path:
        return Path(on_path)
    pinned = binaries.cache_dir() / "helm"
    if pinned.is_file():
        return pinned
    raise BlueprintdError("--charts needs helm: install it, put it on PATH or pass --helm PATH")


def run_chart_preflight(
    blueprints: list[Blueprint],
    facts_files: list[Path],
    kubeconfig: Path | None,
    namespace: str,
    mirror_pairs: list[str],
    cache: Path | None,
    helm: str | None,
    limits: BlueprintLimits = DEFAULT_LIMITS,
) -> PreflightReport:
    mirrors = parse_pairs(mirror_pairs, "UPSTREAM", "https://helm.ngc.nvidia.com/nvidia=http://mirror/nvidia")
    clusters: list[tuple[ClusterFacts, dict[str, Any]]] = [
        (load_model_file(path, ClusterFacts), {}) for path in facts_files
    ]
    if kubeconfig is not None:
        clusters += asyncio.run(_member_facts(kubeconfig, namespace))
    if not clusters:
        raise BlueprintdError("no cluster to render for: no facts given and no reachable MemberCluster")
    states = [state for bp in blueprints for state in render_states(bp, clusters, mirrors, limits)]
    return run_preflight(states, HelmPreflight(find_helm(helm), cache))


async def _member_facts(kubeconfig: Path, namespace: str) -> list[tuple[ClusterFacts, dict[str, Any]]]:
    """Facts of every reachable MemberCluster, with its per-cluster parameters."""
    from kubernetes import config

    from blueprintd.cluster.kubeconfig import api_client, check_kubeconfig, parse_kubeconfig
    from blueprintd.cluster.management import ManagementStore
    from blueprintd.facts.collect.live import collect_cluster_facts

    try:
        store = ManagementStore(config.new_client_from_config(config_file=str(kubeconfig)), namespace)
        members = await store.list("MemberCluster")
    except Exception as exc:  # kubernetes/urllib3 errors: report, do not trace back
        raise BlueprintdError(f"cannot list MemberClusters with {kubeconfig}: {exc}") from exc
    out: list[tuple[ClusterFacts, dict[str, Any]]] = []
    for mc in sorted(members, key=lambda m: m["metadata"]["name"]):
        name = mc["metadata"]["name"]
        spec = mc.get("spec") or {}
        ref = spec.get("kubeconfigSecretRef") or {}
        try:
            raw = await store.secret_value(ref.get("name", ""), ref.get("key", "kubeconfig"), ref.get("namespace"))
            cfg = parse_kubeconfig(raw)
            check_kubeconfig(
                cfg, allow_exec=bool(spec.get("allowExecAuth")), allow_local_files=bool(spec.get("allowLocalFiles"))
            )
            client = api_client(cfg)
            try:
                facts = await asyncio.to_thread(
                    collect_cluster_facts, client, name, cluster_labels=mc["metadata"].get("labels") or {}
                )
            finally:
                client.close()
        except Exception as exc:  # unreachable member: skip it, say so
            err.print(f"[yellow]skipped[/yellow] MemberCluster {name}: {exc}")
            continue
        out.append((facts, spec.get("parameters") or {}))
    return out


def print_chart_report(report: PreflightReport) -> None:
    """One line per (add-on, clusters) on stdout; problems indented under their check."""
    for c in report.checks:
        head = f"{c.addon} ({c.chart} {c.version}) for {', '.join(c.targets)}"
        if c.ok:
            print(f"{head}: ok ({c.objects} objects)")
        for p in c.problems:
            print(f"{head}: {p}")
    bad = len(report.failed)
    if bad:
        err.print(f"[red]{bad} chart check{'s' if bad != 1 else ''} failed[/red] of {len(report.checks)}")
    else:
        err.print(f"[green]charts ok[/green]: {len(report.checks)} chart checks")
