"""Parameters at render: per-cluster overrides within the declaration, and template results that fit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from render_helpers import H100, L4, blueprint, facts, pool
from typer.testing import CliRunner

from blueprintd.api.blueprint import Blueprint
from blueprintd.cli.main import app
from blueprintd.errors import RenderError
from blueprintd.render import RenderOptions, render
from blueprintd.render.template_types import (
    fits,
    label_value_problem,
    manifest_expectation,
    patch_field_expectation,
    target_problem,
)

MODE = {"mode": {"type": "string", "default": "fast", "enum": ["fast", "safe"]}}


def ts_replicas(state: Any, pool_name: str) -> Any:
    helm = state.step("gpu-operator").helm
    assert helm is not None
    return yaml.safe_load(helm.values["devicePlugin"]["config"]["data"][f"ts-{pool_name}"])["sharing"]["timeSlicing"][
        "resources"
    ][0]["replicas"]


# --- MemberCluster overrides -------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "problem"),
    [
        ("many", 'cluster override "many" is not an integer'),
        (0, "cluster override 0 is below the minimum 1"),
        (65, "cluster override 65 is above the maximum 64"),
        (4.5, "cluster override 4.5 is not an integer"),
    ],
)
def test_bad_override_fails_only_that_cluster(default_blueprint: Blueprint, override: Any, problem: str) -> None:
    l4 = facts(pool("l4", L4, 2), cluster="bad")
    with pytest.raises(RenderError) as exc:
        render(default_blueprint, l4, RenderOptions(parameters={"timeSlicingReplicas": override}))
    assert str(exc.value) == (
        f"parameter 'timeSlicingReplicas' of Blueprint 'gpu-platform': {problem} (allowed: an integer from 1 to 64)"
    )
    # the same Blueprint renders for every other cluster: with its own valid override, or the default
    eight = RenderOptions(parameters={"timeSlicingReplicas": 8})
    good = render(default_blueprint, facts(pool("l4", L4, 2), cluster="good"), eight)
    plain = render(default_blueprint, facts(pool("l4", L4, 2), cluster="plain"))
    assert (ts_replicas(good, "l4"), ts_replicas(plain, "l4")) == (8, 4)


def test_overrides_are_checked_even_when_no_overlay_reads_them(default_blueprint: Blueprint) -> None:
    """A CPU-only cluster never renders the time-slicing overlay; its bad value is still refused."""
    with pytest.raises(RenderError, match="is not an integer"):
        render(default_blueprint, facts(pool("cpu")), RenderOptions(parameters={"timeSlicingReplicas": "many"}))


def test_enum_override() -> None:
    bp = blueprint([{"name": "m", "patches": [{"addon": "op", "values": {"config": {"mode": "${ params.mode }"}}}]}],
                   parameters=MODE)
    safe = render(bp, facts(), RenderOptions(parameters={"mode": "safe"})).step("op").helm
    assert safe is not None and safe.values["config"]["mode"] == "safe"
    with pytest.raises(RenderError, match='"turbo" is not one of the allowed values \\(allowed: string, one of "fast"'):
        render(bp, facts(), RenderOptions(parameters={"mode": "turbo"}))


# --- template results that do not fit their target ---------------------------------------


def test_template_of_the_wrong_type_for_an_existing_value_is_refused_with_both_paths() -> None:
    bp = blueprint(
        [{"name": "fast", "patches": [{"addon": "op", "values": {"replicas": "${ params.mode }"}}]}],
        parameters=MODE,
    )
    with pytest.raises(RenderError) as exc:
        render(bp, facts())
    assert str(exc.value) == (
        "overlay 'fast': template '${ params.mode }' at spec.overlays[0].patches[0].values.replicas gave \"fast\" "
        "(a string): add-on op values /replicas: the field holds an integer (1)"
    )


def test_pool_scope_template_names_the_pool_and_the_templated_key() -> None:
    bp = blueprint(
        [
            {
                "name": "per-pool",
                "scope": "nodePool",
                "when": "pool.gpuCount > 0",
                "patches": [{"addon": "op", "values": {"config": {"mode": "${ pool.gpuCount }"}}}],
            }
        ]
    )
    with pytest.raises(RenderError) as exc:
        render(bp, facts(pool("h100", H100, 8)))
    assert str(exc.value) == (
        "overlay 'per-pool' (pool h100): template '${ pool.gpuCount }' at "
        "spec.overlays[0].patches[0].values.config.mode gave 8 (an integer): add-on op values /config/mode: "
        "the field holds a string (\"default\")"
    )


def test_json_patch_value_and_manifest_fields_are_checked() -> None:
    replace = blueprint(
        [{"name": "r", "patches": [{"addon": "op", "valuesJsonPatch": [
            {"op": "replace", "path": "/config/list", "value": "${ 'one' }"}]}]}]
    )
    with pytest.raises(RenderError, match=r"spec.overlays\[0\].patches\[0\].valuesJsonPatch\[0\].value gave \"one\" "
                       r"\(a string\): add-on op values /config/list: the field holds a list$"):
        render(replace, facts())
    label = blueprint(
        [{"name": "l", "patches": [{"addon": "objs", "target": {"kind": "Namespace", "name": "team"},
                                     "mergePatch": {"metadata": {"labels": {"gpus": "${ 8 }"}}}}]}]
    )
    with pytest.raises(RenderError, match=r"metadata.labels.gpus gave 8 \(an integer\): add-on objs Namespace/team "
                       r"/metadata/labels/gpus: Kubernetes takes a string there"):
        render(label, facts())


def test_node_label_template_must_give_text() -> None:
    bp = blueprint(
        [{"name": "lbl", "scope": "nodePool", "nodeLabels": {"example.com/filter": "${ pool.migDeviceFilter }"}}]
    )
    with pytest.raises(RenderError) as exc:
        render(bp, facts(pool("h100", H100, 8, mig=True)))
    assert str(exc.value).startswith(
        "overlay 'lbl' (pool h100): template '${ pool.migDeviceFilter }' at "
        "spec.overlays[0].nodeLabels['example.com/filter'] gave ["
    )
    assert str(exc.value).endswith("a node label value is text (a string, number or boolean), not a list")


def test_fitting_templates_render() -> None:
    bp = blueprint(
        [
            {
                "name": "ok",
                "scope": "nodePool",
                "when": "pool.gpuCount > 0",
                "nodeLabels": {"example.com/gpus": "${ pool.gpuCount }"},  # a number is written as text
                "patches": [
                    {"addon": "op", "values": {"replicas": "${ pool.gpuCount }",  # integer into integer
                                               "config": {"${ pool.name }": "${ [pool.gpuCount] }"}}},  # new key
                ],
            }
        ]
    )
    state = render(bp, facts(pool("l4", L4, 2)))
    values = state.step("op").helm.values  # type: ignore[union-attr]
    assert values["replicas"] == 2 and values["config"]["l4"] == [2]
    assert state.node_labels[0].labels == {"example.com/gpus": "2"}


# --- the rules, as pure functions --------------------------------------------------------


@pytest.mark.parametrize(
    ("expected", "value", "ok"),
    [
        ("integer", 1, True),
        ("integer", 1.5, False),
        ("integer", True, False),
        ("number", 1, True),
        ("number", 0.5, True),
        ("string", 4, False),
        ("boolean", "true", False),
        ("object", {}, True),
        ("object", [], False),
        ("array", [1], True),
        ("null", "anything", True),
        ("string", None, True),
    ],
)
def test_fits(expected: str, value: Any, ok: bool) -> None:
    assert fits(expected, value) is ok


def test_names_in_a_patch_are_strings() -> None:
    assert patch_field_expectation(("addon",)) == "string"
    assert patch_field_expectation(("target", "name")) == "string"
    assert patch_field_expectation(("jsonPatch", 0, "path")) == "string"
    assert patch_field_expectation(("jsonPatch", 0, "value")) == ""
    assert patch_field_expectation(("values", "addon")) == ""  # a Helm value that happens to be called addon


def test_kubernetes_metadata_types() -> None:
    assert manifest_expectation(["metadata", "name"]) == "string"
    assert manifest_expectation(["metadata", "annotations", "a"]) == "string"
    assert manifest_expectation(["spec", "replicas"]) == ""
    assert target_problem({"metadata": {}}, ["metadata", "labels", "x"], 3, manifest=True)
    assert target_problem({"metadata": {}}, ["metadata", "labels", "x"], 3, manifest=False) == ""
    assert target_problem({"a": [1, 2]}, ["a", "1"], "x", manifest=False) == "the field holds an integer (2)"
    assert target_problem({"a": None}, ["a"], "x", manifest=False) == ""


def test_label_values() -> None:
    assert label_value_problem("x") == label_value_problem(2) == label_value_problem(True) == ""
    assert label_value_problem({"a": 1}).endswith("not an object")


def test_render_cli_takes_string_parameters_as_typed(tmp_path: Path) -> None:
    """``-p flag=true`` sets the string "true" for a string parameter, not a boolean it would refuse."""
    doc = {
        "apiVersion": "blueprintd.io/v1alpha1",
        "kind": "Blueprint",
        "metadata": {"name": "t"},
        "spec": {
            "version": "1.0.0",
            "parameters": {"flag": {"type": "string", "default": "false"}, "n": {"type": "integer", "default": 1}},
        },
    }
    bp = tmp_path / "bp.yaml"
    bp.write_text(yaml.safe_dump(doc))
    cluster = tmp_path / "facts.yaml"
    cluster.write_text("cluster: c1\npools: []\n")
    base = ["render", str(bp), "-f", str(cluster)]
    result = CliRunner().invoke(app, [*base, "-o", "json", "-p", "flag=true", "-p", "n=3"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["parameters"] == {"flag": "true", "n": 3}
    bad = CliRunner().invoke(app, [*base, "-p", "n=three"])
    assert bad.exit_code == 1
    assert "parameter 'n' of Blueprint 't': cluster override \"three\" is not an integer" in bad.stderr
