"""``blueprintd dra-plugin``: run the bundled DRA kubelet plugin for NVIDIA GPUs on this node.

Registered on the main app by ``blueprintd.cli.main`` (this module does not import it, so
there is no import cycle). The chart ``charts/blueprintd-dra-driver`` runs this command in a
DaemonSet; every flag has a matching chart value.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from blueprintd.dra.paths import DEFAULT_CDI_ROOT, DEFAULT_DRIVER_NAME, DEFAULT_PLUGIN_ROOT
from blueprintd.errors import BlueprintdError

err = Console(stderr=True, soft_wrap=True)


def _api_client(kubeconfig: Path | None) -> Any:
    """Explicit kubeconfig, else the pod's service account, else the default kubeconfig."""
    from kubernetes import client, config

    if kubeconfig is not None:
        return config.new_client_from_config(config_file=str(kubeconfig))
    try:
        cfg = client.Configuration()
        config.load_incluster_config(client_configuration=cfg)
        return client.ApiClient(cfg)
    except config.ConfigException:
        return config.new_client_from_config()


def dra_plugin_cmd(
    node_name: Annotated[
        str,
        typer.Option("--node-name", envvar="NODE_NAME", help="This node's name (pool and spec.nodeName)."),
    ],
    kubeconfig: Annotated[
        Path | None,
        typer.Option("--kubeconfig", help="Kubeconfig file; default: in-cluster service account."),
    ] = None,
    driver_name: Annotated[str, typer.Option("--driver-name", help="DRA driver name.")] = DEFAULT_DRIVER_NAME,
    plugin_root: Annotated[
        Path, typer.Option("--plugin-root", help="Kubelet root holding plugins/ and plugins_registry/.")
    ] = DEFAULT_PLUGIN_ROOT,
    cdi_root: Annotated[
        Path, typer.Option("--cdi-root", help="Directory for CDI spec files.")
    ] = DEFAULT_CDI_ROOT,
    fake_nvml: Annotated[
        str | None,
        typer.Option(
            "--fake-nvml",
            metavar="MACHINE",
            help="Simulate GPUs with a bundled fake machine (dgx-h100, dgx-h100-mig, ...) or a YAML file; "
            "GPU sharing commands are then only logged.",
        ),
    ] = None,
    resync_interval: Annotated[
        float, typer.Option("--resync-interval", min=0, help="Seconds between re-discoveries (0: never).")
    ] = 30.0,
    log_level: Annotated[str, typer.Option("--log-level", help="DEBUG, INFO, WARNING or ERROR.")] = "INFO",
) -> None:
    """Run the DRA kubelet plugin: publish ResourceSlices and serve NodePrepare/UnprepareResources.

    Serves <plugin-root>/plugins/<driver>/dra.sock and registers through
    <plugin-root>/plugins_registry/<driver>-reg.sock until SIGTERM/SIGINT, then removes both.
    """
    from blueprintd.dra.executor import RecordingExecutor
    from blueprintd.dra.plugin import DraPlugin, PluginOptions
    from blueprintd.facts.nvml.interface import NvmlLibrary

    logging.basicConfig(
        level=getattr(logging, log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    options = PluginOptions(
        node_name=node_name,
        driver_name=driver_name,
        plugin_root=plugin_root,
        cdi_root=cdi_root,
        resync_interval_s=resync_interval,
    )
    try:
        nvml: NvmlLibrary
        extra: dict[str, Any] = {}
        if fake_nvml:
            from blueprintd.dra.cdi import no_mig_caps
            from blueprintd.dra.slices import bus_id_pcie_root
            from blueprintd.facts.nvml.fake import FakeNvml

            nvml = FakeNvml.from_machine(fake_nvml)
            # Simulated GPUs: no sharing commands, no sysfs/proc lookups of this host's devices.
            extra = {
                "executor": RecordingExecutor(log=True),
                "pcie_root": bus_id_pcie_root,
                "mig_caps": no_mig_caps,
            }
        else:
            from blueprintd.facts.nvml.real import load

            nvml = load()
        plugin = DraPlugin.from_api_client(options, _api_client(kubeconfig), nvml=nvml, **extra)
        plugin.run_until_signal()
    except BlueprintdError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from None
