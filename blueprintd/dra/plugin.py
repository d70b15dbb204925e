"""The DRA kubelet plugin process: discovery, publication, serving, resync, shutdown.

Start-up order, and why:

1. load the checkpoint (so unprepare works for claims prepared by an earlier run); an
   untrustworthy checkpoint is moved aside and logged loudly rather than blocking the node:
   refusing to start would keep every GPU pod on the node from starting *and* from stopping;
2. discover the GPUs and write the node-wide CDI device spec (the runtime needs it before the
   first container with a prepared GPU starts);
3. publish the ResourceSlices (the scheduler can only allocate what is published);
4. start the DRA server, then the registration server (see :mod:`blueprintd.dra.server`).

A background loop re-discovers every ``resync_interval_s`` seconds: after a MIG re-layout
the device set changes, the CDI device spec is rewritten and a new pool generation is
published. Failures in the loop are logged and retried on the next tick; a plugin that
stopped publishing because the API server blinked would be worse than a noisy one.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from blueprintd.api.facts import NodeGpuInventory
from blueprintd.dra.cdi import CdiWriter, MigCapsResolver, ProcMigCaps, no_mig_caps
from blueprintd.dra.checkpoint import CheckpointError, CheckpointStore
from blueprintd.dra.claims import ClaimSource, KubeClaimSource
from blueprintd.dra.executor import NvidiaSmiExecutor, SharingExecutor
from blueprintd.dra.paths import DEFAULT_CDI_ROOT, DEFAULT_DRIVER_NAME, DEFAULT_PLUGIN_ROOT, PluginPaths
from blueprintd.dra.prepare import Preparer
from blueprintd.dra.publisher import KubeSliceStore, SlicePublisher, SliceStore
from blueprintd.dra.server import PluginServer
from blueprintd.dra.slices import PcieRootResolver, PublishPlan, bus_id_pcie_root

log = logging.getLogger(__name__)

Discover = Callable[[], NodeGpuInventory]


def sysfs_pcie_root(bus_id: str, sysfs: Path = Path("/sys")) -> str | None:
    """The PCIe root complex of a device from sysfs (``/sys/devices/pci0000:15/...``).

    NVML reports bus ids with an 8-digit domain (``00000000:18:00.0``); sysfs uses 4 digits.
    """
    parts = bus_id.strip().lower().split(":")
    if len(parts) != 3:
        return None
    short = f"{int(parts[0], 16):04x}:{parts[1]}:{parts[2]}"
    try:
        real = (sysfs / "bus" / "pci" / "devices" / short).resolve(strict=True)
    except (OSError, ValueError):
        return None
    for part in real.parts:
        if part.startswith("pci") and ":" in part:
            return part
    return None


def node_pcie_root(bus_id: str) -> str | None:
    """sysfs when it knows the device, else the device's own bus (see bus_id_pcie_root)."""
    return sysfs_pcie_root(bus_id) or bus_id_pcie_root(bus_id)


@dataclass
class PluginOptions:
    """The plugin's settings (CLI flags and chart values map 1:1 onto these)."""

    node_name: str
    driver_name: str = DEFAULT_DRIVER_NAME
    plugin_root: Path = DEFAULT_PLUGIN_ROOT
    cdi_root: Path = DEFAULT_CDI_ROOT
    resync_interval_s: float = 30.0

    @property
    def paths(self) -> PluginPaths:
        return PluginPaths(self.plugin_root, self.driver_name)


def nvml_discover(nvml: Any, node_name: str) -> Discover:
    """Discovery over a pynvml-shaped module (the real ``pynvml`` or ``FakeNvml``)."""
    from blueprintd.facts.nvml.discovery import discover

    return lambda: discover(nvml, node_name)


class DraPlugin:
    """One running driver instance on one node.

    Everything with side effects is injected so tests run the real plugin against a real API
    server with fake NVML and a recording sharing executor.
    """

    def __init__(
        self,
        options: PluginOptions,
        *,
        discover: Discover,
        slice_store: SliceStore,
        claim_source: ClaimSource,
        executor: SharingExecutor | None = None,
        pcie_root: PcieRootResolver = node_pcie_root,
        mig_caps: MigCapsResolver = no_mig_caps,
    ) -> None:
        self.options = options
        self.paths = options.paths
        self._discover = discover
        self.cdi = CdiWriter(options.cdi_root)
        self.mig_caps = mig_caps
        self.publisher = SlicePublisher(slice_store, options.driver_name, options.node_name, pcie_root)
        store = CheckpointStore(self.paths.checkpoint_file)
        try:
            store.load()
        except CheckpointError as exc:
            moved = store.quarantine()
            log.error("%s; moved to %s and starting without prepared claims", exc, moved)
        self.preparer = Preparer(
            driver_name=options.driver_name,
            node_name=options.node_name,
            claims=claim_source,
            cdi=self.cdi,
            executor=executor or NvidiaSmiExecutor(),
            checkpoints=store,
            mps_root=self.paths.mps_root,
        )
        self.server = PluginServer(self.paths, self.preparer)
        self.inventory: NodeGpuInventory | None = None
        self.last_plan: PublishPlan | None = None
        self._stop = threading.Event()
        self._loop: threading.Thread | None = None

    @classmethod
    def from_api_client(
        cls, options: PluginOptions, api_client: Any, *, nvml: Any, **kwargs: Any
    ) -> DraPlugin:
        """The production wiring: kubernetes client for slices and claims, NVML discovery."""
        kwargs.setdefault("mig_caps", ProcMigCaps(nvml))
        return cls(
            options,
            discover=nvml_discover(nvml, options.node_name),
            slice_store=KubeSliceStore(api_client),
            claim_source=KubeClaimSource(api_client),
            **kwargs,
        )

    def resync(self) -> PublishPlan:
        """Discover, refresh prepare's device view and the CDI device spec, publish slices."""
        inventory = self._discover()
        for err in inventory.errors:
            log.warning("discovery: %s", err)
        self.inventory = inventory
        self.preparer.update_inventory(inventory)
        self.cdi.write_device_spec(inventory, self.mig_caps)
        self.last_plan = self.publisher.publish(inventory)
        return self.last_plan

    def start(self, *, background_resync: bool = True) -> None:
        self.resync()
        self.server.start()
        if background_resync and self.options.resync_interval_s > 0:
            self._stop.clear()
            self._loop = threading.Thread(target=self._resync_loop, name="dra-resync", daemon=True)
            self._loop.start()

    def _resync_loop(self) -> None:
        while not self._stop.wait(self.options.resync_interval_s):
            try:
                self.resync()
            except Exception:
                log.exception("resync failed; retrying in %ss", self.options.resync_interval_s)

    def stop(self) -> None:
        """Stop the resync loop and both servers; removes the sockets. Idempotent."""
        self._stop.set()
        if self._loop is not None:
            self._loop.join(timeout=30)
            self._loop = None
        self.server.stop()

    def run_until_signal(self) -> None:
        """Serve until SIGTERM or SIGINT (main thread only), then shut down cleanly."""
        done = threading.Event()

        def _handler(signum: int, frame: FrameType | None) -> None:
            log.info("signal %d: shutting down", signum)
            done.set()

        previous = {s: signal.signal(s, _handler) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.start()
            log.info(
                "DRA driver %s ready on node %s (pid %d)",
                self.options.driver_name,
                self.options.node_name,
                os.getpid(),
            )
            done.wait()
        finally:
            self.stop()
            for s, h in previous.items():
                signal.signal(s, h)
