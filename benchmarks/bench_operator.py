"""Operator benchmarks: a new Blueprint version converging on N real member clusters.

For each fleet size: a local fleet (real API servers), the real operator process, a
Blueprint with a Helm add-on (the KAI stand-in from the local chart repository) and a
manifests add-on, first at 1.0.0 and then bumped to 1.1.0 with ``maxUnavailable: 25%``.
Measured: seconds from the bump until every member runs 1.1.0, the operator's CPU seconds
and peak RSS over that time (per cluster), and, on the converged fleet over a quiet window of
``BLUEPRINTD_BENCH_QUIET`` seconds (default 30; member resync every 5 s): the write calls its
no-op reconciles make (from the members' audit logs; the goal is zero) and the cores the
operator and its ``helm`` children use per member (from /proc CPU times; goal <= 0.005).

``BLUEPRINTD_BENCH_OPERATOR_SIZES=10,50`` sets the fleet sizes (default 10,50; each member
API server takes ~280 MiB).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from blueprintd.devfleet import binaries
from blueprintd.devfleet.chartrepo import ChartRepoServer, build_chart_repo
from blueprintd.devfleet.chartserve import REPO_ROOT, chart_sources
from blueprintd.devfleet.demo import OPERATOR_USER, mirror_flags, register_members
from blueprintd.devfleet.fleet import Fleet
from blueprintd.devfleet.nodes import uniform_fleet
from blueprintd.devfleet.standins import StandIns
from blueprintd.devfleet.testing import running_fleet

NS = "blueprintd-system"


def _blueprint(version: str) -> dict[str, Any]:
    return {
        "apiVersion": "blueprintd.io/v1alpha1", "kind": "Blueprint", "metadata": {"name": "bench"},
        "spec": {
            "version": version,
            "rollout": {"maxUnavailable": "25%"},
            "addons": [
                {"name": "kai", "namespace": "kai-scheduler",
                 "helm": {"repo": "oci://ghcr.io/nvidia/kai-scheduler", "chart": "kai-scheduler",
                          "version": "v0.10.2", "values": {"global": {"gpuSharing": version != "1.0.0"}}}},
                {"name": "settings", "namespace": "bench", "dependsOn": ["kai"],
                 "manifests": [{"apiVersion": "v1", "kind": "ConfigMap",
                                "metadata": {"name": "platform", "namespace": "bench"},
                                "data": {"version": version}}]},
            ],
        },
    }


def _proc_stats(pid: int) -> tuple[float, float]:
    """(CPU seconds, RSS MiB) of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    rss = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
               if line.startswith("VmRSS:")) / 1024
    return cpu, rss


