"""Benchmark of ``render``: the default GPU platform Blueprint against 10,000 synthetic clusters.

Render runs once per cluster on every reconcile, so its cost bounds how large a fleet one
operator replica can keep converged. The goal is at most 5 ms per cluster.

Clusters are drawn (seeded, so every run renders the same fleet) from a realistic mix: one to
five node pools each, among H100/A100/H200/B200 (MIG), L4/L40S/T4 (time-slicing), sandboxed
H100 pools and CPU pools, with 1-64 nodes per pool and some clusters labelled for
monitoring. Each cluster is rendered through the public ``render(blueprint, facts)`` call,
including the compile cache lookup (content hash) a real reconcile pays.

Run standalone: ``python benchmarks/bench_render.py`` (prints the rows as a table and JSON).
``run()`` returns rows ``{name, metric, value, unit, goal}``.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # standalone run from a checkout
    sys.path.insert(0, str(ROOT))

from blueprintd.api.facts import ClusterFacts, NodePool  # noqa: E402
from blueprintd.api.load import load_blueprints  # noqa: E402
from blueprintd.facts import catalog  # noqa: E402
from blueprintd.render import render  # noqa: E402

CLUSTERS = int(os.environ.get("BLUEPRINTD_BENCH_RENDER_CLUSTERS", "10000"))
GOAL_MS = 5.0
SEED = 20251123

# (catalog key, weight, sandbox)
POOL_KINDS: list[tuple[str, int, bool]] = [
    ("h100-80gb", 6, False),
    ("a100-80gb", 3, False),
    ("h200", 2, False),
    ("b200", 1, False),
    ("l4", 5, False),
    ("l40s", 2, False),
    ("t4", 1, False),
    ("h100-80gb", 1, True),
    ("", 6, False),  # CPU pool
]


def _pool(rng: random.Random, cluster: str, index: int) -> NodePool:
    key, _, sandbox = rng.choices(POOL_KINDS, weights=[w for _, w, _ in POOL_KINDS])[0]
    size = rng.choice([1, 2, 4, 8, 16, 32, 64])
    name = f"{key or 'cpu'}{'-vm' if sandbox else ''}-{index}"
    nodes = [f"{cluster}-{name}-{n}" for n in range(size)]
    product = catalog.by_key(key) if key else None
    if product is None:
        return NodePool(name=name, nodes=nodes)
    return NodePool(
        name=name,
        nodes=nodes,
        gpu_product=product.gfd_product,
        gpu_count=rng.choice([1, 2, 4, 8]),
        gpu_memory_mib=product.memory_mib,
        gpu_family=product.architecture,
        compute_capability=product.compute_capability,
        pci_device_id=f"{product.pci_device_ids[0]}10DE",
        mig_capable=product.mig_capable,
        driver_version="580.95.05",
        sandbox=sandbox,
        workload_config="vm-passthrough" if sandbox else "container",
        labels={"node.kubernetes.io/instance-type": f"{key}.x{rng.randint(1, 8)}"},
    )


def synthetic_fleet(count: int, seed: int = SEED) -> list[ClusterFacts]:
    """``count`` clusters with 1-5 pools of mixed hardware (deterministic for a seed)."""
    rng = random.Random(seed)
    fleet = []
    for i in range(count):
        name = f"cluster-{i:05d}"
        labels = {"env": rng.choice(["prod", "staging", "dev"]), "region": rng.choice(["us", "eu", "ap"])}
        if rng.random() < 0.3:
            labels["blueprintd.io/monitoring"] = "prometheus"
        pools = [_pool(rng, name, p) for p in range(rng.randint(1, 5))]
        fleet.append(ClusterFacts(cluster=name, cluster_labels=labels, kubernetes_version="v1.34.1", pools=pools))
    return fleet


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def run() -> list[dict[str, Any]]:
    (blueprint,) = load_blueprints([ROOT / "blueprints" / "gpu-platform"])
    fleet = synthetic_fleet(CLUSTERS)
    pools = sum(len(c.pools) for c in fleet)

    started = time.perf_counter()
    render(blueprint, fleet[0])  # first call: semantic checks + CEL compile (cached afterwards)
    compile_ms = (time.perf_counter() - started) * 1000

    samples: list[float] = []
    total_started = time.perf_counter()
    for cluster in fleet:
        t0 = time.perf_counter()
        render(blueprint, cluster)
        samples.append((time.perf_counter() - t0) * 1000)
    total_s = time.perf_counter() - total_started

    goal = f"<= {GOAL_MS:g} ms"
    return [
        {"name": "render default blueprint", "metric": "clusters", "value": CLUSTERS, "unit": "clusters", "goal": ""},
        {"name": "render default blueprint", "metric": "node pools", "value": pools, "unit": "pools", "goal": ""},
        {
            "name": "render default blueprint",
            "metric": "per-cluster mean",
            "value": statistics.fmean(samples),
            "unit": "ms",
            "goal": goal,
        },
        {
            "name": "render default blueprint",
            "metric": "per-cluster p95",
            "value": _pct(samples, 0.95),
            "unit": "ms",
            "goal": goal,
        },
        {
            "name": "render default blueprint",
            "metric": "per-cluster max",
            "value": max(samples),
            "unit": "ms",
            "goal": "",
        },
        {
            "name": "render default blueprint",
            "metric": "total",
            "value": total_s,
            "unit": "s",
            "goal": f"<= {GOAL_MS * CLUSTERS / 1000:g} s",
        },
        {
            "name": "render default blueprint",
            "metric": "first render (compile)",
            "value": compile_ms,
            "unit": "ms",
            "goal": "",
        },
    ]


def main() -> None:
    rows = run()
    for r in rows:
        value = f"{r['value']:.3f}" if isinstance(r["value"], float) else str(r["value"])
        print(f"{r['metric']:<24} {value:>12} {r['unit']:<8} {r['goal']}")
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
