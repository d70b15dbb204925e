"""Merge every source's observations per node, then group nodes into pools.

Precedence (best first, see ``model.PRECEDENCE``): ResourceSlice > node agent > GFD > plain
Node. For each fact of each node the best source that knows it wins; every other source
that knows a *different* value is recorded as a ``FactConflict`` (stale GFD labels after a
driver upgrade, a MIG change GFD has not caught up with, a GPU that fell off the bus). Facts
no source reports but that follow from a known product (memory, family, compute
capability, MIG capability) are filled from the catalog and credited to the source of the
product.

Pools group nodes by (GPU product, MIG enabled + MIG config, workload config). Names are
stable and readable: the catalog key (``h100-80gb``), ``-mig`` when MIG is on, ``-vfio`` /
``-vgpu`` for sandboxed nodes, ``cpu`` for nodes without GPUs. Only when two pools would get
the same name (two MIG configs of one product) is the MIG config added
(``h100-80gb-mig-all-1g-10gb``). Within a pool, a fact that differs between nodes (driver
version mid-upgrade) takes its most common value (on a tie the smallest number, else the
first in text order). GPU counts do not split pools: a pool reports the common count plus
``gpuCountMin`` / ``gpuCountMax`` / ``gpuTotal``, and each node with another count is a
``FactConflict`` with ``pool`` set.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic.alias_generators import to_camel

from blueprintd.api.facts import ClusterFacts, FactConflict, FactSource, NodePool, WorkloadConfig
from blueprintd.facts import catalog
from blueprintd.facts.collect.labels import (
    agent_observation,
    gfd_observation,
    node_labels,
    node_name,
    node_observation,
)
from blueprintd.facts.collect.model import FACT_FIELDS, PRECEDENCE, Observation
from blueprintd.facts.collect.normalize import product_id, slug, version_key
from blueprintd.facts.collect.slices import DEFAULT_DRA_DRIVER, slice_observations

CPU_POOL = "cpu"
_WORKLOAD_SUFFIX = {WorkloadConfig.VM_PASSTHROUGH.value: "-vfio", WorkloadConfig.VM_VGPU.value: "-vgpu"}
_RANK = {source: i for i, source in enumerate(PRECEDENCE)}


@dataclass
class NodeFacts:
    """One node's merged facts: field -> (value, source), plus the disagreements seen."""

    name: str
    labels: dict[str, str] = field(default_factory=dict)
    values: dict[str, tuple[Any, FactSource]] = field(default_factory=dict)
    conflicts: list[FactConflict] = field(default_factory=list)

    def get(self, name: str, default: Any = None) -> Any:
        return self.values[name][0] if name in self.values else default

    @property
    def has_gpu(self) -> bool:
        return bool(self.get("gpu_product")) or (self.get("gpu_count") or 0) > 0


def _compare_key(name: str, value: Any) -> Any:
    """Spelling-insensitive comparison (see ``normalize``)."""
    if name in ("driver_version", "cuda_driver_version", "compute_capability"):
        return version_key(str(value))
    if name == "gpu_product":
        known = catalog.lookup(str(value))
        return known.key if known else str(value).lower()
    if name in ("pci_device_id", "gpu_family"):
        return str(value).lower()
    return value


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def merge_node(name: str, labels: Mapping[str, str], observations: Iterable[Observation]) -> NodeFacts:
    """Merge one node's observations by precedence, recording conflicts."""
    ranked = sorted(observations, key=lambda o: _RANK[o.source])
    facts = NodeFacts(name=name, labels=dict(labels))
    for fact in FACT_FIELDS:
        candidates = [(o.facts[fact], o.source) for o in ranked if fact in o.facts]
        if not candidates:
            continue
        chosen, source = candidates[0]
        facts.values[fact] = (chosen, source)
        for other, other_source in candidates[1:]:
            if _compare_key(fact, other) != _compare_key(fact, chosen):
                facts.conflicts.append(
                    FactConflict(
                        node=name,
                        field=to_camel(fact),
                        chosen=_text(chosen),
                        chosen_source=source,
                        other=_text(other),
                        other_source=other_source,
                    )
                )
    _fill_from_catalog(facts)
    return facts


