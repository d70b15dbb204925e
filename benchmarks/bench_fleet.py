"""Test-bed benchmarks: how long a local fleet takes to become ready, and what it costs.

Measured end to end through ``Fleet.up`` (certificates, etcd, API servers, /readyz, nodes;
for ``full`` members also kube-controller-manager, kube-scheduler and kwok until the default
service account exists), for management + 3 and management + 10 members of each control-plane
shape; resident memory is read from /proc/PID/status once the fleet is ready: per API server,
and per member for everything the member runs.

``BLUEPRINTD_BENCH_FLEET_SIZES=3`` sets the member counts (default 3,10).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from blueprintd.devfleet import binaries
from blueprintd.devfleet.nodes import ControlPlane, uniform_fleet
from blueprintd.devfleet.testing import running_fleet


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run() -> list[dict[str, Any]]:
    bins = binaries.ensure()
    rows: list[dict[str, Any]] = []
    shapes: tuple[ControlPlane, ...] = ("api-only", "full")
    for shape in shapes:
        for members in [int(n) for n in os.environ.get("BLUEPRINTD_BENCH_FLEET_SIZES", "3,10").split(",")]:
            spec = uniform_fleet(members, ["h100", "l4"], 1, control_plane=shape)
            with tempfile.TemporaryDirectory(prefix="bench-fleet-") as d:
                started = time.monotonic()
                with running_fleet(Path(d) / "f", spec, bins) as fleet:
                    ready = time.monotonic() - started
                    time.sleep(2)  # let post-start hooks settle before reading memory
                    rss = [_rss_mib(c.process.pid) for c in fleet.state.clusters if c.process]
                    per_member = [
                        sum(_rss_mib(p.pid) for p in [c.process, *c.components.values()] if p)
                        for c in fleet.state.clusters
                        if c.role == "member"
                    ]
            name = f"management + {members} {shape} members"
            rows += [
                {"name": name, "metric": "time to ready", "value": ready, "unit": "s", "goal": ""},
                {"name": name, "metric": "API server RSS (mean)", "value": statistics.mean(rss), "unit": "MiB",
                 "goal": ""},
                {"name": name, "metric": "member RSS, all its processes (mean)",
                 "value": statistics.mean(per_member), "unit": "MiB", "goal": ""},
            ]
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
