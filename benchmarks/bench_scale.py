"""Scale: the default GPU platform Blueprint rolled out to N api-only members by 3 sharded replicas.

For each fleet size (``BLUEPRINTD_BENCH_SCALE_SIZES``, default ``10,50``): a local fleet of
api-only members (one L4 node each; the stand-ins play workload status and Gatekeeper's
controller), ``BLUEPRINTD_BENCH_SCALE_REPLICAS`` (default 3) real ``blueprintd operator
--shards`` processes with the chart's defaults (15 s Lease, 10 s member resync), and the
project's own ``blueprints/gpu-platform`` (six Helm add-ons, Gatekeeper policies, queues,
network policies) from the local chart repository. 1.0.0 is installed first; then 1.1.0, which
changes one Helm value (KAI's ``global.gpuSharing``) and one manifest, is timed until every
member reports it.

Measured, from /proc and the members' own API servers:

- seconds from the 1.1.0 apply until every member runs it (goal < 120 s at 50 members);
- the replicas' summed RSS once converged, and its slope between the two sizes (goal
  <= 1 MiB per member; total <= 450 MiB for 3 replicas at 50 members);
- on the converged fleet over a quiet window (``BLUEPRINTD_BENCH_QUIET``, default 60 s): the
  operator's writes to members (audit logs; goal 0), its cores per member (replicas and their
  helm children), its watch streams per member (``apiserver_longrunning_requests``, WATCH,
  minus what the stand-ins hold before the operator starts) and its API requests per minute
  per member (``apiserver_request_total``, minus the same window with every replica stopped).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from blueprintd.devfleet import binaries
from blueprintd.devfleet.chaos import sharded_operator_argv
from blueprintd.devfleet.chartrepo import ChartRepoServer, build_chart_repo
from blueprintd.devfleet.chartserve import REPO_ROOT, chart_sources
from blueprintd.devfleet.demo import OPERATOR_USER, mirror_flags, register_members
from blueprintd.devfleet.fleet import ClusterHandle, Fleet
from blueprintd.devfleet.nodes import uniform_fleet
from blueprintd.devfleet.standins import StandIns
from blueprintd.devfleet.testing import running_fleet

NS = "blueprintd-system"
LEASE_S = 15
RESYNC_S = 10.0


def blueprint(version: str) -> dict[str, Any]:
    """The default blueprint at ``version``; 1.1.0 and later change one Helm value and one object."""
    doc: dict[str, Any] = yaml.safe_load((REPO_ROOT / "blueprints" / "gpu-platform" / "blueprint.yaml").read_text())
    doc["metadata"]["namespace"] = NS
    doc["spec"]["version"] = version
    if version != "1.0.0":
        for addon in doc["spec"]["addons"]:
            if addon["name"] == "kai-scheduler":
                addon["helm"]["values"]["global"]["gpuSharing"] = True
            for obj in addon.get("manifests") or []:
                if obj["kind"] == "NetworkPolicy":
                    obj.setdefault("metadata", {}).setdefault("annotations", {})["bench/version"] = version
                    break
    return doc


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_with_children(pid: int) -> float:
    """CPU seconds of a process and of the children it has waited for (helm)."""
    return sum(int(f) for f in _stat(pid)[11:15]) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def applied(fleet: Fleet, kubectl: Path) -> dict[str, str]:
    out = subprocess.run(
        [str(kubectl), "--kubeconfig", str(fleet.management.kubeconfig), "get", "memberclusters", "-n", NS,
         "-o", "yaml"],
        capture_output=True, text=True,
    ).stdout  # fmt: skip
    got: dict[str, str] = {}
    for mc in (yaml.safe_load(out) or {}).get("items", []):
        for a in (mc.get("status") or {}).get("appliedRevisions") or []:
            if a.get("blueprint") == "gpu-platform":
                got[mc["metadata"]["name"]] = a["version"]
    return got


def member_metrics(member: ClusterHandle) -> tuple[float, float]:
    """(API requests served so far, WATCH requests open now) from the member API server's
    /metrics (about 2 MB of text: only the two families are read, line by line)."""
    client = member.api_client()
    try:
        resp = client.call_api("GET", f"{client.configuration.host}/metrics", header_params={"Accept": "text/plain"})
        resp.read()
        text = resp.data.decode()
    finally:
        client.close()
    requests = watches = 0.0
    for line in text.splitlines():
        if line.startswith("apiserver_request_total{"):
            requests += float(line.rsplit(" ", 1)[1])
        elif line.startswith("apiserver_longrunning_requests{") and 'verb="WATCH"' in line:
            watches += float(line.rsplit(" ", 1)[1])
    return requests, watches


def fleet_metrics(fleet: Fleet) -> tuple[float, float]:
    totals = [member_metrics(m) for m in fleet.members]
    return sum(t[0] for t in totals), sum(t[1] for t in totals)


def install_crds(fleet: Fleet, bins: binaries.Binaries) -> list[str]:
    """blueprintd's CRDs on the management cluster, Established; the kubectl command line to it."""
    kubectl = [str(bins.kubectl), "--kubeconfig", str(fleet.management.kubeconfig)]
    subprocess.run([*kubectl, "apply", "--server-side", "-f", str(REPO_ROOT / "crds")], check=True,
                   capture_output=True)  # fmt: skip
    subprocess.run([*kubectl, "wait", "--for=condition=Established", "crd", "--all"], check=True,
                   capture_output=True)  # fmt: skip
    return kubectl