def _fill_from_catalog(facts: NodeFacts) -> None:
    product = facts.values.get("gpu_product")
    known = catalog.lookup(str(product[0]) if product else "", str(facts.get("pci_device_id") or ""))
    if known is None:
        return
    source = product[1] if product else facts.values["pci_device_id"][1]
    derived = {
        "gpu_memory_mib": known.memory_mib,
        "gpu_family": known.architecture,
        "compute_capability": known.compute_capability,
        "mig_capable": known.mig_capable,
    }
    if product is None:
        derived["gpu_product"] = known.gfd_product
    for fact, value in derived.items():
        facts.values.setdefault(fact, (value, source))


def node_facts(
    nodes: Iterable[Mapping[str, Any]],
    resource_slices: Iterable[Mapping[str, Any]] = (),
    *,
    dra_driver: str = DEFAULT_DRA_DRIVER,
) -> list[NodeFacts]:
    """Every node's merged facts, in node-name order."""
    slices_by_node = slice_observations(resource_slices, dra_driver)
    merged = []
    for node in nodes:
        name = node_name(node)
        observations = [node_observation(node)]
        for obs in (gfd_observation(node), agent_observation(node), slices_by_node.get(name)):
            if obs is not None:
                observations.append(obs)
        merged.append(merge_node(name, node_labels(node), observations))
    return sorted(merged, key=lambda n: n.name)


PoolKey = tuple[str, bool, str, str]  # (product id, MIG on, MIG config, workload config)


def pool_key(facts: NodeFacts) -> PoolKey:
    if not facts.has_gpu:
        return ("", False, "", "")
    product = str(facts.get("gpu_product") or "")
    pid = product_id(product, str(facts.get("pci_device_id") or "")) if product else "gpu"
    mig = bool(facts.get("mig_enabled"))
    config = str(facts.get("mig_config") or "") if mig else ""
    workload = str(facts.get("workload_config") or WorkloadConfig.CONTAINER.value)
    return (pid, mig, config, workload)


def pool_names(keys: Iterable[PoolKey]) -> dict[PoolKey, str]:
    """Stable, readable, unique names (see the module docstring)."""

    def name(key: PoolKey, with_config: bool) -> str:
        pid, mig, config, workload = key
        if not pid:
            return CPU_POOL
        mig_part = ""
        if mig:
            mig_part = "-mig" + (f"-{slug(config) or 'custom'}" if with_config else "")
        return f"{pid}{mig_part}{_WORKLOAD_SUFFIX.get(workload, '')}"

    ordered = sorted(set(keys))
    first: dict[str, list[PoolKey]] = defaultdict(list)
    for key in ordered:
        first[name(key, False)].append(key)
    names: dict[PoolKey, str] = {}
    taken: set[str] = set()
    for base, group in sorted(first.items()):
        for key in group:
            candidate = base if len(group) == 1 else name(key, True)
            unique, n = candidate, 2
            while unique in taken:
                unique, n = f"{candidate}-{n}", n + 1
            names[key] = unique
            taken.add(unique)
    return names


def _tie_order(key: Any) -> tuple[int, Any, str]:
    """Equally common values: the smallest number (so a GPU count tie reports what every node
    has), otherwise the first in text order (deterministic)."""
    if isinstance(key, int | float):
        return (0, key, "")
    return (1, 0, str(key))


def _aggregate(members: Sequence[NodeFacts]) -> tuple[dict[str, Any], dict[str, FactSource]]:
    values: dict[str, Any] = {}
    sources: dict[str, FactSource] = {}
    for fact in FACT_FIELDS:
        seen = [m.values[fact] for m in members if fact in m.values]
        if not seen:
            continue
        counts = Counter(_compare_key(fact, v) for v, _ in seen).most_common()
        top = counts[0][1]
        winner_key = min((k for k, n in counts if n == top), key=_tie_order)
        winners = [(v, s) for v, s in seen if _compare_key(fact, v) == winner_key]
        value = Counter(v for v, _ in winners).most_common(1)[0][0]
        source_counts = Counter(s for _, s in winners).most_common()
        best = source_counts[0][1]
        values[fact] = value
        sources[to_camel(fact)] = min((s for s, n in source_counts if n == best), key=lambda s: _RANK[s])
    return values, sources


