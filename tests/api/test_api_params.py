"""Typed Blueprint parameters: declarations, values, overrides and the untyped form, without a server."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from blueprintd.api.blueprint import BlueprintSpec
from blueprintd.api.checks import check_spec
from blueprintd.api.issues import InvalidInput, json_type
from blueprintd.api.load import load_objects, parse_blueprint, parse_object
from blueprintd.api.params import (
    OverrideError,
    Parameter,
    allowed,
    effective_values,
    override_issues,
    value_problem,
)
from blueprintd.api.revision import BlueprintRevision
from blueprintd.cli.main import app

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT = REPO_ROOT / "blueprints" / "gpu-platform" / "blueprint.yaml"

REPLICAS = Parameter(type="integer", default=4, minimum=1, maximum=64)


def param(**fields: Any) -> Parameter:
    return Parameter.model_validate(fields)


# --- values -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("declared", "value", "problem"),
    [
        (REPLICAS, 4, ""),
        (REPLICAS, 1, ""),
        (REPLICAS, 64, ""),
        (REPLICAS, "many", '"many" is not an integer'),
        (REPLICAS, "4", '"4" is not an integer'),
        (REPLICAS, 4.5, "4.5 is not an integer"),
        (REPLICAS, True, "true is not an integer"),
        (REPLICAS, 0, "0 is below the minimum 1"),
        (REPLICAS, 65, "65 is above the maximum 64"),
        (param(type="number", default=0.5, minimum=0, maximum=1), 1, ""),
        (param(type="number", default=0.5, minimum=0, maximum=1), 1.5, "1.5 is above the maximum 1"),
        (param(type="number", default=0.5), False, "false is not a number"),
        (param(type="number", default=0.5), float("nan"), "NaN is not a number"),
        (param(type="boolean", default=False), 1, "1 is not true or false"),
        (param(type="boolean", default=False), True, ""),
        (param(type="string", default="a"), 4, "4 is not a string"),
        (param(type="string", default="a", enum=["a", "b"]), "c", '"c" is not one of the allowed values'),
        (param(type="string", default="a", enum=["a", "b"]), "b", ""),
        (param(type="integer", default=1, enum=[1, 2, 4]), 3, "3 is not one of the allowed values"),
        (param(type="integer", default=1, enum=[1, 2, 4]), True, "true is not an integer"),
    ],
)
def test_value_problem(declared: Parameter, value: Any, problem: str) -> None:
    assert value_problem(declared, value) == problem


@pytest.mark.parametrize(
    ("declared", "text"),
    [
        (REPLICAS, "an integer from 1 to 64"),
        (param(type="integer", default=1, minimum=0), "an integer of at least 0"),
        (param(type="number", default=1, maximum=2.5), "a number of at most 2.5"),
        (param(type="string", default="a", enum=["a", "b"]), 'string, one of "a", "b"'),
        (param(type="boolean", default=True), "true or false"),
    ],
)
def test_allowed_says_what_is_accepted(declared: Parameter, text: str) -> None:
    assert allowed(declared) == text


def test_inferred_types_put_booleans_before_numbers() -> None:
    assert [json_type(v) for v in (True, 4, 4.5, "x")] == ["boolean", "integer", "number", "string"]


# --- declarations -----------------------------------------------------------------------


def spec_with(**params: Any) -> BlueprintSpec:
    return BlueprintSpec.model_validate({"version": "1.0.0", "parameters": params})


@pytest.mark.parametrize(
    ("declaration", "field", "message", "allowed_text"),
    [
        (
            {"type": "integer", "default": "many", "minimum": 1, "maximum": 64},
            "spec.parameters.p.default",
            "parameter 'p': default \"many\" is not an integer",
            "an integer from 1 to 64",
        ),
        (
            {"type": "integer", "default": 100, "minimum": 1, "maximum": 64},
            "spec.parameters.p.default",
            "parameter 'p': default 100 is above the maximum 64",
            "an integer from 1 to 64",
        ),
        (
            {"type": "integer", "default": 4, "minimum": 8, "maximum": 2},
            "spec.parameters.p.minimum",
            "parameter 'p': minimum 8 is greater than maximum 2",
            "",
        ),
        (
            {"type": "string", "default": "a", "minimum": 1},
            "spec.parameters.p.minimum",
            "parameter 'p': minimum applies only to integer and number parameters",
            "remove it, or declare type integer or number",
        ),
        (
            {"type": "integer", "default": 1, "minimum": 0.5},
            "spec.parameters.p.minimum",
            "parameter 'p': minimum 0.5 is not an integer",
            "an integer",
        ),
        (
            {"type": "boolean", "default": True, "enum": [True]},
            "spec.parameters.p.enum",
            "parameter 'p': enum does not apply to boolean parameters",
            "",
        ),
        (
            {"type": "string", "default": "a", "enum": ["a", 2]},
            "spec.parameters.p.enum[1]",
            "parameter 'p': enum value 2 is not a string",
            "a string",
        ),
        (
            {"type": "string", "default": "a", "enum": ["a", "a"]},
            "spec.parameters.p.enum[1]",
            "parameter 'p': enum value \"a\" is listed twice",
            "",
        ),
        (
            {"type": "string", "default": "c", "enum": ["a", "b"]},
            "spec.parameters.p.default",
            "parameter 'p': default \"c\" is not one of the allowed values",
            'string, one of "a", "b"',
        ),
    ],
)
def test_declaration_problems_name_parameter_value_and_allowed(
    declaration: dict[str, Any], field: str, message: str, allowed_text: str
) -> None:
    (issue,) = check_spec(spec_with(p=declaration))
    assert (issue.field, issue.message, issue.allowed) == (field, message, allowed_text)


def test_unknown_type_is_a_schema_error(small: dict[str, Any]) -> None:
    small["spec"]["parameters"] = {"replicas": {"type": "int", "default": 2}}
    with pytest.raises(InvalidInput) as exc:
        parse_blueprint(small)
    (issue,) = exc.value.issues
    assert issue.field == "spec.parameters.replicas.type"
    assert issue.allowed == "string, integer, number, boolean"


def test_the_default_blueprint_declares_its_parameters() -> None:
    (item,) = load_objects([DEFAULT])
    spec = item.obj.spec  # type: ignore[attr-defined]
    declared = spec.parameters["timeSlicingReplicas"]
    assert (declared.type, declared.default, declared.minimum, declared.maximum) == ("integer", 4, 1, 64)
    assert declared.description
    assert not declared.shorthand


# --- blueprintd validate ----------------------------------------------------------------


def test_validate_refuses_a_bad_default_with_file_line_path_value_and_range(tmp_path: Path) -> None:
    text = DEFAULT.read_text().replace("      default: 4\n", '      default: "many"\n')
    line = text.splitlines().index('      default: "many"') + 1
    path = tmp_path / "blueprint.yaml"
    path.write_text(text)
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 1
    assert result.stdout.strip().splitlines() == [
        f"{path}:{line}: spec.parameters.timeSlicingReplicas.default: parameter 'timeSlicingReplicas': "
        'default "many" is not an integer (allowed: an integer from 1 to 64)'
    ]


def test_validate_refuses_the_untyped_form_and_says_what_to_write(tmp_path: Path) -> None:
    """The incident's commit: a plain value. Inferring a type would have accepted "many"."""
    doc = yaml.safe_load(DEFAULT.read_text())
    doc["spec"]["parameters"] = {"timeSlicingReplicas": "many"}
    path = tmp_path / "blueprint.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    with pytest.raises(InvalidInput) as exc:
        load_objects([path])
    (issue,) = exc.value.issues
    assert issue.field == "spec.parameters.timeSlicingReplicas"
    assert issue.line is not None and issue.source == str(path)
    assert "has a plain value without a declared type" in issue.message
    assert 'declare it as {type: string, default: "many"}' in issue.message


