"""Test-bed benchmarks: how long a local fleet takes to become ready, and what it costs.

Measured end to end through ``Fleet.up`` (certificates, etcd, API servers, /readyz, nodes),
for management + 3 and management + 10 members; resident memory is read from
/proc/PID/status of each API server once it is ready.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from blueprintd.devfleet import binaries
from blueprintd.devfleet.nodes import uniform_fleet
from blueprintd.devfleet.testing import running_fleet


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run() -> list[dict[str, Any]]:
    bins = binaries.ensure()
    rows: list[dict[str, Any]] = []
    for members in (3, 10):
        with tempfile.TemporaryDirectory(prefix="bench-fleet-") as d:
            started = time.monotonic()
            with running_fleet(Path(d) / "f", uniform_fleet(members, ["h100", "l4"], 1), bins) as fleet:
                ready = time.monotonic() - started
                time.sleep(2)  # let post-start hooks settle before reading memory
                rss = [_rss_mib(c.process.pid) for c in fleet.state.clusters if c.process]
            rows += [
                {"name": f"management + {members} members", "metric": "time to ready", "value": ready,
                 "unit": "s", "goal": ""},
                {"name": f"management + {members} members", "metric": "API server RSS (mean)",
                 "value": statistics.mean(rss), "unit": "MiB", "goal": ""},
                {"name": f"management + {members} members", "metric": "API server RSS (max)",
                 "value": max(rss), "unit": "MiB", "goal": ""},
            ]
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
