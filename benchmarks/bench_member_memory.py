"""The operator's marginal memory per member: what one more member costs.

One ``blueprintd operator --shards`` replica (the chart's defaults) and the project's own
``blueprints/gpu-platform`` on a local fleet of api-only members, the members registered in
two steps (``BLUEPRINTD_BENCH_MEMORY_SIZES``, default ``3,12``). Once each step has converged
and settled (30 s), the replica's RSS and thread count come from /proc; the slope between the
two steps is the memory one more member costs (issue 15's goal: <= 1 MiB per member).

Most of that slope is the drift monitor's watch streams, 38 per member for this blueprint
(the thread count per member says so); ``watch_streams`` measures what one costs.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from benchmarks.bench_scale import NS, blueprint, install_crds, operator_argv, wait_converged
from blueprintd.devfleet import binaries
from blueprintd.devfleet.chartrepo import ChartRepoServer, build_chart_repo
from blueprintd.devfleet.chartserve import chart_sources
from blueprintd.devfleet.demo import register_members
from blueprintd.devfleet.nodes import uniform_fleet
from blueprintd.devfleet.standins import StandIns
from blueprintd.devfleet.testing import running_fleet

SETTLE_S = 30.0


def _status(pid: int | str) -> dict[str, int]:
    """VmRSS (KiB) and Threads of a process, from /proc."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "Threads"):
            out[key] = int(value.split()[0])
    return out


def marginal_memory(small: int, large: int, bins: binaries.Binaries, repo_url: str, work: Path) -> dict[str, float]:
    with running_fleet(work / "f", uniform_fleet(large, ["l4"], 1, control_plane="api-only"), bins) as fleet:
        sim = StandIns(fleet)
        sim.start()
        kubectl = install_crds(fleet, bins)
        register_members(fleet, bins, NS, fleet.members[:small])
        with (work / "operator.log").open("wb") as log:
            proc = subprocess.Popen(operator_argv(fleet, bins, "r1", repo_url), stdout=log, stderr=subprocess.STDOUT)
            try:
                subprocess.run([*kubectl, "apply", "-n", NS, "-f", "-"], input=yaml.safe_dump(blueprint("1.0.0")),
                               text=True, check=True, capture_output=True)  # fmt: skip
                wait_converged(fleet, bins.kubectl, "1.0.0", small, [proc], 600 + 30 * small)
                time.sleep(SETTLE_S)
                at_small = _status(proc.pid)
                register_members(fleet, bins, NS, fleet.members[small:])
                wait_converged(fleet, bins.kubectl, "1.0.0", large, [proc], 600 + 30 * large)
                time.sleep(SETTLE_S)
                at_large = _status(proc.pid)
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                sim.stop()
    return {
        "rss_small": at_small["VmRSS"] / 1024,
        "rss_large": at_large["VmRSS"] / 1024,
        "slope": (at_large["VmRSS"] - at_small["VmRSS"]) / 1024 / (large - small),
        "threads_per_member": (at_large["Threads"] - at_small["Threads"]) / (large - small),
    }


def run() -> list[dict[str, Any]]:
    small, large = (int(s) for s in os.environ.get("BLUEPRINTD_BENCH_MEMORY_SIZES", "3,12").split(","))
    bins = binaries.ensure()
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as d:
        out = build_chart_repo(chart_sources(), Path(d) / "charts", bins.helm)
        with ChartRepoServer(out) as server:
            r = marginal_memory(small, large, bins, server.url, Path(d))
    name = f"gpu-platform, 1 replica, {small} -> {large} api-only members"
    return [
        {"name": name, "metric": f"operator RSS at {small} members", "value": r["rss_small"], "unit": "MiB",
         "goal": ""},
        {"name": name, "metric": f"operator RSS at {large} members", "value": r["rss_large"], "unit": "MiB",
         "goal": ""},
        {"name": name, "metric": "marginal memory per member", "value": r["slope"], "unit": "MiB", "goal": "<= 1"},
        {"name": name, "metric": "operator threads per member", "value": r["threads_per_member"], "unit": "threads",
         "goal": ""},
    ]  # fmt: skip


if __name__ == "__main__":
    for row in run():
        print(row)