def _cpu_with_children(pid: int) -> float:
    """CPU seconds of a process and of its children it has waited for (helm subprocesses)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def _applied(fleet: Fleet, kubectl: Path) -> dict[str, str]:
    out = subprocess.run([str(kubectl), "--kubeconfig", str(fleet.management.kubeconfig), "get", "memberclusters",
                          "-n", NS, "-o", "yaml"], capture_output=True, text=True).stdout
    got: dict[str, str] = {}
    for mc in (yaml.safe_load(out) or {}).get("items", []):
        for a in (mc.get("status") or {}).get("appliedRevisions") or []:
            got[mc["metadata"]["name"]] = a["version"]
    return got


def _converge(fleet: Fleet, kubectl: Path, version: str, n: int, timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        applied = _applied(fleet, kubectl)
        if len(applied) == n and set(applied.values()) == {version}:
            return time.monotonic() - start
        time.sleep(1)
    raise RuntimeError(f"{version} did not converge on {n} clusters within {timeout}s")


def run_size(n: int, bins: binaries.Binaries, repo_url: str) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix=f"bench-op-{n}-") as d, \
            running_fleet(Path(d) / "f", uniform_fleet(n, ["l4"], 1, control_plane="api-only"), bins) as fleet:
        sim = StandIns(fleet)
        sim.start()
        kc = str(fleet.management.kubeconfig)
        subprocess.run([str(bins.kubectl), "--kubeconfig", kc, "apply", "--server-side", "-f",
                        str(REPO_ROOT / "crds")], check=True, capture_output=True)
        subprocess.run([str(bins.kubectl), "--kubeconfig", kc, "wait", "--for=condition=Established", "crd",
                        "--all"], check=True, capture_output=True)
        register_members(fleet, bins, NS)
        args = [sys.executable, "-m", "blueprintd", "operator", "--kubeconfig", kc, "-n", NS, "--helm",
                str(bins.helm), "--metrics-port", "0", "--member-resync", "5"]
        for m in mirror_flags(repo_url):
            args += ["--chart-mirror", m]
        log = (Path(d) / "operator.log").open("wb")
        op = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        try:
            apply = [str(bins.kubectl), "--kubeconfig", kc, "apply", "-n", NS, "-f", "-"]
            subprocess.run(apply, input=yaml.safe_dump(_blueprint("1.0.0")), text=True, check=True,
                           capture_output=True)
            _converge(fleet, bins.kubectl, "1.0.0", n, timeout=120 + 20 * n)
            cpu0, _ = _proc_stats(op.pid)
            subprocess.run(apply, input=yaml.safe_dump(_blueprint("1.1.0")), text=True, check=True,
                           capture_output=True)
            peak = 0.0
            start = time.monotonic()
            while True:
                applied = _applied(fleet, bins.kubectl)
                peak = max(peak, _proc_stats(op.pid)[1])
                if len(applied) == n and set(applied.values()) == {"1.1.0"}:
                    break
                if time.monotonic() - start > 120 + 20 * n:
                    raise RuntimeError("1.1.0 did not converge")
                time.sleep(1)
            seconds = time.monotonic() - start
            cpu1, _ = _proc_stats(op.pid)
            time.sleep(6)  # the rollout's last status writes settle
            marks = {m.name: m.audit.mark() for m in fleet.members}
            quiet = float(os.environ.get("BLUEPRINTD_BENCH_QUIET", "30"))
            quiet_cpu0, quiet_t0 = _cpu_with_children(op.pid), time.monotonic()
            time.sleep(quiet)  # several member resyncs of every cluster
            quiet_cores = (_cpu_with_children(op.pid) - quiet_cpu0) / (time.monotonic() - quiet_t0)
            noop_writes = sum(len(m.audit.writes(marks[m.name], user=OPERATOR_USER)) for m in fleet.members)
        finally:
            op.terminate()
            op.wait(timeout=30)
            sim.stop()
    name = f"1.0.0 -> 1.1.0 on {n} members"
    return [
        {"name": name, "metric": "time to converge", "value": seconds, "unit": "s", "goal": ""},
        {"name": name, "metric": "operator CPU per cluster", "value": (cpu1 - cpu0) / n, "unit": "s", "goal": ""},
        {"name": name, "metric": "operator peak RSS", "value": peak, "unit": "MiB", "goal": ""},
        {"name": name, "metric": "operator RSS per cluster", "value": peak / n, "unit": "MiB", "goal": ""},
        {"name": f"no-op resync of {n} members", "metric": "member write calls", "value": noop_writes,
         "unit": "calls", "goal": "0"},
        {"name": f"no-op resync of {n} members", "metric": "operator + helm cores per member",
         "value": quiet_cores / n, "unit": "cores", "goal": "<= 0.005"},
    ]


def run() -> list[dict[str, Any]]:
    sizes = [int(s) for s in os.environ.get("BLUEPRINTD_BENCH_OPERATOR_SIZES", "10,50").split(",") if s]
    bins = binaries.ensure()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-op-charts-") as d:
        out = build_chart_repo(chart_sources(), Path(d), bins.helm)
        with ChartRepoServer(out) as server:
            for n in sizes:
                rows += run_size(n, bins, server.url)
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
