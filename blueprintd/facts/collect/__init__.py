"""Build per-pool ``ClusterFacts`` from what a cluster's API server already holds.

Pure functions (no I/O) over API dicts: Node objects (GPU Feature Discovery labels, the node
agent's ``blueprintd.io/gpu-facts`` annotation, capacity) and ``resource.k8s.io`` ResourceSlices.
``live.collect_cluster_facts`` is the thin adapter that lists those from a cluster.
"""

from blueprintd.facts.collect.labels import agent_observation, gfd_observation, node_observation
from blueprintd.facts.collect.model import FACT_FIELDS, PRECEDENCE, Observation
from blueprintd.facts.collect.pools import (
    CPU_POOL,
    NodeFacts,
    build_cluster_facts,
    build_pools,
    merge_node,
    node_facts,
    pool_conflicts,
    pool_names,
)
from blueprintd.facts.collect.slices import DEFAULT_DRA_DRIVER, latest_generation, slice_observations

__all__ = [
    "CPU_POOL",
    "DEFAULT_DRA_DRIVER",
    "FACT_FIELDS",
    "PRECEDENCE",
    "NodeFacts",
    "Observation",
    "agent_observation",
    "build_cluster_facts",
    "build_pools",
    "gfd_observation",
    "latest_generation",
    "merge_node",
    "node_facts",
    "node_observation",
    "pool_conflicts",
    "pool_names",
    "slice_observations",
]