def operator_argv(fleet: Fleet, bins: binaries.Binaries, replica: str, repo_url: str) -> list[str]:
    """One ``--shards`` replica with the chart's defaults, its charts from the local repository."""
    argv = sharded_operator_argv(fleet, bins.helm, NS, replica, LEASE_S, RESYNC_S)
    for m in mirror_flags(repo_url):
        argv += ["--chart-mirror", m]
    return argv


def run_size(n: int, replicas: int, bins: binaries.Binaries, repo_url: str, quiet: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix=f"bench-scale-{n}-") as d, \
            running_fleet(Path(d) / "f", uniform_fleet(n, ["l4"], 1, control_plane="api-only"), bins) as fleet:
        sim = StandIns(fleet)
        sim.start()
        kubectl = install_crds(fleet, bins)
        register_members(fleet, bins, NS)
        time.sleep(5)  # the stand-ins' watches are open
        _, standin_watches = fleet_metrics(fleet)
        procs: list[subprocess.Popen[bytes]] = []
        logs = []
        for i in range(1, replicas + 1):
            log = (Path(d) / f"operator-r{i}.log").open("wb")
            logs.append(log)
            procs.append(subprocess.Popen(operator_argv(fleet, bins, f"r{i}", repo_url), stdout=log,
                                          stderr=subprocess.STDOUT))  # fmt: skip
        apply = [*kubectl, "apply", "-n", NS, "-f", "-"]
        try:
            subprocess.run(apply, input=yaml.safe_dump(blueprint("1.0.0")), text=True, check=True,
                           capture_output=True)  # fmt: skip
            install_s = wait_converged(fleet, bins.kubectl, "1.0.0", n, procs, timeout=600 + 30 * n)[0]
            time.sleep(RESYNC_S)
            subprocess.run(apply, input=yaml.safe_dump(blueprint("1.1.0")), text=True, check=True,
                           capture_output=True)  # fmt: skip
            upgrade_s, peak = wait_converged(fleet, bins.kubectl, "1.1.0", n, procs, timeout=600 + 20 * n)
            time.sleep(2 * RESYNC_S)  # the rollout's last status writes and full resyncs settle
            marks = {m.name: m.audit.mark() for m in fleet.members}
            cpu0 = sum(cpu_with_children(p.pid) for p in procs)
            req0, _ = fleet_metrics(fleet)
            t0 = time.monotonic()
            time.sleep(quiet)
            elapsed = time.monotonic() - t0
            cores = (sum(cpu_with_children(p.pid) for p in procs) - cpu0) / elapsed
            req1, watches = fleet_metrics(fleet)
            rss = sum(rss_mib(p.pid) for p in procs)
            writes = sum(len(m.audit.writes(marks[m.name], user=OPERATOR_USER)) for m in fleet.members)
            # The same window with every replica stopped: what the stand-ins and the API servers
            # themselves ask of the members (our own /metrics reads included).
            for p in procs:
                p.send_signal(signal.SIGSTOP)
            t1 = time.monotonic()
            time.sleep(quiet)
            req2, _ = fleet_metrics(fleet)
            baseline_per_s = (req2 - req1) / (time.monotonic() - t1)
            for p in procs:
                p.send_signal(signal.SIGCONT)
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
            for log in logs:
                log.close()
            sim.stop()
    operator_req_per_s = max((req1 - req0) / elapsed - baseline_per_s, 0.0)
    return {
        "install": install_s,
        "upgrade": upgrade_s,
        "peak_rss": peak,
        "rss": rss,
        "writes": float(writes),
        "cores_per_member": cores / n,
        "watches_per_member": (watches - standin_watches) / n,
        "requests_per_min_per_member": operator_req_per_s * 60 / n,
    }


