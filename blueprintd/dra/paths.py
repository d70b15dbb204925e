"""Where the plugin lives on the node: defaults and the socket/checkpoint layout.

The kubelet finds DRA drivers by watching ``<plugin-root>/plugins_registry`` for sockets and
reaches the driver on the endpoint the registration socket reports. Both paths must be the
same inside the plugin's container and on the host (the chart mounts them at the same path),
so one object computes them from the plugin root and the driver name and every component
(server, checkpoint, CDI, chart docs) agrees::

    <plugin-root>/plugins_registry/<driver>-reg.sock    registration (plugin watcher)
    <plugin-root>/plugins/<driver>/dra.sock              DRA service (NodePrepare/Unprepare)
    <plugin-root>/plugins/<driver>/checkpoint.json       prepared claims, survives restarts
    <plugin-root>/plugins/<driver>/mps/<claim-uid>/      MPS pipe/log dirs of shared claims

The pod-UID socket names the kubelet accepts since 1.33 for seamless rolling updates
(``<driver>-<uid>-reg.sock``, ``dra-<uid>.sock``) are not used: one plugin instance per node
at a time, so an upgrade has a short window in which prepare calls are retried by the kubelet.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_DRIVER_NAME = "gpu.nvidia.com"
DEFAULT_PLUGIN_ROOT = Path("/var/lib/kubelet")
DEFAULT_CDI_ROOT = Path("/var/run/cdi")


@dataclass(frozen=True)
class PluginPaths:
    """All node paths of one driver instance, derived from the plugin root and driver name."""

    plugin_root: Path
    driver_name: str

    @property
    def plugin_dir(self) -> Path:
        return self.plugin_root / "plugins" / self.driver_name

    @property
    def registry_dir(self) -> Path:
        return self.plugin_root / "plugins_registry"

    @property
    def dra_socket(self) -> Path:
        return self.plugin_dir / "dra.sock"

    @property
    def registration_socket(self) -> Path:
        return self.registry_dir / f"{self.driver_name}-reg.sock"

    @property
    def checkpoint_file(self) -> Path:
        return self.plugin_dir / "checkpoint.json"

    @property
    def mps_root(self) -> Path:
        return self.plugin_dir / "mps"

    def ensure_dirs(self) -> None:
        """Create the plugin and registry directories (the kubelet creates them too, usually)."""
        self.plugin_dir.mkdir(parents=True, exist_ok=True)
        self.registry_dir.mkdir(parents=True, exist_ok=True)
