"""Size limits: what a Blueprint may hold, each refused with its field path and the limit."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from blueprintd.api.blueprint import BlueprintSpec
from blueprintd.api.issues import InvalidInput, Issue
from blueprintd.api.limits import DEFAULT_LIMITS, BlueprintLimits, check_limits
from blueprintd.api.load import parse_blueprint


def limit_issues(data: dict[str, Any], limits: BlueprintLimits = DEFAULT_LIMITS) -> list[Issue]:
    return check_limits(BlueprintSpec.model_validate(data["spec"]), ("spec",), limits)


def test_small_blueprint_is_within_every_limit(small: dict[str, Any]) -> None:
    assert limit_issues(small) == []


def test_values_bytes(small: dict[str, Any]) -> None:
    values = small["spec"]["addons"][0]["helm"]["values"]
    values["blob"] = ["x" * 1000] * 600  # 600 kB, each string short
    (issue,) = limit_issues(small)
    assert issue.field == "spec.addons[0].helm.values"
    assert issue.message.startswith("Too long: ") and f"limit of {DEFAULT_LIMITS.values_bytes}" in issue.message
    assert limit_issues(small, BlueprintLimits(values_bytes=2 * 1024 * 1024)) == []


def test_overlay_patch_bytes(small: dict[str, Any]) -> None:
    small["spec"]["overlays"][0]["patches"][0]["values"] = {"blob": ["y" * 1000] * 600}
    fields = [i.field for i in limit_issues(small)]
    assert fields == ["spec.overlays[0].patches[0]"]


def test_string_length_names_the_string(small: dict[str, Any]) -> None:
    small["spec"]["addons"][1]["manifests"][0]["data"]["big"] = "z" * (DEFAULT_LIMITS.string_bytes + 1)
    (issue,) = limit_issues(small)
    assert issue.field == "spec.addons[1].manifests[0].data.big"
    assert f"may not be more than {DEFAULT_LIMITS.string_bytes} characters" in issue.message


def test_templated_expression_length(small: dict[str, Any]) -> None:
    expr = " || ".join(["pool.gpuCount > 0"] * 300)  # about 6 kB of CEL
    small["spec"]["overlays"][0]["patches"][0]["values"] = {"flag": f"${{ {expr} }}"}
    (issue,) = limit_issues(small)
    assert issue.field == "spec.overlays[0].patches[0].values.flag"
    assert "templated CEL expression may not be more than 4096 characters" in issue.message


def test_nesting_depth(small: dict[str, Any]) -> None:
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(100):
        node["a"] = {}
        node = node["a"]
    small["spec"]["addons"][0]["helm"]["values"]["deep"] = deep
    (issue,) = limit_issues(small)
    assert issue.message == f"Too deep: nested more than {DEFAULT_LIMITS.depth} levels of maps and lists"
    assert issue.field.startswith("spec.addons[0].helm.values.deep.a.a")


def test_manifest_count_counts_all_add_ons(small: dict[str, Any]) -> None:
    cm = small["spec"]["addons"][1]["manifests"][0]
    small["spec"]["addons"][1]["manifests"] = [
        {**copy.deepcopy(cm), "metadata": {"name": f"cm-{i}"}} for i in range(12)
    ]
    (issue,) = limit_issues(small, BlueprintLimits(manifests=10))
    assert issue.field == "spec.addons"
    assert issue.message.startswith("Too many: 12 manifests") and "at most 10" in issue.message


def test_addon_and_overlay_counts_can_be_lowered(small: dict[str, Any]) -> None:
    found = limit_issues(small, BlueprintLimits(addons=1, overlays=0))
    assert [(i.field, i.message) for i in found] == [
        ("spec.addons", "Too many: 2: must have at most 1 add-ons"),
        ("spec.overlays", "Too many: 1: must have at most 0 overlays"),
    ]


def test_whole_spec_bytes(small: dict[str, Any]) -> None:
    for i in range(5):
        small["spec"]["addons"][0]["helm"]["values"][f"part{i}"] = ["p" * 1000] * 100
    (issue,) = limit_issues(small, BlueprintLimits(spec_bytes=300_000))
    assert issue.field == "spec"
    assert "more than the limit of 300000" in issue.message


def test_limits_are_part_of_validation(small: dict[str, Any]) -> None:
    """``blueprintd validate``, the operator and GitSource all validate through the loader."""
    small["spec"]["addons"][0]["helm"]["values"]["blob"] = ["x" * 1000] * 600
    with pytest.raises(InvalidInput) as info:
        parse_blueprint(small, source="bp.yaml")
    assert [i.field for i in info.value.issues] == ["spec.addons[0].helm.values"]