def wait_converged(
    fleet: Fleet, kubectl: Path, version: str, n: int, procs: list[subprocess.Popen[bytes]], timeout: float
) -> tuple[float, float]:
    """Seconds until every member runs ``version``, and the peak summed RSS meanwhile."""
    start = time.monotonic()
    peak = 0.0
    while time.monotonic() - start < timeout:
        peak = max(peak, sum(rss_mib(p.pid) for p in procs))
        got = applied(fleet, kubectl)
        if len(got) == n and set(got.values()) == {version}:
            return time.monotonic() - start, peak
        dead = [p.pid for p in procs if p.poll() is not None]
        if dead:
            raise RuntimeError(f"operator replica(s) {dead} exited")
        time.sleep(2)
    raise RuntimeError(f"{version} did not converge on {n} members within {timeout:.0f} s: {applied(fleet, kubectl)}")


def run() -> list[dict[str, Any]]:
    sizes = [int(s) for s in os.environ.get("BLUEPRINTD_BENCH_SCALE_SIZES", "10,50").split(",") if s]
    replicas = int(os.environ.get("BLUEPRINTD_BENCH_SCALE_REPLICAS", "3"))
    quiet = float(os.environ.get("BLUEPRINTD_BENCH_QUIET", "60"))
    bins = binaries.ensure()
    results: dict[int, dict[str, float]] = {}
    failed: dict[int, str] = {}
    with tempfile.TemporaryDirectory(prefix="bench-scale-charts-") as d:
        out = build_chart_repo(chart_sources(), Path(d), bins.helm)
        with ChartRepoServer(out) as server:
            for n in sizes:
                try:
                    results[n] = run_size(n, replicas, bins, server.url, quiet)
                    print(f"   {n} members: {results[n]}", file=sys.stderr, flush=True)  # kept if a later size dies
                except Exception as exc:  # keep the sizes that ran; say why this one did not
                    failed[n] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    rows: list[dict[str, Any]] = [
        {"name": f"gpu-platform on {n} api-only members, {replicas} replicas", "metric": "run failed",
         "value": why, "unit": "", "goal": ""}
        for n, why in failed.items()
    ]  # fmt: skip
    for n, r in results.items():
        name = f"gpu-platform on {n} api-only members, {replicas} replicas"
        big = n == max(sizes)
        rows += [
            {"name": name, "metric": "1.0.0 installed", "value": r["install"], "unit": "s", "goal": ""},
            {"name": name, "metric": "1.0.0 -> 1.1.0 converged", "value": r["upgrade"], "unit": "s",
             "goal": "< 120" if big else ""},
            {"name": name, "metric": "replicas' RSS, summed, converged", "value": r["rss"], "unit": "MiB",
             "goal": "<= 450" if big and replicas == 3 else ""},
            {"name": name, "metric": "replicas' peak RSS during 1.1.0, summed", "value": r["peak_rss"],
             "unit": "MiB", "goal": ""},
            {"name": name, "metric": "quiet: member write calls", "value": r["writes"], "unit": "calls",
             "goal": "0"},
            {"name": name, "metric": "quiet: operator + helm cores per member", "value": r["cores_per_member"],
             "unit": "cores", "goal": "<= 0.005"},
            {"name": name, "metric": "quiet: watch streams per member", "value": r["watches_per_member"],
             "unit": "streams", "goal": ""},
            {"name": name, "metric": "quiet: API requests per minute per member",
             "value": r["requests_per_min_per_member"], "unit": "req/min", "goal": ""},
        ]  # fmt: skip
    if len(results) >= 2:
        lo, hi = min(results), max(results)
        slope = (results[hi]["rss"] - results[lo]["rss"]) / (hi - lo)
        rows.append({"name": f"replicas' RSS, {lo} -> {hi} members", "metric": "marginal memory per member",
                     "value": slope, "unit": "MiB", "goal": "<= 1"})  # fmt: skip
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
