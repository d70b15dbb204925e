"""The CEL variables overlays see: ``cluster``, ``pool`` and ``params``, built from facts.

``pool`` is the ``NodePool`` in camelCase plus values derived from the GPU catalog, so a
Blueprint can pick a valid MIG layout for any product without hard-coding product names:

* ``product``: catalog key (``h100-80gb``, ``l4``; '' when unknown or no GPU);
* ``migProfiles``: the product's MIG profiles; ``migProfile``: the smallest one (most
  instances), e.g. ``1g.10gb``; ``migProfileCount``: instances of it per GPU;
* ``migDeviceFilter``: PCI ids (``0x233010DE`` form) of every catalog product with the same
  MIG geometry, for mig-parted ``device-filter``. Products that share a geometry (A100 80GB
  and H100 80GB) get identical entries, so pools of both merge without conflict;
* ``nodeCount``: number of nodes.
"""

from __future__ import annotations

from typing import Any

from blueprintd.api.facts import ClusterFacts, NodePool
from blueprintd.facts import catalog


def _pci_filter(product: catalog.GpuProduct) -> list[str]:
    ids = {
        f"{pci.upper().replace('0X', '0x')}10DE"
        for other in catalog.PRODUCTS
        if other.mig_profiles == product.mig_profiles
        for pci in other.pci_device_ids
    }
    return sorted(ids)


def pool_facts(pool: NodePool) -> dict[str, Any]:
    """The ``pool`` CEL variable for ``pool`` (plain JSON data)."""
    data = pool.model_dump(by_alias=True, mode="json")
    product = catalog.lookup(pool.gpu_product, pool.pci_device_id) if (pool.gpu_product or pool.pci_device_id) else None
    data["product"] = product.key if product else ""
    data["nodeCount"] = len(pool.nodes)
    if product is not None and product.mig_capable:
        smallest = product.smallest_mig_profile
        data["migProfiles"] = [p.name for p in product.mig_profiles]
        data["migProfile"] = smallest
        data["migProfileCount"] = next(p.max_count for p in product.mig_profiles if p.name == smallest)
        data["migDeviceFilter"] = _pci_filter(product)
    else:
        data["migProfiles"] = []
        data["migProfile"] = ""
        data["migProfileCount"] = 0
        data["migDeviceFilter"] = []
    return data


def cluster_facts(facts: ClusterFacts, pools: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``cluster`` CEL variable."""
    return {
        "name": facts.cluster,
        "labels": dict(facts.cluster_labels),
        "kubernetesVersion": facts.kubernetes_version,
        "pools": pools,
    }
