"""Merging sources by precedence, conflicts, and grouping nodes into named pools."""

from __future__ import annotations

from typing import Any

from blueprintd.api.facts import FactSource, WorkloadConfig
from blueprintd.facts.collect import build_cluster_facts, pool_names
from blueprintd.facts.nvml import FakeNvml


def _pool(facts: Any, name: str) -> Any:
    matches = [p for p in facts.pools if p.name == name]
    assert matches, f"no pool {name}; have {[p.name for p in facts.pools]}"
    return matches[0]


def test_mixed_cluster_from_gfd_labels(k8s: Any) -> None:
    nodes = [
        k8s.gfd_node("h100-a", "h100-80gb", 8),
        k8s.gfd_node("h100-b", "h100-80gb", 8),
        k8s.gfd_node("mig-a", "h100-80gb", 8, mig_single="1g.10gb", mig_config="all-1g.10gb"),
        k8s.gfd_node("l4-a", "l4", 4, sharing="time-slicing", replicas=4),
        k8s.gfd_node("l4-b", "l4", 4, sharing="time-slicing", replicas=4),
        k8s.node("cpu-a", {"node-role.kubernetes.io/worker": ""}),
        k8s.node(
            "vfio-a",
            {"nvidia.com/gpu.workload.config": "vm-passthrough"},
            {"nvidia.com/GH100_H100_SXM5_80GB": "8"},
        ),
    ]
    facts = build_cluster_facts(nodes, cluster="c1", kubernetes_version="v1.37.2")
    assert [p.name for p in facts.pools] == ["h100-80gb", "h100-80gb-mig", "h100-80gb-vfio", "l4", "cpu"]
    h100 = _pool(facts, "h100-80gb")
    assert h100.nodes == ["h100-a", "h100-b"]
    assert (h100.gpu_product, h100.gpu_count, h100.gpu_memory_mib, h100.gpu_family) == (
        "NVIDIA-H100-80GB-HBM3",
        8,
        81559,
        "hopper",
    )
    assert (h100.compute_capability, h100.driver_version, h100.cuda_driver_version) == (
        "9.0",
        "550.54.15",
        "12.4",
    )
    assert h100.mig_capable and not h100.mig_enabled and not h100.sandbox
    assert h100.sources["gpuProduct"] is FactSource.GFD
    mig = _pool(facts, "h100-80gb-mig")
    assert mig.mig_enabled and mig.mig_config == "all-1g.10gb" and mig.gpu_count == 8
    assert mig.gpu_memory_mib == 81559  # from the catalog: GFD's label is the MIG device's memory
    assert mig.sources["migConfig"] is FactSource.NODE
    vfio = _pool(facts, "h100-80gb-vfio")
    assert vfio.sandbox and vfio.workload_config is WorkloadConfig.VM_PASSTHROUGH and vfio.gpu_count == 8
    assert vfio.sources["gpuProduct"] is FactSource.NODE
    l4 = _pool(facts, "l4")
    assert l4.gpu_count == 4 and l4.sharing_strategy == "time-slicing" and not l4.mig_capable
    cpu = _pool(facts, "cpu")
    assert cpu.nodes == ["cpu-a"] and cpu.gpu_count == 0 and cpu.sources == {}
    assert facts.gpu_pools == facts.pools[:4]
    assert facts.conflicts == []
    assert h100.labels["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
    assert "kubernetes.io/hostname" not in h100.labels


def test_agent_annotated_nodes_without_gfd(k8s: Any) -> None:
    nodes = [
        k8s.agent_node("dgx-1", "dgx-h100"),
        k8s.agent_node("dgx-2", "dgx-h100-mig"),
        k8s.agent_node("inf-1", "l4-server"),
        k8s.agent_node("t4-1", "t4-node"),
        k8s.agent_node("a100-1", "dgx-a100"),
    ]
    facts = build_cluster_facts(nodes)
    assert [p.name for p in facts.pools] == ["a100-80gb", "h100-80gb", "h100-80gb-mig", "l4", "t4"]
    t4 = _pool(facts, "t4")
    assert (t4.gpu_product, t4.gpu_count, t4.gpu_family, t4.pci_device_id) == (
        "Tesla-T4",
        1,
        "turing",
        "0x1EB810DE",
    )
    assert set(t4.sources.values()) == {FactSource.NODE_AGENT}
    assert _pool(facts, "h100-80gb-mig").mig_config == ""


def test_precedence_resource_slice_over_agent_over_gfd(k8s: Any) -> None:
    # GFD labels lag behind: they still say driver 535 and MIG off; the agent and the DRA
    # driver already see driver 550 and MIG on.
    node = k8s.agent_node(
        "h1", "dgx-h100-mig", labels=k8s.gfd_labels("h100-80gb", 8, driver="535.104.05", cuda="12.2")
    )
    inventory = k8s.inventory("dgx-h100-mig", "h1")
    from blueprintd.dra.slices import build_slices

    slices = build_slices(inventory, "gpu.nvidia.com", "h1")
    facts = build_cluster_facts([node], slices)
    (pool,) = facts.pools
    assert pool.name == "h100-80gb-mig"
    assert pool.driver_version == "550.54.15" and pool.sources["driverVersion"] is FactSource.RESOURCE_SLICE
    assert pool.sources["pciDeviceId"] is FactSource.NODE_AGENT  # slices do not carry it
    assert pool.sources["migStrategy"] is FactSource.GFD
    by_field = {(c.field, c.other_source): c for c in facts.conflicts}
    drv = by_field[("driverVersion", FactSource.GFD)]
    assert (drv.node, drv.chosen, drv.chosen_source, drv.other) == (
        "h1",
        "550.54.15",
        FactSource.RESOURCE_SLICE,
        "535.104.05",
    )
    assert by_field[("migEnabled", FactSource.GFD)].other == "false"
    assert by_field[("cudaDriverVersion", FactSource.GFD)].chosen == "12.4"
    # Same value in other spellings ("9.0.0" vs "9.0", semver 550.54.15 vs NVML) is no conflict.
    assert ("computeCapability", FactSource.GFD) not in by_field
    assert ("driverVersion", FactSource.NODE_AGENT) not in by_field
    assert ("gpuProduct", FactSource.GFD) not in by_field


def test_lost_gpu_surfaces_as_count_conflict(k8s: Any) -> None:
    fake = FakeNvml.from_machine("dgx-h100")
    fake.lose_gpu(3)
    inventory = k8s.inventory(fake, "h1")
    from blueprintd.dra.slices import build_slices

    node = k8s.node("h1", k8s.gfd_labels("h100-80gb", 8), {"nvidia.com/gpu": "8"})
    facts = build_cluster_facts([node], build_slices(inventory, "gpu.nvidia.com", "h1"))
    (pool,) = facts.pools
    assert pool.gpu_count == 7 and pool.sources["gpuCount"] is FactSource.RESOURCE_SLICE
    assert {(c.field, c.other, c.other_source) for c in facts.conflicts} == {
        ("gpuCount", "8", FactSource.GFD),
        ("gpuCount", "8", FactSource.NODE),
    }


def test_pool_value_is_the_most_common_during_a_rolling_upgrade(k8s: Any) -> None:
    nodes = [k8s.gfd_node(f"n{i}", "l4", 4, driver="550.90.07") for i in range(3)]
    nodes.append(k8s.gfd_node("n9", "l4", 4, driver="570.86.15"))
    (pool,) = build_cluster_facts(nodes).pools
    assert pool.driver_version == "550.90.07" and len(pool.nodes) == 4


def test_two_mig_configs_of_one_product_get_config_names(k8s: Any) -> None:
    nodes = [
        k8s.gfd_node("a", "h100-80gb", 8, mig_single="1g.10gb", mig_config="all-1g.10gb"),
        k8s.gfd_node("b", "h100-80gb", 8, mig_single="3g.40gb", mig_config="all-3g.40gb"),
        k8s.gfd_node("c", "h100-80gb", 8),
    ]
    names = [p.name for p in build_cluster_facts(nodes).pools]
    assert names == ["h100-80gb", "h100-80gb-mig-all-1g-10gb", "h100-80gb-mig-all-3g-40gb"]


def test_pool_names_are_deterministic_and_unique() -> None:
    keys = [
        ("h100-80gb", True, "custom-a", "container"),
        ("h100-80gb", True, "custom-b", "container"),
        ("", False, "", ""),
        ("gpu", False, "", "container"),
        ("h100-80gb", False, "", "vm-vgpu"),
    ]
    names = pool_names(keys)
    assert names == pool_names(reversed(keys))
    assert names[("", False, "", "")] == "cpu"
    assert names[("h100-80gb", False, "", "vm-vgpu")] == "h100-80gb-vgpu"
    assert len(set(names.values())) == len(keys)


def test_unknown_product_gets_a_readable_slug(k8s: Any) -> None:
    node = k8s.node("g", {"nvidia.com/gpu.product": "NVIDIA-GeForce-RTX-4090", "nvidia.com/gpu.count": "2"})
    (pool,) = build_cluster_facts([node]).pools
    assert pool.name == "geforce-rtx-4090" and pool.gpu_count == 2


def test_pure_and_deterministic(k8s: Any) -> None:
    nodes = [k8s.gfd_node("b", "l4", 4), k8s.gfd_node("a", "l4", 4), k8s.node("c")]
    one = build_cluster_facts(nodes, cluster="x")
    two = build_cluster_facts(list(reversed(nodes)), cluster="x")
    assert one == two and one.collected_at is None
    assert one.to_wire()["pools"][0]["sources"]["gpuProduct"] == "gpuFeatureDiscovery"


def test_devfleet_simulated_nodes(k8s: Any) -> None:
    """The local test bed's simulated nodes (other team's profiles) form the expected pools."""
    from blueprintd.devfleet.nodes import PROFILES, node_object

    nodes = [
        node_object(f"{p}-{i}", PROFILES[p])
        for p in ("h100", "h100-mig", "l4", "cpu", "sandbox")
        for i in range(2)
    ]
    names = [p.name for p in build_cluster_facts(nodes).pools]
    assert names == ["h100-80gb", "h100-80gb-mig", "h100-80gb-vfio", "l4", "cpu"]


def test_time_sliced_l4_with_shared_product_joins_the_l4_pool(k8s: Any) -> None:
    """GFD appends -SHARED to the product when time-slicing renames nothing: still an L4, in the
    same pool as the L4 nodes not (yet) shared, with the sharing state recorded as a fact."""
    from blueprintd.facts import catalog

    shared = k8s.gfd_labels("l4", 4, sharing="time-slicing", replicas=4, driver="550.90.07")
    shared["nvidia.com/gpu.product"] = "NVIDIA-L4-SHARED"
    nodes = [
        k8s.node("l4-ts", shared, {"nvidia.com/gpu": "16"}),
        k8s.gfd_node("l4-plain", "l4", 4, driver="550.90.07"),
        k8s.agent_node("l4-agent", "l4-server", labels=dict(shared)),
    ]
    facts = build_cluster_facts(nodes)
    (pool,) = facts.pools
    assert pool.name == "l4" and pool.nodes == ["l4-agent", "l4-plain", "l4-ts"]
    assert pool.gpu_product == "NVIDIA-L4" and pool.gpu_count == 4
    known = catalog.lookup(pool.gpu_product)
    assert known is not None and known.key == "l4"
    assert pool.sharing_strategy == "time-slicing"  # two of three nodes are shared
    assert facts.conflicts == [], "the agent's 'NVIDIA L4' and GFD's product agree"
    assert catalog.lookup("NVIDIA-L4-SHARED") == known, "the catalog knows the shared spelling too"


def _mig_slice_node(k8s: Any, name: str, gpus: int) -> tuple[Any, Any]:
    """A MIG node described only by NVIDIA's DRA driver (7 x 1g.10gb per GPU) and operator labels."""
    labels = {"nvidia.com/mig.config": "all-1g.10gb", "nvidia.com/mig.config.state": "success"}
    devices = [k8s.mig_device(g, start) for g in range(gpus) for start in range(7)]
    return k8s.node(name, labels), k8s.slice(name, devices)


def test_nodes_of_one_pool_with_different_gpu_counts(k8s: Any) -> None:
    """Issue 18.3: one MIG H100 node with 8 GPUs (GFD), one with 2 (ResourceSlice). The pool
    used to say "2" as if every node had 2; now it reports the range and the total, and each
    node that differs from the pool's value is a FactConflict naming the pool."""
    big = k8s.gfd_node("h100-big", "h100-80gb", 8, mig_single="1g.10gb", mig_config="all-1g.10gb")
    small, small_slice = _mig_slice_node(k8s, "h100-small", 2)
    facts = build_cluster_facts([big, small], [small_slice])
    (pool,) = facts.pools
    assert pool.name == "h100-80gb-mig" and pool.nodes == ["h100-big", "h100-small"]
    assert (pool.gpu_count_min, pool.gpu_count_max, pool.gpu_total) == (2, 8, 10)
    assert pool.gpu_count == 2, "a tie between counts reports the smaller: what every node has"
    pool_conflicts = [c for c in facts.conflicts if c.pool]
    assert [(c.pool, c.node, c.field, c.chosen, c.other, c.other_source) for c in pool_conflicts] == [
        ("h100-80gb-mig", "h100-big", "gpuCount", "2", "8", FactSource.GFD)
    ]
    assert pool_conflicts[0].chosen_source is FactSource.RESOURCE_SLICE


def test_a_lost_gpu_keeps_the_pool_and_its_count(k8s: Any) -> None:
    """Pools are not split by GPU count: a GPU falling off the bus must not move a node to
    another pool (and another configuration). The common count stays; the node is named."""
    nodes = [k8s.gfd_node(f"n{i}", "h100-80gb", 8) for i in range(3)]
    nodes.append(k8s.gfd_node("n9", "h100-80gb", 7))
    facts = build_cluster_facts(nodes)
    (pool,) = facts.pools
    assert (pool.gpu_count, pool.gpu_count_min, pool.gpu_count_max, pool.gpu_total) == (8, 7, 8, 31)
    assert [(c.node, c.pool, c.chosen, c.other) for c in facts.conflicts] == [("n9", "h100-80gb", "8", "7")]


def test_gpu_counts_compare_as_numbers(k8s: Any) -> None:
    facts = build_cluster_facts([k8s.gfd_node("a", "h100-80gb", 16), k8s.gfd_node("b", "h100-80gb", 8)])
    (pool,) = facts.pools
    assert (pool.gpu_count, pool.gpu_count_max, pool.gpu_total) == (8, 16, 24), "not '16' < '8' as text"


def test_uniform_pools_have_no_pool_conflicts(k8s: Any) -> None:
    facts = build_cluster_facts([k8s.gfd_node("a", "l4", 4), k8s.gfd_node("b", "l4", 4), k8s.node("c")])
    l4, cpu = facts.pools
    assert (l4.gpu_count, l4.gpu_count_min, l4.gpu_count_max, l4.gpu_total) == (4, 4, 4, 8)
    assert (cpu.gpu_count, cpu.gpu_count_min, cpu.gpu_count_max, cpu.gpu_total) == (0, 0, 0, 0)
    assert facts.conflicts == []
