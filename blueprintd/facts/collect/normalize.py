"""Value normalization shared by every source, so equal facts compare equal.

Each source spells the same fact its own way: NVML says ``NVIDIA H100 80GB HBM3``, GFD
``NVIDIA-H100-80GB-HBM3``; NVIDIA's DRA driver publishes ``Hopper`` and semver ``9.0.0`` where
GFD has ``hopper`` and ``9`` / ``0``; the DRA driver rewrites driver ``535.104.05`` as
``535.104.5`` because semver forbids leading zeros. Facts are stored in GFD's spelling
(that is what users already put in selectors), and conflicts are detected on comparison
keys that ignore spelling, so only real disagreements are reported.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from blueprintd.facts import catalog

_NOT_LABEL_CHARS = re.compile(r"[^A-Za-z0-9\-_. ]")
_SLUG_BAD = re.compile(r"[^a-z0-9]+")
_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]{0,2})$")
_SUFFIX: dict[str, Decimal] = {
    "": Decimal(1),
    "Ki": Decimal(1 << 10), "Mi": Decimal(1 << 20), "Gi": Decimal(1 << 30),
    "Ti": Decimal(1 << 40), "Pi": Decimal(1 << 50), "Ei": Decimal(1 << 60),
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"),
    "k": Decimal(10**3), "M": Decimal(10**6), "G": Decimal(10**9),
    "T": Decimal(10**12), "P": Decimal(10**15), "E": Decimal(10**18),
}
MIB = 1 << 20


def gfd_product(name: str) -> str:
    """Any product spelling in GFD label form (GFD drops odd characters, spaces -> dashes)."""
    cleaned = _NOT_LABEL_CHARS.sub("", name.strip())
    return "-".join(cleaned.split())


def product_id(product: str, pci_device_id: str = "") -> str:
    """The pool-name stem for a product: the catalog key when known, else a readable slug."""
    known = catalog.lookup(product, pci_device_id)
    if known is not None:
        return known.key
    return slug(product.removeprefix("NVIDIA-").removeprefix("NVIDIA ")) or "gpu"


def slug(text: str) -> str:
    return _SLUG_BAD.sub("-", text.lower()).strip("-")


def family(arch: str) -> str:
    """``Hopper`` / ``Ada Lovelace`` / ``ada-lovelace`` -> GFD's ``hopper`` / ``ada-lovelace``."""
    return "-".join(arch.strip().lower().replace("_", " ").split())


def major_minor(version: str) -> str:
    """``9.0.0`` -> ``9.0``; ``12.4`` stays; ``12`` -> ``12.0``."""
    parts = [p for p in version.strip().lstrip("vV").split(".") if p != ""]
    if not parts:
        return ""
    if len(parts) == 1:
        parts.append("0")
    return f"{parts[0]}.{parts[1]}"


def version_key(version: str) -> tuple[int | str, ...]:
    """Comparison key ignoring leading zeros and trailing ``.0``: 535.104.05 == 535.104.5."""
    out: list[int | str] = []
    for part in version.strip().lstrip("vV").split("."):
        out.append(int(part) if part.isdigit() else part)
    while len(out) > 1 and out[-1] == 0:
        out.pop()
    return tuple(out)


def quantity(value: str | int | float) -> Decimal:
    """A Kubernetes Quantity (``80Gi``, ``85899345920``, ``81559552k``) as a number."""
    text = str(value).strip()
    m = _QUANTITY.match(text)
    if not m or m.group(2) not in _SUFFIX:
        raise ValueError(f"not a Kubernetes quantity: {value!r}")
    try:
        return Decimal(m.group(1)) * _SUFFIX[m.group(2)]
    except InvalidOperation as exc:
        raise ValueError(f"not a Kubernetes quantity: {value!r}") from exc


def bytes_to_mib(n: int | Decimal) -> int:
    return int(n) // MIB


def to_int(value: object) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None
