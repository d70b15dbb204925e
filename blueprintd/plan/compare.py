"""Compare what the blueprint sets with what a cluster has — only the fields we set.

Both planning ("is there anything to apply?") and drift detection ("did someone change what
we applied?") ask the same question, and both must ignore what the API server adds
(defaults, status, metadata it manages) and what other managers own (autoscalers,
webhooks). So the comparison walks the *desired* object: a field the blueprint does not set
is never a difference, and ignore rules remove paths the platform team declared as
someone else's.

Paths are dotted with list indices in brackets, e.g. ``spec.template.spec.containers[0].image``.

A ``null`` the Blueprint or a chart renders (``default: {{ .Values.unset }}``) means "not set",
as it does for Helm and kubectl: it is never compared (the server may default the field) and
never sent, because a server-side apply of ``null`` either clears the field or is refused by a
typed schema (``must be of type string``). Objects lose their nulls (``drop_nulls``) where they
enter: ``planner.desired_objects`` for manifests, ``drift.detect.rendered_objects`` for what a
chart rendered. ``diff_owned`` skips them too, for Helm values, which reach it as written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from blueprintd.api.pointer import parse_pointer

# Fields the API server owns on every object; the blueprint never sets them.
SERVER_FIELDS = frozenset(
    {
        "metadata.uid",
        "metadata.resourceVersion",
        "metadata.generation",
        "metadata.creationTimestamp",
        "metadata.managedFields",
        "metadata.selfLink",
        "metadata.deletionTimestamp",
        "status",
    }
)


@dataclass(frozen=True)
class FieldDiff:
    """One field the blueprint sets whose live value differs (``actual`` None: missing)."""

    path: str
    expected: Any
    actual: Any
    missing: bool = False


def _join(base: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{base}[{key}]"
    return f"{base}.{key}" if base else key


def dotted(path: str) -> str:
    """A JSON pointer (``/spec/replicas``) in the dotted form diffs use (``spec.replicas``);
    dotted paths are returned unchanged. ``*`` and numeric tokens become ``[*]`` / ``[n]``."""
    if not path.startswith("/"):
        return path
    out = ""
    for tok in parse_pointer(path):
        out += f"[{tok}]" if tok.isdigit() or tok == "*" else (f".{tok}" if out else tok)
    return out


@lru_cache(maxsize=4096)
def _ignore_regex(pattern: str) -> re.Pattern[str]:
    """An ignore rule as a regex: ``[*]`` is any list index, ``*`` any key, and a rule also
    covers everything below the field it names."""
    pat = dotted(pattern)
    parts: list[str] = []
    i = 0
    while i < len(pat):
        if pat.startswith("[*]", i):
            parts.append(r"\[\d+\]")
            i += 3
        elif pat[i] == "*":
            parts.append(r"[^.\[\]]*")
            i += 1
        else:
            parts.append(re.escape(pat[i]))
            i += 1
    return re.compile("".join(parts) + r"(?:$|[.\[])")


def _ignored(path: str, ignore: tuple[str, ...]) -> bool:
    return path in SERVER_FIELDS or any(_ignore_regex(pat).match(path) for pat in ignore)


def ignored(path: str, ignore: tuple[str, ...]) -> bool:
    """Whether an ignore rule (or the server-owned field list) covers ``path``."""
    return _ignored(path, ignore)


def keep_ignored_live(desired: Any, live: Any, ignore: tuple[str, ...], base: str = "") -> Any:
    """A copy of ``desired`` in which every field an ignore rule covers carries the live value
    (or is left out when the live object has none).

    What blueprintd applies to an existing object: the fields that belong to someone else by
    declaration (an autoscaler's ``spec.replicas``) must keep the value they have, or a restore
    of one drifted field would reset them. Only on creation is the Blueprint's value used.
    """
    if isinstance(desired, dict):
        out: dict[str, Any] = {}
        for key, value in desired.items():
            path = _join(base, key)
            live_value = live.get(key, _MISSING) if isinstance(live, dict) else _MISSING
            if _user_ignored(path, ignore):
                if live_value is not _MISSING:
                    out[key] = live_value
                continue
            out[key] = keep_ignored_live(value, None if live_value is _MISSING else live_value, ignore, path)
        return out
    if isinstance(desired, list):
        items = live if isinstance(live, list) and len(live) == len(desired) else [None] * len(desired)
        return [keep_ignored_live(v, items[i], ignore, _join(base, i)) for i, v in enumerate(desired)]
    return desired


_MISSING = object()


def _user_ignored(path: str, ignore: tuple[str, ...]) -> bool:
    return any(_ignore_regex(pat).match(path) for pat in ignore)


def drop_nulls(value: Any) -> Any:
    """A copy of ``value`` without the map keys whose value is ``null`` (at any depth): what
    "not set" looks like on the wire. List items are kept as they are (a list's length is its
    content)."""
    if isinstance(value, dict):
        return {k: drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [drop_nulls(v) for v in value]
    return value


def diff_owned(desired: Any, live: Any, ignore: tuple[str, ...] = (), base: str = "") -> list[FieldDiff]:
    """Differences on the fields ``desired`` sets; empty when ``live`` satisfies it.
    A ``null`` in ``desired`` sets nothing, so it never differs."""
    if desired is None or (base and _ignored(base, ignore)):
        return []
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return [FieldDiff(base or ".", desired, live, missing=live is None)]
        out: list[FieldDiff] = []
        for key in sorted(desired):
            path = _join(base, key)
            if desired[key] is None or _ignored(path, ignore):
                continue
            if key not in live:
                if _zero(desired[key]):
                    continue  # the server omits zero values of omitempty fields: absent means the same
                out.append(FieldDiff(path, desired[key], None, missing=True))
                continue
            out.extend(diff_owned(desired[key], live[key], ignore, path))
        return out
    if isinstance(desired, list):
        if not isinstance(live, list) or len(live) != len(desired):
            return [FieldDiff(base, desired, live, missing=live is None)]
        out = []
        for i, item in enumerate(desired):
            out.extend(diff_owned(item, live[i], ignore, _join(base, i)))
        return out
    if _scalar_equal(desired, live):
        return []
    return [FieldDiff(base, desired, live, missing=live is None)]


def _zero(value: Any) -> bool:
    """Go's zero values, which the API server leaves out of ``omitempty`` fields (``value: ""``
    of an env var, ``hostNetwork: false``): a manifest that spells them out is not drift."""
    return value is None or value is False or (type(value) in (int, float) and value == 0) or value in ("", {}, [])


def _scalar_equal(a: Any, b: Any) -> bool:
    if a == b:
        return True
    # YAML authors write numbers where the API stores strings (and the reverse for
    # int-or-string fields); those are the same value to the user.
    if isinstance(a, bool) or isinstance(b, bool):
        return False
    if (isinstance(a, int | float) and isinstance(b, str)) or (isinstance(b, int | float) and isinstance(a, str)):
        return str(a) == str(b) or _same_quantity(a, b)
    if isinstance(a, str) and isinstance(b, str):
        return _same_quantity(a, b)
    return False


_QUANTITY = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+|[numkMGTPE]|[KMGTPE]i)?$")


def _same_quantity(a: Any, b: Any) -> bool:
    """Resource quantities the API server canonicalises (``4096Mi`` is stored as ``4Gi``,
    ``0.5`` CPU as ``500m``) are the same value."""
    sa, sb = str(a), str(b)
    if not (_QUANTITY.match(sa) and _QUANTITY.match(sb)):
        return False
    from kubernetes.utils.quantity import parse_quantity

    try:
        return bool(parse_quantity(sa) == parse_quantity(sb))
    except ValueError:
        return False