def test_member_override_is_checked_against_blueprints_that_select_it(tmp_path: Path) -> None:
    members = tmp_path / "members.yaml"
    members.write_text(
        "apiVersion: blueprintd.io/v1alpha1\n"
        "kind: MemberCluster\n"
        "metadata: {name: eu, labels: {env: prod}}\n"
        "spec:\n"
        "  kubeconfigSecretRef: {name: eu}\n"
        "  parameters:\n"
        "    timeSlicingReplicas: 100\n"
        "---\n"
        "apiVersion: blueprintd.io/v1alpha1\n"
        "kind: MemberCluster\n"
        "metadata: {name: lab, labels: {blueprintd.io/gpu-platform: disabled}}\n"
        "spec:\n"
        "  kubeconfigSecretRef: {name: lab}\n"
        "  parameters:\n"
        "    timeSlicingReplicas: 100\n"  # not selected by gpu-platform: nothing to check it against
    )
    with pytest.raises(InvalidInput) as exc:
        load_objects([DEFAULT, members])
    (issue,) = exc.value.issues
    assert (issue.source, issue.line, issue.field) == (str(members), 7, "spec.parameters.timeSlicingReplicas")
    assert issue.message == "parameter 'timeSlicingReplicas' of Blueprint 'gpu-platform': 100 is above the maximum 64"
    assert issue.allowed == "an integer from 1 to 64"


