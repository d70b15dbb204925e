"""Hardware facts: NVML discovery (``nvml``), the node agent (``agent``, ``annotation``) and the
collectors that turn Nodes and ResourceSlices into per-pool ``ClusterFacts`` (``collect``).
See docs/facts.md."""
