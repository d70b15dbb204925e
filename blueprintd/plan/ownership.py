"""The identity labels blueprintd puts on every object it applies (pure).

``blueprintd.io/blueprint``, ``blueprintd.io/drift-mode`` and ``blueprintd.io/managed-by`` say
which Blueprint owns an object and how drift of it is handled. They are part of the object as
it is applied — manifests of user add-ons and of add-ons generated from ``spec.policies`` alike
— so the block-mode admission policy, which selects by them, covers an object from the moment
it exists, and a mode change is a change of the object the reconcile applies in every mode.
(Objects a Helm release renders get the same labels from the drift monitor, which reads them
from the release record.)

A manifest is also normalised here the way Helm and kubectl read one: a ``null`` value means
"not set" and is not sent.
"""

from __future__ import annotations

import re
from typing import Any

from blueprintd.plan.compare import drop_nulls

MANAGED_BY_LABEL = "blueprintd.io/managed-by"
MODE_LABEL = "blueprintd.io/drift-mode"
BLUEPRINT_LABEL = "blueprintd.io/blueprint"
MANAGED_BY = "blueprintd"


def label_value(value: str) -> str:
    """Blueprint names are DNS subdomains (up to 253 characters); label values stop at 63."""
    value = re.sub(r"[^A-Za-z0-9._-]", "-", value)[:63]
    return value.strip("._-") or "blueprint"


def identity_labels(blueprint: str, mode: str) -> dict[str, str]:
    """The labels of an object owned by ``blueprint`` whose add-on has drift mode ``mode``."""
    return {MANAGED_BY_LABEL: MANAGED_BY, MODE_LABEL: mode, BLUEPRINT_LABEL: label_value(blueprint)}


def owned_object(obj: dict[str, Any], blueprint: str, mode: str) -> dict[str, Any]:
    """``obj`` as blueprintd applies it: nulls dropped, identity labels added (a new dict)."""
    out: dict[str, Any] = drop_nulls(obj)
    meta = out.get("metadata")
    meta = dict(meta) if isinstance(meta, dict) else {}
    meta["labels"] = {**(meta.get("labels") or {}), **identity_labels(blueprint, mode)}
    out["metadata"] = meta
    return out
