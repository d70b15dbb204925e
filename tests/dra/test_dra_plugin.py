"""The plugin process wiring with an in-memory slice store: resync loop, corrupt checkpoints."""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

from blueprintd.api.facts import NodeGpuInventory
from blueprintd.dra.cdi import CdiWriter
from blueprintd.dra.executor import RecordingExecutor
from blueprintd.dra.plugin import DraPlugin, PluginOptions, sysfs_pcie_root
from blueprintd.dra.slices import bus_id_pcie_root
from blueprintd.facts.nvml import FakeNvml, discover


class MemorySlices:
    """SliceStore keeping slices in a dict, counting writes."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}
        self.writes = 0
        self.rv = 0

    def list(self, driver: str, node: str) -> list[dict[str, Any]]:
        return [
            copy.deepcopy(s)
            for s in self.items.values()
            if s["spec"]["driver"] == driver and s["spec"]["nodeName"] == node
        ]

    def _put(self, body: dict[str, Any]) -> None:
        self.writes += 1
        self.rv += 1
        body = copy.deepcopy(body)
        body["metadata"]["resourceVersion"] = str(self.rv)
        self.items[body["metadata"]["name"]] = body

    def create(self, body: dict[str, Any]) -> None:
        self._put(body)

    def update(self, body: dict[str, Any]) -> None:
        self._put(body)

    def delete(self, name: str) -> None:
        self.writes += 1
        self.items.pop(name, None)

    def node_metadata(self, node: str) -> dict[str, Any] | None:
        return None


def _plugin(
    short_tmp: Path, fake: FakeNvml, store: MemorySlices, claims: Any, interval: float = 0
) -> DraPlugin:
    options = PluginOptions(
        node_name="node-a",
        plugin_root=short_tmp / "k",
        cdi_root=short_tmp / "cdi",
        resync_interval_s=interval,
    )
    return DraPlugin(
        options,
        discover=lambda: discover(fake, "node-a"),
        slice_store=store,
        claim_source=claims,
        executor=RecordingExecutor(),
        pcie_root=bus_id_pcie_root,
    )


def _generation(store: MemorySlices) -> int:
    return max(s["spec"]["pool"]["generation"] for s in store.items.values())


def test_background_resync_publishes_mig_relayout(short_tmp: Path, memory_claims: Any) -> None:
    fake = FakeNvml.from_machine("dgx-h100")
    store = MemorySlices()
    plugin = _plugin(short_tmp, fake, store, memory_claims, interval=0.1)
    plugin.start()
    try:
        assert _generation(store) == 1
        writes = store.writes
        time.sleep(0.35)
        assert store.writes == writes, "unchanged resyncs write nothing"
        fake.set_mig_layout(0, ["1g.10gb"] * 7)
        deadline = time.monotonic() + 10
        while _generation(store) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        (s,) = store.items.values()
        assert s["spec"]["pool"]["generation"] == 2
        assert [d["name"] for d in s["spec"]["devices"]][:2] == [
            "gpu-0-mig-1g10gb-19-0",
            "gpu-0-mig-1g10gb-19-1",
        ]
    finally:
        plugin.stop()
    assert not plugin.paths.dra_socket.exists()


def test_corrupt_checkpoint_is_quarantined_and_plugin_starts(short_tmp: Path, memory_claims: Any) -> None:
    checkpoint = short_tmp / "k" / "plugins" / "gpu.nvidia.com" / "checkpoint.json"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_text('{"version": 1, "checksum": "0", "data": {"preparedClaims": {}}}')
    plugin = _plugin(short_tmp, FakeNvml.from_machine("dgx-h100"), MemorySlices(), memory_claims)
    assert plugin.preparer.prepared_claims == {}
    assert (checkpoint.parent / "checkpoint.json.corrupt.0").exists() and not checkpoint.exists()


def test_node_without_gpus(short_tmp: Path) -> None:
    w = CdiWriter(short_tmp)
    w.write_device_spec(NodeGpuInventory(node_name="cpu"))
    assert not w.device_spec_path.exists(), "no CDI spec without devices"


def test_sysfs_pcie_root(tmp_path: Path) -> None:
    real = tmp_path / "devices" / "pci0000:15" / "0000:15:01.0" / "0000:18:00.0"
    real.mkdir(parents=True)
    link_dir = tmp_path / "bus" / "pci" / "devices"
    link_dir.mkdir(parents=True)
    (link_dir / "0000:18:00.0").symlink_to(real)
    assert sysfs_pcie_root("00000000:18:00.0", tmp_path) == "pci0000:15"
    assert sysfs_pcie_root("00000000:99:00.0", tmp_path) is None
