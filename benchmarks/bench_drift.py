"""Drift benchmarks: event-driven detection vs. a polling baseline on N real member clusters.

Setup: a local fleet of N members (real kube-apiserver + etcd), each with the same five
objects applied by blueprintd (three ConfigMaps, a Deployment, a NetworkPolicy). Changes are
injected at random times into random clusters — a ConfigMap value patched by another identity
("intruder"), one change in flight per object — and the time until the change is *detected*
and until the object is *restored* is measured from the moment before the patch is sent.

* **watch** (what the operator runs): ``DriftMonitor`` in this process, one list+watch stream
  per (kind, namespace) and cluster; detection is the monitor's "detected" signal, restoration
  its "resolved" signal (the watch saw the object back at the Blueprint's values).
* **poll** (the baseline): every ``POLL`` seconds per cluster, ``kubectl diff --server-side``
  over the same objects; exit code 1 is a detection, then ``kubectl apply --server-side
  --force-conflicts`` restores. kubectl is the binary from ``blueprintd.devfleet.binaries``.

API calls per minute, counted per approach: the member audit logs record writes only (the
test-bed audit policy logs create/update/patch/delete, not reads), so writes come from the
audit log (per identity) and every request is also counted client-side — the monitor counts
each list, watch (re)connect, discovery lookup and write it makes (``ApiCounter``); for kubectl
each HTTP request line its ``-v=6`` log prints. Steady state = no changes for ``STEADY``
seconds; "with changes" = the injection window.

Environment: ``BLUEPRINTD_BENCH_DRIFT_MEMBERS`` (default 10), ``..._CHANGES`` (default 40),
``..._POLL`` (seconds, default 10), ``..._STEADY`` (seconds, default 30: the length of the quiet
window and of the window the changes are spread over).

The polling baseline's "writes" are ``kubectl diff``'s server-side dry-run patches: the audit
log records them (verb patch, ``dryRun``), and they cost the API server an admission and
merge per object although nothing is stored.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from blueprintd.cluster.kubeconfig import api_client, parse_kubeconfig
from blueprintd.cluster.objects import ObjectClient
from blueprintd.cluster.session import MemberSession
from blueprintd.devfleet import binaries
from blueprintd.devfleet.fleet import Fleet
from blueprintd.devfleet.nodes import uniform_fleet
from blueprintd.devfleet.testing import running_fleet
from blueprintd.drift.monitor import DriftMonitor, DriftSignal
from blueprintd.plan.planner import desired_objects
from blueprintd.render.desired import DesiredState

NS = "bench-drift"
OPERATOR = "blueprintd-operator"
INTRUDER = "intruder"
CONFIGMAPS = 3
WATCH_TIMEOUT = 240.0  # MemberWatch default: the server ends each watch after this long
RESYNC = 300.0  # DriftMonitor default full resync
_REQUEST = re.compile(r'\b(GET|POST|PUT|PATCH|DELETE) https?://|verb="(GET|POST|PUT|PATCH|DELETE)"')


def _objects() -> list[dict[str, Any]]:
    objs: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"cm-{i}", "namespace": NS},
         "data": {"value": "blueprint", "index": str(i)}}
        for i in range(CONFIGMAPS)
    ]
    objs.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                 "metadata": {"name": "deny", "namespace": NS},
                 "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}})
    objs.append({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": NS},
                 "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                          "template": {"metadata": {"labels": {"app": "web"}},
                                       "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}}}})
    return objs


def _desired(cluster: str) -> DesiredState:
    return DesiredState.model_validate({
        "blueprint": "bench", "version": "1.0.0", "revision": "sha256:bench", "cluster": cluster,
        "steps": [{"addon": "settings", "namespace": NS, "manifests": _objects(), "drift": {"mode": "remediate"}}],
    })


def _pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


class _Loop:
    """An asyncio loop in a thread: the monitor runs there as it does in the operator."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, coro: Any, timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


