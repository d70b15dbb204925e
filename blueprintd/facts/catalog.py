"""The GPU product catalog: which products exist, their MIG profiles and how they are named.

Facts from NVML, GPU Feature Discovery and DRA ResourceSlices name the same GPU differently
(``NVIDIA H100 80GB HBM3`` vs ``NVIDIA-H100-80GB-HBM3`` vs PCI id ``0x233010DE``). Overlays
must choose a MIG layout that is valid for the product they target, so this table is the
single place that maps any of those names to the product and its MIG profiles. Numbers come
from the upstream GPU stack documentation (``shared/reference/gpu-stack.md``).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class MigProfile:
    """A MIG profile and how many instances of it fit on one GPU."""

    name: str  # e.g. "1g.10gb"
    max_count: int


@dataclass(frozen=True)
class GpuProduct:
    """One GPU product as the fleet sees it."""

    key: str  # short, stable key used in node profiles and docs, e.g. "h100-80gb"
    nvml_name: str  # what nvmlDeviceGetName returns
    architecture: str  # GFD gpu.family / NVML architecture, lowercase
    compute_capability: str
    memory_mib: int
    pci_device_ids: tuple[str, ...] = ()  # "0x2330" style, vendor 10DE implied
    mig_profiles: tuple[MigProfile, ...] = field(default_factory=tuple)

    @property
    def mig_capable(self) -> bool:
        return bool(self.mig_profiles)

    @property
    def gfd_product(self) -> str:
        """The ``nvidia.com/gpu.product`` label value GFD sets (spaces become dashes)."""
        return gfd_product_name(self.nvml_name)

    @property
    def smallest_mig_profile(self) -> str:
        """The profile with the most instances: the usual 'many small slices' choice."""
        if not self.mig_profiles:
            return ""
        return max(self.mig_profiles, key=lambda p: (p.max_count, -_profile_gb(p.name))).name


def _profile_gb(name: str) -> int:
    mem = name.split(".", 1)[1] if "." in name else "0gb"
    digits = "".join(ch for ch in mem if ch.isdigit())
    return int(digits or 0)


def gfd_product_name(nvml_name: str) -> str:
    """GFD's label form of an NVML product name."""
    return "-".join(nvml_name.strip().split())


def _p(*pairs: tuple[str, int]) -> tuple[MigProfile, ...]:
    return tuple(MigProfile(n, c) for n, c in pairs)


_A100_40 = _p(("1g.5gb", 7), ("1g.10gb", 4), ("2g.10gb", 3), ("3g.20gb", 2), ("4g.20gb", 1), ("7g.40gb", 1))
_80GB = _p(("1g.10gb", 7), ("1g.20gb", 4), ("2g.20gb", 3), ("3g.40gb", 2), ("4g.40gb", 1), ("7g.80gb", 1))
_A30 = _p(("1g.6gb", 4), ("2g.12gb", 2), ("4g.24gb", 1))
_H100_NVL = _p(("1g.12gb", 7), ("1g.24gb", 4), ("2g.24gb", 3), ("3g.47gb", 2), ("4g.47gb", 1), ("7g.94gb", 1))
_96GB = _p(("1g.12gb", 7), ("2g.24gb", 3), ("3g.48gb", 2), ("4g.48gb", 1), ("7g.96gb", 1))
_H200 = _p(("1g.18gb", 7), ("1g.35gb", 4), ("2g.35gb", 3), ("3g.71gb", 2), ("4g.71gb", 1), ("7g.141gb", 1))
_GH200_144 = _p(("1g.18gb", 7), ("1g.36gb", 4), ("2g.36gb", 3), ("3g.72gb", 2), ("4g.72gb", 1), ("7g.144gb", 1))
_B200 = _p(("1g.23gb", 7), ("1g.45gb", 4), ("2g.45gb", 3), ("3g.90gb", 2), ("4g.90gb", 1), ("7g.180gb", 1))
_RTX_PRO_6000 = _p(("1g.24gb", 4), ("2g.48gb", 2), ("4g.96gb", 1))

