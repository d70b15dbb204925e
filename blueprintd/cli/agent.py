"""``blueprintd node-agent``: the per-node GPU facts publisher (run by the DaemonSet).

See ``blueprintd.facts.agent`` for what a cycle does. This module only wires the command
line to it: where the API credentials come from (in-cluster service account unless a
kubeconfig is given), which NVML to use (the real driver, or a simulated machine for demos
and tests), logging, and a clean exit on SIGTERM so pod shutdown is immediate.
"""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from blueprintd.cli.facts import api_client_from, err, load_nvml
from blueprintd.errors import BlueprintdError


def node_agent_cmd(
    node_name: Annotated[
        str,
        typer.Option(
            "--node-name",
            envvar="NODE_NAME",
            help="This node's name (the DaemonSet passes spec.nodeName).",
        ),
    ],
    kubeconfig: Annotated[
        Path | None,
        typer.Option("--kubeconfig", help="kubeconfig to use instead of the in-cluster service account."),
    ] = None,
    interval: Annotated[
        float, typer.Option("--interval", min=1.0, help="Seconds between discovery cycles.")
    ] = 60.0,
    fake_nvml: Annotated[
        str | None,
        typer.Option(
            "--fake-nvml", metavar="MACHINE", help="Simulated machine instead of the real NVIDIA driver."
        ),
    ] = None,
    once: Annotated[
        bool, typer.Option("--once", help="Run one cycle and exit (0: published or unchanged).")
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log every cycle, not only changes.")
    ] = False,
) -> None:
    """Publish this node's GPU inventory as the blueprintd.io/gpu-facts annotation (and labels)."""
    from blueprintd.facts.agent import KubeNodeApi, NodeAgent

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        nvml = load_nvml(fake_nvml)
        api_client = api_client_from(kubeconfig)
    except BlueprintdError as exc:
        err.print(f"error: {exc}", highlight=False, markup=False)
        raise typer.Exit(1) from None
    agent = NodeAgent(api=KubeNodeApi(api_client), nvml=nvml, node_name=node_name, interval_s=interval)
    try:
        if once:
            try:
                result = agent.run_once()
            except BlueprintdError as exc:
                err.print(f"error: {exc}", highlight=False, markup=False)
                raise typer.Exit(1) from None
            state = "published" if result.wrote else "unchanged"
            err.print(f"{node_name}: {len(result.inventory.gpus)} GPU(s), facts {state}", highlight=False)
            return

        def _stop(signum: int, _frame: FrameType | None) -> None:
            logging.getLogger(__name__).info("signal %d: stopping", signum)
            agent.stop()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        agent.run_forever()
    finally:
        api_client.close()