class _Injector:
    """Random changes, one in flight per object; records when each was sent and seen."""

    def __init__(self, fleet: Fleet) -> None:
        from kubernetes import config

        self.clients = {
            m.name: ObjectClient(
                config.new_client_from_config(
                    config_file=str(fleet.mint_kubeconfig(m.name, INTRUDER, ["system:masters"]))
                ),
                field_manager="intruder",
            )
            for m in fleet.members
        }
        self.lock = threading.Lock()
        self.pending: dict[tuple[str, str], float] = {}  # (cluster, configmap) -> t0
        self.detected: dict[tuple[str, str], float] = {}
        self.restored: dict[tuple[str, str], float] = {}
        self.done: list[tuple[float, float]] = []  # (detect latency, restore latency)
        self.sent = 0

    def inject(self, count: int, window: float) -> None:
        """``count`` changes at uniformly random moments of a ``window``-second window."""
        names = sorted(self.clients)
        start = time.monotonic()
        for i, at in enumerate(sorted(random.uniform(0, window) for _ in range(count))):
            time.sleep(max(0.0, start + at - time.monotonic()))
            with self.lock:
                idle = [(c, f"cm-{k}") for c in names for k in range(CONFIGMAPS) if (c, f"cm-{k}") not in self.pending]
                if not idle:
                    continue
                cluster, cm = random.choice(idle)
                t0 = time.monotonic()
                self.pending[(cluster, cm)] = t0
            body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": cm, "namespace": NS},
                    "data": {"value": f"changed-{i}"}}
            self.clients[cluster].apply(body, force=True)
            self.sent += 1

    def seen(self, cluster: str, cm: str, at: float, started_after: float | None = None) -> None:
        with self.lock:
            t0 = self.pending.get((cluster, cm))
            if t0 is None or (started_after is not None and started_after < t0):
                return
            self.detected.setdefault((cluster, cm), at)

    def pending_before(self, cluster: str, at: float) -> set[str]:
        with self.lock:
            return {cm for (c, cm), t0 in self.pending.items() if c == cluster and t0 < at}

    def fixed(self, cluster: str, cm: str, at: float) -> None:
        with self.lock:
            key = (cluster, cm)
            t0 = self.pending.get(key)
            if t0 is None or key not in self.detected:
                return
            self.done.append((self.detected.pop(key) - t0, at - t0))
            del self.pending[key]

    def wait_idle(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if not self.pending:
                    return
            time.sleep(0.1)


def _writes(fleet: Fleet, marks: dict[str, int], user: str) -> int:
    return sum(len(m.audit.writes(marks[m.name], user=user)) for m in fleet.members)


def _watch_phase(fleet: Fleet, bins: binaries.Binaries, workdir: Path, changes: int, steady: float
                 ) -> list[dict[str, Any]]:
    inj = _Injector(fleet)

    def on_signal(sig: DriftSignal) -> None:
        m = re.match(r"object:ConfigMap [^/]+/(cm-\d+)$", sig.target)
        if m is None:
            return
        if sig.event == "detected":
            inj.seen(sig.cluster, m.group(1), sig.at)
        elif sig.event == "resolved":
            inj.fixed(sig.cluster, m.group(1), sig.at)

    loop = _Loop()
    monitor = DriftMonitor(None, OPERATOR, resync_seconds=300.0, listeners=[on_signal])
    sessions = {}
    for m in fleet.members:
        cfg = parse_kubeconfig(fleet.mint_kubeconfig(m.name, OPERATOR, ["system:masters"]).read_text())
        sessions[m.name] = MemberSession.open(m.name, cfg, bins.helm, workdir)
    try:
        for name, session in sessions.items():
            loop.call(monitor.track(name, session, [_desired(name)], {"metadata": {"name": name}}))

        def synced() -> bool:
            cms = [monitor.cluster(n) for n in sessions]
            return all(c is not None and c.watch.specs and c.watch.specs <= c.synced for c in cms)

        _wait(synced, 120, "the monitors to list every stream")

        def calls() -> dict[str, int]:
            out: dict[str, int] = {}
            for n in sessions:
                c = monitor.cluster(n)
                for verb, v in (c.counter.snapshot() if c else {}).items():
                    out[verb] = out.get(verb, 0) + v
            return out

        streams = sum(len(c.watch.specs) for n in sessions if (c := monitor.cluster(n)) is not None)
        before, marks, t = calls(), {m.name: m.audit.mark() for m in fleet.members}, time.monotonic()
        time.sleep(steady)
        steady_calls = sum(calls().values()) - sum(before.values())
        steady_min = (time.monotonic() - t) / 60
        steady_writes = _writes(fleet, marks, OPERATOR)

        before, marks, t = calls(), {m.name: m.audit.mark() for m in fleet.members}, time.monotonic()
        inj.inject(changes, steady)
        inj.wait_idle(60)
        active_min = (time.monotonic() - t) / 60
        active_calls = sum(calls().values()) - sum(before.values())
        active_writes = _writes(fleet, marks, OPERATOR)
    finally:
        loop.call(monitor.close())
        loop.close()
        for s in sessions.values():
            s.close()
    detect = [d for d, _ in inj.done]
    restore = [r for _, r in inj.done]
    rows = _rows("watch", len(fleet.members), detect, restore, inj.sent, steady_calls / steady_min,
                 steady_writes / steady_min, active_calls / active_min, active_writes / active_min)
    # Over hours, each stream also reconnects when the server ends its watch (~WATCH_TIMEOUT)
    # and relists at every full resync: computed, since a short window rarely contains one.
    per_stream = 60 / WATCH_TIMEOUT + 60 / RESYNC
    metric = (f"API calls/min, steady over hours (computed: {streams} streams x "
              f"(1/{WATCH_TIMEOUT:.0f}s + 1/{RESYNC:.0f}s))")
    rows.append({"name": rows[0]["name"], "metric": metric, "value": streams * per_stream, "unit": "calls/min",
                 "goal": ""})
    return rows


def _kubectl_calls(stderr: str) -> int:
    return sum(1 for line in stderr.splitlines() if _REQUEST.search(line))


def _poll_phase(fleet: Fleet, bins: binaries.Binaries, workdir: Path, changes: int, steady: float, period: float
                ) -> list[dict[str, Any]]:
    inj = _Injector(fleet)
    manifest = workdir / "objects.yaml"
    manifest.write_text(yaml.safe_dump_all(_objects()))
    kubeconfigs = {m.name: fleet.mint_kubeconfig(m.name, OPERATOR, ["system:masters"]) for m in fleet.members}
    cache = workdir / "kubectl-cache"
    counted = {"calls": 0}
    lock = threading.Lock()
    stop = threading.Event()

    def kubectl(cluster: str, *args: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([str(bins.kubectl), "--kubeconfig", str(kubeconfigs[cluster]), "--cache-dir",
                               str(cache), "-v=6", *args], capture_output=True, text=True)
        with lock:
            counted["calls"] += _kubectl_calls(proc.stderr)
        return proc

    def poller(cluster: str) -> None:
        next_tick = time.monotonic() + random.uniform(0, period)  # clusters are not polled in lock-step
        while not stop.is_set():
            if stop.wait(max(0.0, next_tick - time.monotonic())):
                return
            next_tick += period
            started = time.monotonic()
            diff = kubectl(cluster, "diff", "--server-side", "--force-conflicts", "--field-manager=blueprintd",
                           "-f", str(manifest))
            if diff.returncode != 1:
                continue
            now = time.monotonic()
            changed = set(re.findall(r"ConfigMap\.\S*?\.?(cm-\d+)", diff.stdout)) | set(
                re.findall(r"/(cm-\d+)\b", diff.stdout))
            for cm in changed:
                inj.seen(cluster, cm, now, started_after=started)
            applying = time.monotonic()
            kubectl(cluster, "apply", "--server-side", "--force-conflicts", "--field-manager=blueprintd",
                    "-f", str(manifest))
            now = time.monotonic()
            # A change that landed after the diff started is put back by this apply as well:
            # counted as detected and restored now (slightly in the baseline's favour).
            for cm in changed | inj.pending_before(cluster, applying):
                inj.seen(cluster, cm, now)
                inj.fixed(cluster, cm, now)

    pool = ThreadPoolExecutor(max_workers=len(kubeconfigs))
    for name in kubeconfigs:
        pool.submit(poller, name)
    try:
        time.sleep(period)  # let every poller run once (discovery cache warm)
        with lock:
            before = counted["calls"]
        marks, t = {m.name: m.audit.mark() for m in fleet.members}, time.monotonic()
        time.sleep(steady)
        steady_min = (time.monotonic() - t) / 60
        with lock:
            steady_calls = counted["calls"] - before
        steady_writes = _writes(fleet, marks, OPERATOR)

        with lock:
            before = counted["calls"]
        marks, t = {m.name: m.audit.mark() for m in fleet.members}, time.monotonic()
        inj.inject(changes, steady)
        inj.wait_idle(period * 3 + 30)
        active_min = (time.monotonic() - t) / 60
        with lock:
            active_calls = counted["calls"] - before
        active_writes = _writes(fleet, marks, OPERATOR)
    finally:
        stop.set()
        pool.shutdown(wait=True)
    detect = [d for d, _ in inj.done]
    restore = [r for _, r in inj.done]
    return _rows(f"poll every {period:.0f}s", len(fleet.members), detect, restore, inj.sent,
                 steady_calls / steady_min, steady_writes / steady_min, active_calls / active_min,
                 active_writes / active_min)


def _rows(approach: str, n: int, detect: list[float], restore: list[float], sent: int, steady_calls: float,
          steady_writes: float, active_calls: float, active_writes: float) -> list[dict[str, Any]]:
    name = f"drift, {approach}, {n} members"
    watch = approach == "watch"
    rows: list[dict[str, Any]] = [
        {"name": name, "metric": "detection latency p50", "value": _pct(detect, 0.5), "unit": "s", "goal": ""},
        {"name": name, "metric": "detection latency p95", "value": _pct(detect, 0.95), "unit": "s",
         "goal": "< 1" if watch else ""},
        {"name": name, "metric": "remediation latency p50", "value": _pct(restore, 0.5), "unit": "s", "goal": ""},
        {"name": name, "metric": "remediation latency p95", "value": _pct(restore, 0.95), "unit": "s",
         "goal": "< 3" if watch else ""},
        {"name": name, "metric": "changes detected and restored", "value": f"{len(restore)}/{sent}", "unit": "",
         "goal": "all"},
        {"name": name, "metric": "API calls/min, steady (client-side)", "value": steady_calls, "unit": "calls/min",
         "goal": ""},
        {"name": name, "metric": "write calls/min, steady (audit log)", "value": steady_writes, "unit": "calls/min",
         "goal": "0"},
        {"name": name, "metric": "API calls/min, with changes (client-side)", "value": active_calls,
         "unit": "calls/min", "goal": ""},
        {"name": name, "metric": "write calls/min, with changes (audit log)", "value": active_writes,
         "unit": "calls/min", "goal": ""},
    ]
    if detect:
        rows.append({"name": name, "metric": "detection latency mean", "value": statistics.fmean(detect),
                     "unit": "s", "goal": ""})
    return rows


def _wait(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.2)
    raise RuntimeError(f"timed out waiting for {what}")


def run() -> list[dict[str, Any]]:
    n = int(os.environ.get("BLUEPRINTD_BENCH_DRIFT_MEMBERS", "10"))
    changes = int(os.environ.get("BLUEPRINTD_BENCH_DRIFT_CHANGES", "40"))
    period = float(os.environ.get("BLUEPRINTD_BENCH_DRIFT_POLL", "10"))
    steady = float(os.environ.get("BLUEPRINTD_BENCH_DRIFT_STEADY", "30"))
    bins = binaries.ensure()
    random.seed(7)
    with tempfile.TemporaryDirectory(prefix="bench-drift-") as d, \
            running_fleet(Path(d) / "f", uniform_fleet(n, ["cpu"], 1, control_plane="api-only"), bins) as fleet:
        work = Path(d)
        for m in fleet.members:
            cfg = parse_kubeconfig(fleet.mint_kubeconfig(m.name, OPERATOR, ["system:masters"]).read_text())
            objects = ObjectClient(api_client(cfg))
            objects.ensure_namespace(NS)
            state = _desired(m.name)
            for obj in desired_objects(state, state.steps[0]):  # as the operator applies them: labelled
                objects.apply(obj)
            objects.api_client.close()
        rows = _watch_phase(fleet, bins, work, changes, steady)
        rows += _poll_phase(fleet, bins, work, changes, steady, period)
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