def _common_labels(members: Sequence[NodeFacts]) -> dict[str, str]:
    common = dict(members[0].labels)
    for m in members[1:]:
        common = {k: v for k, v in common.items() if m.labels.get(k) == v}
    return dict(sorted(common.items()))


def build_pools(facts: Iterable[NodeFacts]) -> list[NodePool]:
    """Group merged node facts into named pools (GPU pools by name, then ``cpu``)."""
    groups: dict[PoolKey, list[NodeFacts]] = defaultdict(list)
    for nf in facts:
        groups[pool_key(nf)].append(nf)
    names = pool_names(groups)
    pools = []
    for key, members in groups.items():
        members.sort(key=lambda m: m.name)
        values, sources = _aggregate(members)
        counts = [int(m.get("gpu_count")) for m in members if "gpu_count" in m.values]
        if not key[0]:  # CPU pool: GPU facts of nodes without GPUs are noise
            values = {k: v for k, v in values.items() if k in ("workload_config", "sandbox")}
            sources = {k: v for k, v in sources.items() if k in ("workloadConfig", "sandbox")}
            counts = []
        pool = NodePool(
            name=names[key],
            nodes=[m.name for m in members],
            labels=_common_labels(members),
            sources=sources,
            gpu_count_min=min(counts, default=0),
            gpu_count_max=max(counts, default=0),
            gpu_total=sum(counts),
            **values,
        )
        pools.append(pool)
    return sorted(pools, key=lambda p: (p.name == CPU_POOL, p.name))


def pool_conflicts(pools: Iterable[NodePool], facts: Iterable[NodeFacts]) -> list[FactConflict]:
    """Nodes whose GPU count differs from their pool's ``gpuCount``, one conflict each.

    Pools are not split by GPU count (a GPU falling off the bus must not move its node to
    another pool and configuration), so the pool reports one count and the range, and every
    node that has another count is named here rather than silently summarized.
    """
    by_name = {nf.name: nf for nf in facts}
    out = []
    for pool in pools:
        if pool.gpu_count_min == pool.gpu_count_max or "gpuCount" not in pool.sources:
            continue
        for node in pool.nodes:
            nf = by_name[node]
            if "gpu_count" not in nf.values or nf.get("gpu_count") == pool.gpu_count:
                continue
            out.append(
                FactConflict(
                    node=node,
                    pool=pool.name,
                    field="gpuCount",
                    chosen=str(pool.gpu_count),
                    chosen_source=pool.sources["gpuCount"],
                    other=str(nf.get("gpu_count")),
                    other_source=nf.values["gpu_count"][1],
                )
            )
    return out


def build_cluster_facts(
    nodes: Iterable[Mapping[str, Any]],
    resource_slices: Iterable[Mapping[str, Any]] = (),
    *,
    cluster: str = "",
    cluster_labels: Mapping[str, str] | None = None,
    kubernetes_version: str = "",
    dra_driver: str = DEFAULT_DRA_DRIVER,
    collected_at: datetime | None = None,
) -> ClusterFacts:
    """A cluster's ``ClusterFacts`` from its Node objects and ResourceSlices (API dicts).

    Pure: the same input always gives the same output (pass ``collected_at`` to stamp it).
    ``dra_driver`` selects whose ResourceSlices count (NVIDIA's and the bundled driver both
    default to ``gpu.nvidia.com``).
    """
    merged = node_facts(nodes, resource_slices, dra_driver=dra_driver)
    pools = build_pools(merged)
    conflicts = sorted(
        [*(c for nf in merged for c in nf.conflicts), *pool_conflicts(pools, merged)],
        key=lambda c: (c.node, c.field, _RANK[c.other_source], c.pool),
    )
    return ClusterFacts(
        cluster=cluster,
        cluster_labels=dict(cluster_labels or {}),
        kubernetes_version=kubernetes_version,
        pools=pools,
        conflicts=conflicts,
        collected_at=collected_at,
    )
