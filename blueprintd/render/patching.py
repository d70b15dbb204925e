"""Applying overlay patches, and refusing two overlays that disagree.

JSON merge patch (RFC 7386) and JSON patch (RFC 6902) are applied here with our own small
implementation, for two reasons: errors must say which overlay, add-on and path failed in
words a user understands, and every write is recorded in a ``WriteLog`` so that two
overlays setting the same field to different values is an error naming both, instead of
the silent last-one-wins of plain patch application. Writes of equal values by several
overlays (two MIG pools adding the same mig-parted entry) are fine.

All functions are pure apart from mutating the document they are given; inserted values
are copied, so compiled patches are never aliased into rendered output.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from blueprintd.api.pointer import format_pointer, parse_pointer
from blueprintd.errors import RenderError

DELETE = object()  # a write that removes a field


def copy_json(value: Any) -> Any:
    """Deep copy of JSON-like data (much faster than ``copy.deepcopy``)."""
    if isinstance(value, dict):
        return {k: copy_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [copy_json(v) for v in value]
    return value


def same_json(a: Any, b: Any) -> bool:
    """Equality that tells ``1``, ``1.0`` and ``true`` apart, as YAML users would."""
    if a is DELETE or b is DELETE:
        return a is b
    if type(a) is not type(b):
        return False
    if isinstance(a, dict | list):
        return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    return bool(a == b)


def show(value: Any) -> str:
    if value is DELETE:
        return "(deleted)"
    text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    return text if len(text) <= 80 else text[:77] + "..."


@dataclass(frozen=True)
class Writer:
    """Who made a write: an overlay, for one pool when it has nodePool scope."""

    overlay: str
    pool: str | None = None

    def __str__(self) -> str:
        return f"overlay {self.overlay!r}" + (f" (pool {self.pool})" if self.pool else "")


@dataclass
class WriteLog:
    """Every field overlays set, per document, to detect conflicting writes."""

    leaves: dict[tuple[str, tuple[str, ...]], tuple[Writer, Any]] = field(default_factory=dict)
    below: dict[tuple[str, tuple[str, ...]], dict[Writer, tuple[tuple[str, ...], Any]]] = field(default_factory=dict)

    def record(self, doc: str, path: tuple[str, ...], value: Any, writer: Writer) -> None:
        """Record that ``writer`` set ``path`` of ``doc`` (a label like 'add-on x values') to ``value``."""
        here = (doc, path)
        previous = self.leaves.get(here)
        if previous is not None and previous[0] != writer and not same_json(previous[1], value):
            self._conflict(doc, path, previous[0], previous[1], writer, value)
        for cut in range(len(path)):
            ancestor = self.leaves.get((doc, path[:cut]))
            if ancestor is not None and ancestor[0] != writer:
                self._conflict(doc, path[:cut], ancestor[0], ancestor[1], writer, f"a value inside it at {path}")
        for other, (child_path, child_value) in self.below.get(here, {}).items():
            if other != writer:
                self._conflict(doc, child_path, other, child_value, writer, value)
        self.leaves[here] = (writer, value)
        for cut in range(len(path)):
            self.below.setdefault((doc, path[:cut]), {}).setdefault(writer, (path, value))

    @staticmethod
    def _conflict(doc: str, path: tuple[str, ...], first: Writer, a: Any, second: Writer, b: Any) -> None:
        where = format_pointer(list(path)) or "/"
        shown_b = b if isinstance(b, str) and b.startswith("a value inside") else show(b)
        raise RenderError(
            f"{first} and {second} both set {doc} {where} to different values ({show(a)} vs {shown_b}); "
            "overlays must not override each other: make their conditions exclusive "
            "or set the field in one overlay"
        )


def flatten_merge(patch: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """The fields a merge patch sets: ``(path, value)``, ``DELETE`` for null, objects descended into."""
    out: list[tuple[tuple[str, ...], Any]] = []
    for key, value in patch.items():
        path = (*prefix, str(key))
        if isinstance(value, dict):
            if value:
                out.extend(flatten_merge(value, path))
        else:
            out.append((path, DELETE if value is None else value))
    return out


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch; returns the new value (``target`` dicts are updated in place)."""
    if not isinstance(patch, dict):
        return copy_json(patch)
    if not isinstance(target, dict):
        target = {}
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict):
            target[key] = merge_patch(target.get(key), value)
        else:
            target[key] = copy_json(value)
    return target


class PatchFailed(Exception):
    """A JSON patch operation cannot be applied; the message says why in user terms."""


def _parent(doc: Any, tokens: list[str], pointer: str) -> tuple[Any, str]:
    node = doc
    walked: list[str] = []
    for token in tokens[:-1]:
        node = _child(node, token, walked, pointer)
        walked.append(token)
    return node, tokens[-1]


