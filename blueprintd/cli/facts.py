"""``blueprintd facts``: show a cluster's hardware facts per node pool, or this machine's GPUs.

Two questions users ask before writing an overlay condition: "what pools does blueprintd see
in this cluster, and where did it read that?" (``--kubeconfig``) and "what would the node agent
report on this machine?" (``--local``, straight from NVML, or a simulated machine with
``--fake-nvml``). Both print a table for people and JSON/YAML for scripts; the JSON is the
exact API object (``ClusterFacts`` / ``NodeGpuInventory``) overlays and the agent use.
"""

from __future__ import annotations

import json
import socket
from collections import Counter
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.table import Table

from blueprintd.api import yamltext
from blueprintd.api.facts import ClusterFacts, FactSource, NodeGpuInventory, NodePool
from blueprintd.cli.output import name_column, stdout_console
from blueprintd.errors import BlueprintdError, ClusterError
from blueprintd.facts.collect.model import PRECEDENCE
from blueprintd.facts.collect.slices import DEFAULT_DRA_DRIVER
from blueprintd.facts.nvml.errors import NvmlError

err = Console(stderr=True, soft_wrap=True)


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"
    YAML = "yaml"


def api_client_from(kubeconfig: Path | None, context: str | None = None) -> Any:
    """A kubernetes ``ApiClient``: the given kubeconfig, else in-cluster, else the default."""
    from kubernetes import client, config

    try:
        if kubeconfig is not None:
            if not kubeconfig.is_file():
                raise ClusterError(f"kubeconfig {kubeconfig} does not exist")
            return config.new_client_from_config(config_file=str(kubeconfig), context=context)
        try:
            configuration = client.Configuration()
            config.load_incluster_config(client_configuration=configuration)
            return client.ApiClient(configuration)
        except config.ConfigException:
            return config.new_client_from_config(context=context)
    except config.ConfigException as exc:
        where = f" ({kubeconfig})" if kubeconfig else ""
        raise ClusterError(f"cannot load kubeconfig{where}: {exc}") from exc


def load_nvml(fake_machine: str | None) -> Any:
    """The fake machine when named (bundled name or YAML path), else the real pynvml."""
    if fake_machine:
        from blueprintd.facts.nvml.fake import FakeNvml

        return FakeNvml.from_machine(fake_machine)
    from blueprintd.facts.nvml.real import load

    return load()


def _dump(data: dict[str, Any], fmt: OutputFormat) -> None:
    if fmt is OutputFormat.JSON:
        print(json.dumps(data, indent=2, sort_keys=False))
    else:
        print(yamltext.dump(data, sort_keys=False), end="")


def _gib(mib: int) -> str:
    return f"{mib / 1024:.0f} GiB" if mib >= 1024 else (f"{mib} MiB" if mib else "")


def _mig_summary(gpu_mig: list[str]) -> str:
    counts = Counter(gpu_mig)
    return ", ".join(f"{n}x {p}" for p, n in sorted(counts.items()))


def render_inventory(inventory: NodeGpuInventory) -> None:
    out = stdout_console(soft_wrap=True)
    out.print(
        f"[bold]{inventory.node_name or 'this machine'}[/bold]: driver {inventory.driver_version or '?'}, "
        f"CUDA {inventory.cuda_driver_version or '?'}, {inventory.device_count} GPU(s)",
        highlight=False,
    )
    table = Table(show_lines=False)
    for col in ("GPU", "product", "memory", "arch", "CC", "MIG", "MIG devices", "PCI bus"):
        table.add_column(col, overflow="fold")
    for gpu in inventory.gpus:
        mig = "n/a"
        if gpu.mig_capable:
            mig = "on" if gpu.mig_enabled else "off"
            if gpu.mig_pending:
                mig += " (change pending reset)"
        table.add_row(
            str(gpu.index),
            gpu.product_name,
            _gib(gpu.memory_bytes >> 20),
            gpu.architecture,
            gpu.compute_capability,
            mig,
            _mig_summary([m.profile for m in gpu.mig_devices]),
            gpu.pci_bus_id,
        )
    out.print(table)


_SHORT_SOURCE = {
    FactSource.RESOURCE_SLICE: "slice",
    FactSource.NODE_AGENT: "agent",
    FactSource.GFD: "gfd",
    FactSource.NODE: "node",
}


def _sources(sources: dict[str, FactSource]) -> str:
    """The sources a pool's facts came from, best first (full names are in -o json)."""
    used = set(sources.values())
    return ",".join(_SHORT_SOURCE[s] for s in PRECEDENCE if s in used)


def _per_node(pool: NodePool) -> str:
    """GPUs per node; a range when the pool's nodes differ (``2-8``)."""
    if pool.gpu_count_min != pool.gpu_count_max:
        return f"{pool.gpu_count_min}-{pool.gpu_count_max}"
    return str(pool.gpu_count) if pool.gpu_count else ""