def test_override_issues_for_undeclared_names() -> None:
    (issue,) = override_issues({"a": REPLICAS}, {"b": 1}, ("spec", "parameters"), "bp")
    assert issue.field == "spec.parameters.b"
    assert "not declared by Blueprint 'bp'" in issue.message and issue.allowed == "a"


# --- overrides at render ----------------------------------------------------------------


def test_effective_values_take_overrides_within_bounds() -> None:
    declared = {"r": REPLICAS, "mode": param(type="string", default="fast", enum=["fast", "safe"])}
    assert effective_values(declared, {}) == {"r": 4, "mode": "fast"}
    assert effective_values(declared, {"r": 8}) == {"r": 8, "mode": "fast"}


def test_effective_values_refuse_every_bad_override_at_once() -> None:
    declared = {"r": REPLICAS, "mode": param(type="string", default="fast", enum=["fast", "safe"])}
    with pytest.raises(OverrideError) as exc:
        effective_values(declared, {"r": "many", "mode": "turbo", "x": 1}, "gpu-platform")
    assert str(exc.value) == (
        "parameter 'mode' of Blueprint 'gpu-platform': cluster override \"turbo\" is not one of the allowed "
        'values (allowed: string, one of "fast", "safe"); '
        "parameter 'r' of Blueprint 'gpu-platform': cluster override \"many\" is not an integer "
        "(allowed: an integer from 1 to 64); "
        "parameter 'x' is not declared by Blueprint 'gpu-platform' (declared: mode, r)"
    )


# --- the untyped form: stored content keeps working -------------------------------------


def test_untyped_form_reads_as_inferred_declaration_and_keeps_wire_form_and_hash() -> None:
    spec = spec_with(replicas=4, ratio=0.5, name="x", on=True)
    assert {n: (p.type, p.default, p.shorthand) for n, p in spec.parameters.items()} == {
        "replicas": ("integer", 4, True),
        "ratio": ("number", 0.5, True),
        "name": ("string", "x", True),
        "on": ("boolean", True, True),
    }
    assert spec.to_wire()["parameters"] == {"replicas": 4, "ratio": 0.5, "name": "x", "on": True}
    # the hash the operator recorded for content written before types existed
    legacy = {"version": "1.0.0", "parameters": {"replicas": 4}}
    assert spec_with(replicas=4).content_hash() == BlueprintSpec.model_validate(legacy).content_hash()
    assert spec_with(replicas=4).model_copy(deep=True).to_wire()["parameters"] == {"replicas": 4}
    typed = spec_with(replicas={"type": "integer", "default": 4})
    assert typed.content_hash() != spec_with(replicas=4).content_hash()
    assert check_spec(spec) == []  # an inferred type always fits its value


def test_published_revisions_with_untyped_parameters_still_load(small: dict[str, Any]) -> None:
    legacy = copy.deepcopy(small["spec"])
    legacy["parameters"] = {"replicas": 2}
    rev = parse_object(
        {
            "apiVersion": "blueprintd.io/v1alpha1",
            "kind": "BlueprintRevision",
            "metadata": {"name": "small-v1.0.0"},
            "spec": {"blueprint": "small", "version": "1.0.0", "contentHash": "sha256:0", "spec": legacy},
        }
    )
    assert isinstance(rev, BlueprintRevision)
    assert rev.spec.spec.parameters["replicas"].default == 2


def test_parameter_count_is_bounded_like_the_crd(small: dict[str, Any]) -> None:
    small["spec"]["parameters"] = {f"p{i}": {"type": "integer", "default": i} for i in range(129)}
    with pytest.raises(InvalidInput) as exc:
        parse_blueprint(small)
    (issue,) = exc.value.issues
    assert (issue.field, issue.message) == ("spec.parameters", "129 parameters declared; at most 128 are allowed")