def _child(node: Any, token: str, walked: list[str], pointer: str) -> Any:
    where = format_pointer(walked) or "the document root"
    if isinstance(node, dict):
        if token not in node:
            raise PatchFailed(f"path {pointer} does not exist: {where} has no field {token!r}")
        return node[token]
    if isinstance(node, list):
        if not token.isdigit() or int(token) >= len(node):
            raise PatchFailed(f"path {pointer} does not exist: {where} is a list of {len(node)} items")
        return node[int(token)]
    raise PatchFailed(f"path {pointer} does not exist: {where} is {show(node)}, not an object or list")


def _get(doc: Any, pointer: str) -> Any:
    node = doc
    walked: list[str] = []
    for token in parse_pointer(pointer):
        node = _child(node, token, walked, pointer)
        walked.append(token)
    return node


def _add(doc: Any, pointer: str, value: Any) -> Any:
    tokens = parse_pointer(pointer)
    if not tokens:
        return copy_json(value)
    parent, last = _parent(doc, tokens, pointer)
    if isinstance(parent, dict):
        parent[last] = copy_json(value)
    elif isinstance(parent, list):
        if last == "-":
            parent.append(copy_json(value))
        elif last.isdigit() and int(last) <= len(parent):
            parent.insert(int(last), copy_json(value))
        else:
            raise PatchFailed(f"path {pointer}: index {last!r} is outside a list of {len(parent)} items")
    else:
        raise PatchFailed(f"path {pointer}: the parent is {show(parent)}, not an object or list")
    return doc


def _remove(doc: Any, pointer: str) -> tuple[Any, Any]:
    tokens = parse_pointer(pointer)
    if not tokens:
        raise PatchFailed("cannot remove the whole document")
    parent, last = _parent(doc, tokens, pointer)
    old = _child(parent, last, [*tokens[:-1]], pointer)
    if isinstance(parent, dict):
        del parent[last]
    else:
        del parent[int(last)]
    return doc, old


def json_patch(doc: Any, ops: list[dict[str, Any]]) -> tuple[Any, list[tuple[tuple[str, ...], Any]]]:
    """Apply RFC 6902 ``ops`` to ``doc``; returns the new document and the writes made.

    Writes into lists (appends, inserts) are not reported: their order is defined by overlay
    precedence, and two overlays appending to the same list do not conflict.
    """
    writes: list[tuple[tuple[str, ...], Any]] = []
    for op in ops:
        name = op["op"]
        pointer = op["path"]
        tokens = tuple(parse_pointer(pointer))
        try:
            if name == "add":
                in_list = _in_list(doc, tokens)
                doc = _add(doc, pointer, op["value"])
                if not in_list:
                    writes.extend(_leaf_writes(tokens, op["value"]))
            elif name == "remove":
                in_list = _in_list(doc, tokens)
                doc, _ = _remove(doc, pointer)
                if not in_list:
                    writes.append((tokens, DELETE))
            elif name == "replace":
                in_list = _in_list(doc, tokens)
                _get(doc, pointer)
                doc, _ = _remove(doc, pointer) if tokens else (doc, None)
                doc = _add(doc, pointer, op["value"])
                if not in_list:
                    writes.extend(_leaf_writes(tokens, op["value"]))
            elif name in ("move", "copy"):
                source = op["from"]
                value = copy_json(_get(doc, source))
                if name == "move":
                    if pointer.startswith(source + "/"):
                        raise PatchFailed(f"cannot move {source} into its own child {pointer}")
                    doc, _ = _remove(doc, source)
                    writes.append((tuple(parse_pointer(source)), DELETE))
                doc = _add(doc, pointer, value)
                if not _in_list(doc, tokens):
                    writes.extend(_leaf_writes(tokens, value))
            elif name == "test":
                actual = _get(doc, pointer)
                if not same_json(actual, op["value"]):
                    raise PatchFailed(f"test failed: {pointer} is {show(actual)}, not {show(op['value'])}")
            else:
                raise PatchFailed(f"unknown op {name!r}")
        except PatchFailed as exc:
            raise PatchFailed(f"op {name} {pointer}: {exc}") from None
    return doc, writes


def _in_list(doc: Any, tokens: tuple[str, ...]) -> bool:
    """Whether the last token of ``tokens`` addresses a list item."""
    node = doc
    for token in tokens[:-1]:
        if isinstance(node, dict) and token in node:
            node = node[token]
        else:
            return bool(isinstance(node, list) and token.isdigit() and int(token) < len(node))
    return isinstance(node, list)


def _leaf_writes(path: tuple[str, ...], value: Any) -> list[tuple[tuple[str, ...], Any]]:
    if isinstance(value, dict) and value:
        return flatten_merge(value, path)
    return [(path, value)]