def render_cluster(facts: ClusterFacts) -> None:
    console = stdout_console(soft_wrap=True)
    version = f" ({facts.kubernetes_version})" if facts.kubernetes_version else ""
    console.print(f"[bold]{facts.cluster}[/bold]{version}: {len(facts.pools)} pool(s)", highlight=False)
    table = Table()
    name_column(table, "pool", (p.name for p in facts.pools))
    for col in ("nodes", "product", "GPUs/node", "GPUs", "memory", "MIG", "driver", "sources"):
        table.add_column(col, overflow="fold")
    for pool in facts.pools:
        mig = ""
        if pool.mig_capable or pool.mig_enabled:
            mig = "on" if pool.mig_enabled else "off"
            if pool.mig_enabled and pool.mig_config:
                mig += f" ({pool.mig_config})"
        table.add_row(
            pool.name,
            str(len(pool.nodes)),
            pool.gpu_product,
            _per_node(pool),
            str(pool.gpu_total) if pool.gpu_total else "",
            _gib(pool.gpu_memory_mib),
            mig,
            pool.driver_version,
            _sources(pool.sources),
        )
    console.print(table)
    source_conflicts = [c for c in facts.conflicts if not c.pool]
    if source_conflicts:
        conflicts = Table(title="sources disagree (the first source wins)")
        name_column(conflicts, "node", (c.node for c in source_conflicts))
        for col in ("fact", "chosen", "other"):
            conflicts.add_column(col, overflow="fold")
        for c in source_conflicts:
            conflicts.add_row(
                c.node,
                c.field,
                f"{c.chosen} ({_SHORT_SOURCE[c.chosen_source]})",
                f"{c.other} ({_SHORT_SOURCE[c.other_source]})",
            )
        console.print(conflicts)
    node_conflicts = [c for c in facts.conflicts if c.pool]
    if node_conflicts:
        differ = Table(title="nodes of one pool differ (the pool reports the most common value)")
        name_column(differ, "pool", (c.pool or "" for c in node_conflicts))
        name_column(differ, "node", (c.node for c in node_conflicts))
        for col in ("fact", "pool value", "node value"):
            differ.add_column(col, overflow="fold")
        for c in node_conflicts:
            differ.add_row(c.pool, c.node, c.field, c.chosen, f"{c.other} ({_SHORT_SOURCE[c.other_source]})")
        console.print(differ)


def facts_cmd(
    kubeconfig: Annotated[
        Path | None, typer.Option("--kubeconfig", help="Summarize the cluster this kubeconfig points at.")
    ] = None,
    context: Annotated[str | None, typer.Option("--context", help="kubeconfig context to use.")] = None,
    local: Annotated[
        bool, typer.Option("--local", help="Discover this machine's GPUs through NVML.")
    ] = False,
    fake_nvml: Annotated[
        str | None,
        typer.Option(
            "--fake-nvml",
            metavar="MACHINE",
            help="With --local: a simulated machine (dgx-h100, dgx-h100-mig, dgx-a100, l4-server, "
            "t4-node, … or a machine YAML file) instead of the real driver.",
        ),
    ] = None,
    output: Annotated[
        OutputFormat, typer.Option("--output", "-o", help="Output format.")
    ] = OutputFormat.TABLE,
    cluster_name: Annotated[
        str | None, typer.Option("--cluster-name", help="Name shown for the cluster (default: the context).")
    ] = None,
    node_name: Annotated[
        str | None, typer.Option("--node-name", help="With --local: node name to report (default: hostname).")
    ] = None,
    dra_driver: Annotated[
        str, typer.Option("--dra-driver", help="DRA driver whose ResourceSlices describe GPUs.")
    ] = DEFAULT_DRA_DRIVER,
) -> None:
    """Show hardware facts per node pool (--kubeconfig), or this machine's GPUs (--local).

    Exit status: 0 on success; 1 when the cluster cannot be read, no NVIDIA driver is found,
    or discovery was partial (some GPU could not be read); 2 on usage errors.
    """
    local = local or fake_nvml is not None
    if local == (kubeconfig is not None):
        err.print("error: give exactly one of --kubeconfig FILE or --local", highlight=False)
        raise typer.Exit(2)
    if local:
        _local(fake_nvml, node_name or socket.gethostname(), output)
    else:
        assert kubeconfig is not None
        _cluster(kubeconfig, context, cluster_name, output, dra_driver)


def _local(fake_nvml: str | None, node_name: str, output: OutputFormat) -> None:
    from blueprintd.facts.nvml.discovery import discover

    try:
        inventory = discover(load_nvml(fake_nvml), node_name)
    except NvmlError as exc:
        err.print(f"error: {exc}", highlight=False, markup=False)
        raise typer.Exit(1) from None
    except BlueprintdError as exc:
        err.print(f"error: {exc}", highlight=False, markup=False)
        raise typer.Exit(1) from None
    if output is OutputFormat.TABLE:
        render_inventory(inventory)
    else:
        _dump(inventory.to_wire(), output)
    for message in inventory.errors:
        err.print(f"warning: {message}", highlight=False, markup=False)
    if inventory.partial:
        raise typer.Exit(1)


def _cluster(
    kubeconfig: Path, context: str | None, cluster_name: str | None, output: OutputFormat, dra_driver: str
) -> None:
    from blueprintd.facts.collect.live import collect_cluster_facts

    try:
        api_client = api_client_from(kubeconfig, context)
        try:
            name = cluster_name or context or _current_context(kubeconfig) or kubeconfig.stem
            facts = collect_cluster_facts(api_client, name, dra_driver=dra_driver)
        finally:
            api_client.close()
    except BlueprintdError as exc:
        err.print(f"error: {exc}", highlight=False, markup=False)
        raise typer.Exit(1) from None
    if output is OutputFormat.TABLE:
        render_cluster(facts)
    else:
        _dump(facts.to_wire(), output)


def _current_context(kubeconfig: Path) -> str:
    try:
        data = yaml.safe_load(kubeconfig.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return ""
    return str(data.get("current-context") or "") if isinstance(data, dict) else ""
