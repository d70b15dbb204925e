"""Merge patch, JSON patch and the write log that turns overlaps into errors."""

from __future__ import annotations

from typing import Any

import pytest

from blueprintd.errors import RenderError
from blueprintd.render.patching import DELETE, PatchFailed, WriteLog, Writer, flatten_merge, json_patch, merge_patch


def test_merge_patch_rfc7386() -> None:
    target: dict[str, Any] = {"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]}
    patch = {"a": "z", "c": {"f": None}, "l": [3], "n": {"m": 1}}
    assert merge_patch(target, patch) == {"a": "z", "c": {"d": "e"}, "l": [3], "n": {"m": 1}}


def test_merge_patch_copies_inserted_values() -> None:
    patch = {"x": {"y": [1]}}
    out = merge_patch({}, patch)
    out["x"]["y"].append(2)
    assert patch == {"x": {"y": [1]}}


def test_flatten_merge_lists_leaves() -> None:
    assert flatten_merge({"a": {"b": 1, "c": None}, "d": [1], "e": {}}) == [
        (("a", "b"), 1),
        (("a", "c"), DELETE),
        (("d",), [1]),
    ]


def test_json_patch_reports_writes_outside_lists() -> None:
    doc = {"a": {"b": 1}, "l": [1]}
    out, writes = json_patch(
        doc, [{"op": "replace", "path": "/a/b", "value": 2}, {"op": "add", "path": "/l/-", "value": 5}]
    )
    assert out == {"a": {"b": 2}, "l": [1, 5]}
    assert writes == [(("a", "b"), 2)]


@pytest.mark.parametrize(
    ("op", "message"),
    [
        ({"op": "remove", "path": "/a/x"}, "path /a/x does not exist: /a has no field 'x'"),
        ({"op": "replace", "path": "/l/3", "value": 1}, "path /l/3 does not exist: /l is a list of 1 items"),
        ({"op": "add", "path": "/a/b/c", "value": 1}, "the parent is 1, not an object or list"),
        ({"op": "move", "from": "/a", "path": "/a/b"}, "cannot move /a into its own child /a/b"),
    ],
)
def test_json_patch_errors_are_readable(op: dict[str, Any], message: str) -> None:
    with pytest.raises(PatchFailed, match=message):
        json_patch({"a": {"b": 1}, "l": [1]}, [op])


def test_write_log_allows_same_value_and_same_writer() -> None:
    log = WriteLog()
    log.record("doc", ("a", "b"), 1, Writer("x"))
    log.record("doc", ("a", "b"), 1, Writer("y"))
    log.record("doc", ("a", "b"), 2, Writer("y", None))  # y overrides itself: its own intent
    with pytest.raises(RenderError, match="overlay 'y' and overlay 'z' both set doc /a/b"):
        log.record("doc", ("a", "b"), 3, Writer("z"))


def test_write_log_type_exact_comparison() -> None:
    log = WriteLog()
    log.record("doc", ("a",), 1, Writer("x"))
    with pytest.raises(RenderError):
        log.record("doc", ("a",), True, Writer("y"))


def test_write_log_catches_parent_and_child_overlaps() -> None:
    log = WriteLog()
    log.record("doc", ("a", "b"), 1, Writer("x"))
    log.record("doc", ("a", "c"), 1, Writer("y"))
    with pytest.raises(RenderError, match="overlay 'x' and overlay 'z'"):
        log.record("doc", ("a",), "flat", Writer("z"))
    other = WriteLog()
    other.record("doc", ("a",), DELETE, Writer("x"))
    with pytest.raises(RenderError, match="/a"):
        other.record("doc", ("a", "b"), 1, Writer("y"))
    separate = WriteLog()
    separate.record("one", ("a",), 1, Writer("x"))
    separate.record("two", ("a",), 2, Writer("y"))
