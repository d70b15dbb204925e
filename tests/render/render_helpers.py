"""Builders for render tests (imported by the test modules of this folder)."""

from __future__ import annotations

from typing import Any

from blueprintd.api.blueprint import Blueprint
from blueprintd.api.facts import ClusterFacts, NodePool
from blueprintd.api.load import parse_blueprint

H100 = "NVIDIA-H100-80GB-HBM3"
A100_80 = "NVIDIA-A100-SXM4-80GB"
H200 = "NVIDIA-H200"
L4 = "NVIDIA-L4"


def pool(
    name: str, product: str = "", gpus: int = 0, *, mig: bool = False, sandbox: bool = False, **extra: Any
) -> NodePool:
    """A node pool; ``product`` is a GFD product name such as NVIDIA-H100-80GB-HBM3."""
    return NodePool(
        name=name,
        nodes=extra.pop("nodes", [f"{name}-0", f"{name}-1"]),
        gpu_product=product,
        gpu_count=gpus,
        mig_capable=mig,
        sandbox=sandbox,
        **extra,
    )


def facts(*pools: NodePool, cluster: str = "c1", labels: dict[str, str] | None = None) -> ClusterFacts:
    return ClusterFacts(cluster=cluster, cluster_labels=labels or {}, pools=list(pools))


def blueprint(overlays: list[dict[str, Any]], addons: list[dict[str, Any]] | None = None, **spec: Any) -> Blueprint:
    """A Blueprint with one Helm add-on ``op`` and one manifests add-on ``objs`` unless given."""
    base_addons = addons or [
        {
            "name": "op",
            "namespace": "ops",
            "helm": {
                "repo": "https://charts.example.com/stable",
                "chart": "op",
                "version": "1.0.0",
                "values": {"config": {"mode": "default", "list": [1]}, "replicas": 1},
            },
        },
        {
            "name": "objs",
            "namespace": "apps",
            "manifests": [
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"a": "1"}},
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}},
            ],
        },
    ]
    return parse_blueprint(
        {
            "apiVersion": "blueprintd.io/v1alpha1",
            "kind": "Blueprint",
            "metadata": {"name": "test"},
            "spec": {"version": "1.0.0", "addons": base_addons, "overlays": overlays, **spec},
        }
    )
