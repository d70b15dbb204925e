"""The default GPU platform Blueprint, rendered for the clusters users actually have."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import yaml
from render_helpers import A100_80, H100, H200, L4, facts, pool

from blueprintd.api.blueprint import Blueprint
from blueprintd.api.facts import ClusterFacts
from blueprintd.render import DesiredState, RenderOptions, render


def gpu_values(state: DesiredState) -> dict[str, Any]:
    helm = state.step("gpu-operator").helm
    assert helm is not None
    return helm.values


def mig_configs(state: DesiredState) -> dict[str, Any]:
    text = gpu_values(state)["migManager"]["config"]["data"]["config.yaml"]
    assert isinstance(text, str), "mig-parted config must reach Helm as a YAML string"
    parsed: dict[str, Any] = yaml.safe_load(text)
    assert parsed["version"] == "v1"
    configs: dict[str, Any] = parsed["mig-configs"]
    return configs


def labels(state: DesiredState) -> dict[str, dict[str, str]]:
    return {entry.pool: entry.labels for entry in state.node_labels}


def test_mixed_cluster_gets_mig_on_h100_time_slicing_on_l4_nothing_on_cpu(
    default_blueprint: Blueprint, example_facts: Callable[[str], ClusterFacts]
) -> None:
    state = render(default_blueprint, example_facts("mixed"))
    by_pool = labels(state)

    assert by_pool["h100-80gb"]["nvidia.com/mig.config"] == "all-1g.10gb"
    assert "nvidia.com/device-plugin.config" not in by_pool["h100-80gb"]
    assert by_pool["l4"]["nvidia.com/device-plugin.config"] == "ts-l4"
    # Under DRA the replicas become consumable capacity the bundled driver publishes per GPU.
    assert by_pool["l4"]["blueprintd.io/time-slicing-replicas"] == "4"
    assert "blueprintd.io/time-slicing-replicas" not in by_pool["h100-80gb"], "MIG pools keep whole MIG devices"
    assert "nvidia.com/mig.config" not in by_pool["l4"]
    assert "cpu" not in by_pool  # nothing GPU-related for CPU nodes

    configs = mig_configs(state)
    assert configs["all-1g.10gb"] == [
        {
            "device-filter": [
                "0x20B210DE",
                "0x20B510DE",
                "0x20F310DE",
                "0x20F510DE",
                "0x232210DE",
                "0x232410DE",
                "0x233010DE",
                "0x233110DE",
            ],
            "devices": "all",
            "mig-enabled": True,
            "mig-devices": {"1g.10gb": 7},
        }
    ]
    assert configs["all-disabled"] == [{"devices": "all", "mig-enabled": False}]

    plugin = gpu_values(state)["devicePlugin"]
    assert plugin["enabled"] is False  # DRA mode
    ts = yaml.safe_load(plugin["config"]["data"]["ts-l4"])
    assert ts["sharing"]["timeSlicing"]["resources"] == [{"name": "nvidia.com/gpu", "replicas": 4}]
    assert ts["flags"] == {"migStrategy": "none"}

    assert state.fired("mig", "h100-80gb") and not state.fired("mig", "l4") and not state.fired("mig", "cpu")
    assert state.fired("time-slicing", "l4") and not state.fired("time-slicing", "h100-80gb")
    assert not any(e.fired for e in state.explanations if e.pool == "cpu")


def test_gpu_operator_runs_in_dra_mode_with_dcgm(default_blueprint: Blueprint) -> None:
    values = gpu_values(render(default_blueprint, facts(pool("cpu"))))
    assert values["devicePlugin"]["enabled"] is False
    assert values["cdi"]["enabled"] is True
    assert values["migManager"]["enabled"] is True
    assert values["dcgmExporter"]["enabled"] is True


def test_sandbox_pool_gets_passthrough_not_mig_or_time_slicing(
    default_blueprint: Blueprint, example_facts: Callable[[str], ClusterFacts]
) -> None:
    state = render(default_blueprint, example_facts("sandbox"))
    by_pool = labels(state)
    assert by_pool["h100-80gb-sandbox"] == {"nvidia.com/gpu.workload.config": "vm-passthrough"}
    assert by_pool["h100-80gb"]["nvidia.com/mig.config"] == "all-1g.10gb"
    assert gpu_values(state)["sandboxWorkloads"]["enabled"] is True
    sandbox_fired = {e.overlay for e in state.explanations if e.pool == "h100-80gb-sandbox" and e.fired}
    assert sandbox_fired == {"sandbox"}


def test_clusters_without_sandbox_pools_keep_sandbox_workloads_off(
    default_blueprint: Blueprint, example_facts: Callable[[str], ClusterFacts]
) -> None:
    assert gpu_values(render(default_blueprint, example_facts("h100-only")))["sandboxWorkloads"]["enabled"] is False


def test_several_mig_products_merge_without_conflict(default_blueprint: Blueprint) -> None:
    cluster = facts(
        pool("h100", H100, 8, mig=True),
        pool("a100", A100_80, 8, mig=True),
        pool("h200", H200, 8, mig=True),
        pool("l4-a", L4, 4),
        pool("l4-b", L4, 1),
    )
    state = render(default_blueprint, cluster)
    configs = mig_configs(state)
    assert set(configs) == {"all-disabled", "all-1g.10gb", "all-1g.18gb"}
    assert configs["all-1g.18gb"][0]["mig-devices"] == {"1g.18gb": 7}
    assert "0x233510DE" in configs["all-1g.18gb"][0]["device-filter"]
    by_pool = labels(state)
    assert by_pool["a100"]["nvidia.com/mig.config"] == "all-1g.10gb"
    assert by_pool["h200"]["nvidia.com/mig.config"] == "all-1g.18gb"
    data = gpu_values(state)["devicePlugin"]["config"]["data"]
    assert sorted(data) == ["ts-l4-a", "ts-l4-b"]


def test_time_slicing_replicas_come_from_parameters(default_blueprint: Blueprint) -> None:
    state = render(default_blueprint, facts(pool("l4", L4, 2)), RenderOptions(parameters={"timeSlicingReplicas": 8}))
    ts = yaml.safe_load(gpu_values(state)["devicePlugin"]["config"]["data"]["ts-l4"])
    assert ts["sharing"]["timeSlicing"]["resources"][0]["replicas"] == 8
    assert state.parameters == {"timeSlicingReplicas": 8}


def test_dra_serves_container_gpu_pools(default_blueprint: Blueprint) -> None:
    state = render(default_blueprint, facts(pool("h100", H100, 8, mig=True), pool("vm", H100, 8, sandbox=True)))
    dra = state.step("dra-driver").helm
    assert dra is not None and dra.values["nodeSelector"] == {"nvidia.com/dra-kubelet-plugin": "true"}
    by_pool = labels(state)
    assert by_pool["h100"]["nvidia.com/dra-kubelet-plugin"] == "true"
    assert "nvidia.com/dra-kubelet-plugin" not in by_pool["vm"]
    (device_class,) = state.step("gpu-sharing").manifests or []
    assert device_class["kind"] == "DeviceClass" and "namespace" not in device_class["metadata"]
    sharing = device_class["spec"]["config"][0]["opaque"]["parameters"]["sharing"]
    assert sharing == {"strategy": "TimeSlicing", "timeSlicingConfig": {"interval": "Default"}}


def test_install_order_follows_dependencies(default_blueprint: Blueprint) -> None:
    order = [s.addon for s in render(default_blueprint, facts()).steps]
    assert order.index("gpu-operator") < order.index("dra-driver")
    assert order.index("kai-scheduler") < order.index("kai-queues")
    assert order.index("gatekeeper") < order.index("policy-templates") < order.index("policy-constraints")
    assert order == [
        "gatekeeper",
        "gpu-operator",
        "dra-driver",
        "gpu-sharing",
        "kai-scheduler",
        "kai-queues",
        "kata",
        "network-policies",
        "policy-templates",
        "policy-constraints",
    ]


def test_policies_become_manifest_addons(default_blueprint: Blueprint) -> None:
    state = render(default_blueprint, facts())
    templates = state.step("policy-templates")
    assert templates.generated and templates.depends_on == ["gatekeeper"]
    assert [m["kind"] for m in templates.manifests or []] == ["ConstraintTemplate"] * 3
    assert templates.readiness is not None
    assert {c.name for c in templates.readiness.checks} == {
        "blueprintdgpupodsusekai.constraints.gatekeeper.sh",
        "blueprintdtenantnoprivileged.constraints.gatekeeper.sh",
        "blueprintduntrustedrequireskata.constraints.gatekeeper.sh",
    }
    constraints = state.step("policy-constraints")
    assert constraints.depends_on == ["policy-templates"]
    for obj in constraints.manifests or []:
        assert "namespace" not in obj["metadata"]  # constraints are cluster-scoped
    netpol = state.step("network-policies").manifests or []
    assert netpol[0] == {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "gpu-workloads", "labels": {"blueprintd.io/tenant": "true"}},
    }
    stamped = [(m["metadata"]["namespace"], m["metadata"]["name"]) for m in netpol if m["kind"] == "NetworkPolicy"]
    assert stamped == [
        ("gpu-workloads", "default-deny-ingress"),
        ("gpu-workloads", "allow-same-namespace"),
        ("gpu-workloads", "allow-monitoring-scrape"),
    ]


def test_kai_queues_are_cluster_scoped_and_chart_refs_are_oci(default_blueprint: Blueprint) -> None:
    state = render(default_blueprint, facts())
    queues = state.step("kai-queues").manifests or []
    assert [q["metadata"]["name"] for q in queues] == ["platform", "default", "batch"]
    assert all("namespace" not in q["metadata"] for q in queues)
    kai = state.step("kai-scheduler").helm
    assert kai is not None and kai.chart_ref == "oci://ghcr.io/nvidia/kai-scheduler/kai-scheduler"
    kata = state.step("kata").helm
    assert kata is not None and kata.chart_ref == "oci://ghcr.io/kata-containers/kata-deploy-charts/kata-deploy"
    gpu = state.step("gpu-operator").helm
    assert gpu is not None and gpu.chart_ref == "gpu-operator" and gpu.repo == "https://helm.ngc.nvidia.com/nvidia"


def test_monitoring_overlay_follows_cluster_label(default_blueprint: Blueprint) -> None:
    off = render(default_blueprint, facts(pool("l4", L4, 1)))
    on = render(default_blueprint, facts(pool("l4", L4, 1), labels={"blueprintd.io/monitoring": "prometheus"}))
    assert gpu_values(off)["dcgmExporter"]["serviceMonitor"]["enabled"] is False
    assert gpu_values(on)["dcgmExporter"]["serviceMonitor"]["enabled"] is True
    reason = next(e.reason for e in on.explanations if e.overlay == "monitoring")
    assert reason.startswith("cluster c1: cluster.labels=") and reason.endswith("→ true")


def test_explanations_say_why(default_blueprint: Blueprint, example_facts: Callable[[str], ClusterFacts]) -> None:
    state = render(default_blueprint, example_facts("mixed"))
    reasons = {(e.overlay, e.pool): e.reason for e in state.explanations}
    assert reasons[("mig", "h100-80gb")] == "pool h100-80gb: migCapable=true, migProfile=1g.10gb, sandbox=false → true"
    assert reasons[("time-slicing", "cpu")] == "pool cpu: gpuCount=0, migCapable=false, sandbox=false → false"


def test_rendering_is_deterministic(default_blueprint: Blueprint, example_facts: Callable[[str], ClusterFacts]) -> None:
    cluster = example_facts("sandbox")
    first = render(default_blueprint, cluster).to_json()
    shuffled = cluster.model_copy(update={"pools": list(reversed(cluster.pools))})
    again = [render(default_blueprint, shuffled).to_json() for _ in range(3)]
    assert all(text == first for text in again)
    assert first.encode() == render(default_blueprint.model_copy(deep=True), cluster).to_json().encode()


def test_chart_mirrors_rewrite_repositories(default_blueprint: Blueprint) -> None:
    options = RenderOptions(
        chart_mirrors={
            "https://helm.ngc.nvidia.com/nvidia": "http://127.0.0.1:8080/nvidia/",
            "oci://ghcr.io": "http://127.0.0.1:8080/ghcr",
        }
    )
    state = render(default_blueprint, facts(), options)
    gpu = state.step("gpu-operator").helm
    assert gpu is not None
    assert gpu.repo == "http://127.0.0.1:8080/nvidia"
    assert gpu.upstream_repo == "https://helm.ngc.nvidia.com/nvidia"
    kai = state.step("kai-scheduler").helm
    assert kai is not None and kai.repo == "http://127.0.0.1:8080/ghcr/nvidia/kai-scheduler"
    gk = state.step("gatekeeper").helm
    assert gk is not None
    assert gk.repo == "https://open-policy-agent.github.io/gatekeeper/charts" and gk.upstream_repo is None
