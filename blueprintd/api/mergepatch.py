"""JSON merge patches (RFC 7386) computed from two states, pure.

Status writes are merge patches. Sending the new status as it is would never remove a map
key that disappeared (a deleted member in ``status.rollout.assignments``): the stored object
would keep it, every resync would find a difference, and write again, forever. The diff below
writes removed keys as null and unchanged values not at all.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

_SAME = object()


def merge_patch(current: Mapping[str, Any] | None, new: Mapping[str, Any], keys: Iterable[str]) -> dict[str, Any]:
    """The merge patch turning ``current`` into ``new`` for the top-level ``keys`` ({} when equal).

    A key absent from ``new`` is removed (null); keys not listed are never touched, so each
    writer only patches what it owns.
    """
    stored = current or {}
    patch: dict[str, Any] = {}
    for key in keys:
        diff = _diff(stored.get(key), new.get(key))
        if diff is not _SAME:
            patch[key] = diff
    return patch


def _diff(old: Any, new: Any) -> Any:
    """_SAME, the new value, or for two objects the changed keys (removed keys as None).
    Lists are replaced whole, as merge patches do."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        out: dict[str, Any] = {}
        for key in sorted(old.keys() | new.keys()):
            if key not in new or new[key] is None:
                if old.get(key) is not None:
                    out[key] = None
                continue
            diff = _diff(old.get(key), new[key])
            if diff is not _SAME:
                out[key] = diff
        return out if out else _SAME
    if _canonical(old) == _canonical(new):
        return _SAME
    return new


def _canonical(value: Any) -> str:
    """Stored values compare with computed ones after a JSON round trip (datetimes as strings)."""
    return json.dumps(value, sort_keys=True, default=str)


def apply_merge_patch(current: Mapping[str, Any] | None, patch: Mapping[str, Any]) -> dict[str, Any]:
    """``current`` with ``patch`` applied: what the API server stores after the write."""
    out = dict(current or {})
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = apply_merge_patch(out[key], value)
        elif isinstance(value, Mapping):
            out[key] = apply_merge_patch({}, value)
        else:
            out[key] = value
    return out
