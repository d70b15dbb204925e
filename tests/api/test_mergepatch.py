"""Merge patches computed from two states (RFC 7386): removed keys become null, equal values nothing."""

from __future__ import annotations

from blueprintd.api.mergepatch import apply_merge_patch, merge_patch


def test_a_removed_map_key_is_written_as_null() -> None:
    old = {"rollout": {"assignments": {"a": "1", "ghost": "1"}, "phase": "Complete"}}
    new = {"rollout": {"assignments": {"a": "1"}, "phase": "Complete"}}
    patch = merge_patch(old, new, ["rollout"])
    assert patch == {"rollout": {"assignments": {"ghost": None}}}
    assert apply_merge_patch(old, patch) == new


def test_equal_states_give_an_empty_patch_and_unlisted_keys_are_never_touched() -> None:
    old = {"a": [1, {"b": 2}], "drift": {"open": 3}}
    assert merge_patch(old, {"a": [1, {"b": 2}]}, ["a"]) == {}
    assert merge_patch(old, {}, ["a"]) == {"a": None}


def test_lists_are_replaced_whole() -> None:
    old = {"blueprints": [{"blueprint": "x"}, {"blueprint": "y"}]}
    patch = merge_patch(old, {"blueprints": [{"blueprint": "x"}]}, ["blueprints"])
    assert patch == {"blueprints": [{"blueprint": "x"}]}


def test_a_new_nested_object_is_sent_whole() -> None:
    assert merge_patch({}, {"rollout": {"wave": 0}}, ["rollout"]) == {"rollout": {"wave": 0}}
    assert apply_merge_patch({}, {"rollout": {"wave": 0}}) == {"rollout": {"wave": 0}}