PRODUCTS: tuple[GpuProduct, ...] = (
    GpuProduct(
        "a100-40gb",
        "NVIDIA A100-SXM4-40GB",
        "ampere",
        "8.0",
        40960,
        ("0x20B0", "0x20B1", "0x20F1", "0x20F6"),
        _A100_40,
    ),
    GpuProduct(
        "a100-80gb",
        "NVIDIA A100-SXM4-80GB",
        "ampere",
        "8.0",
        81920,
        ("0x20B2", "0x20B5", "0x20F3", "0x20F5"),
        _80GB,
    ),
    GpuProduct(
        "h100-80gb",
        "NVIDIA H100 80GB HBM3",
        "hopper",
        "9.0",
        81559,
        ("0x2330", "0x2331", "0x2322", "0x2324"),
        _80GB,
    ),
    GpuProduct("a30", "NVIDIA A30", "ampere", "8.0", 24576, ("0x20B7",), _A30),
    GpuProduct("h100-nvl", "NVIDIA H100 NVL", "hopper", "9.0", 95830, ("0x2321", "0x233A"), _H100_NVL),
    GpuProduct("h100-96gb", "NVIDIA H100 96GB HBM3", "hopper", "9.0", 97871, ("0x2342", "0x233D", "0x2329"), _96GB),
    GpuProduct("h200", "NVIDIA H200", "hopper", "9.0", 143771, ("0x2335", "0x233B"), _H200),
    GpuProduct("gh200-144gb", "NVIDIA GH200 144G HBM3e", "hopper", "9.0", 146831, ("0x2348",), _GH200_144),
    GpuProduct("b200", "NVIDIA B200", "blackwell", "10.0", 183359, ("0x2901",), _B200),
    GpuProduct(
        "rtx-pro-6000",
        "NVIDIA RTX PRO 6000 Blackwell Server Edition",
        "blackwell",
        "12.0",
        97887,
        ("0x2BB5",),
        _RTX_PRO_6000,
    ),
    GpuProduct("l4", "NVIDIA L4", "ada-lovelace", "8.9", 23034, ("0x27B8",)),
    GpuProduct("l40s", "NVIDIA L40S", "ada-lovelace", "8.9", 46068, ("0x26B9",)),
    GpuProduct("l40", "NVIDIA L40", "ada-lovelace", "8.9", 46068, ("0x26B5",)),
    GpuProduct("t4", "Tesla T4", "turing", "7.5", 15360, ("0x1EB8",)),
    GpuProduct("a10", "NVIDIA A10", "ampere", "8.6", 23028, ("0x2236",)),
    GpuProduct("a10g", "NVIDIA A10G", "ampere", "8.6", 23028, ("0x2237",)),
    GpuProduct("v100", "Tesla V100-SXM2-32GB", "volta", "7.0", 32768, ("0x1DB5",)),
)

_BY_KEY = {p.key: p for p in PRODUCTS}
_BY_NAME = {p.nvml_name.lower(): p for p in PRODUCTS}
_BY_GFD = {p.gfd_product.lower(): p for p in PRODUCTS}
_BY_PCI = {pci.lower(): p for p in PRODUCTS for pci in p.pci_device_ids}


def by_key(key: str) -> GpuProduct | None:
    return _BY_KEY.get(key)


def lookup(name: str = "", pci_device_id: str = "") -> GpuProduct | None:
    """Find a product from any of its names: NVML name, GFD label (with or without a
    ``-MIG-…`` or ``-SHARED`` suffix), catalog key, or PCI device id (``0x2330`` or ``0x233010DE``)."""
    if pci_device_id:
        pci = pci_device_id.lower()
        if pci.endswith("10de") and len(pci) == 10:
            pci = pci[:6]
        found = _BY_PCI.get(pci)
        if found:
            return found
    if not name:
        return None
    low = name.strip().lower().removesuffix("-shared")  # GFD's label while GPUs are shared
    if "-mig-" in low:
        low = low.split("-mig-", 1)[0]
    return _BY_KEY.get(low) or _BY_NAME.get(low) or _BY_GFD.get(low) or _BY_GFD.get(gfd_product_name(low))
