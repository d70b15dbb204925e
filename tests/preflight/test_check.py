"""The pure part of the chart pre-flight: what is checked once, and how Helm's answer is read."""

from __future__ import annotations

from pathlib import Path

import pytest

from blueprintd.api.facts import ClusterFacts
from blueprintd.api.load import load_blueprints, load_model_file
from blueprintd.preflight.check import (
    PreflightReport,
    Problem,
    plan_checks,
    template_problems,
    undefined_keys,
    unknown_key_problems,
    values_hash,
)
from blueprintd.preflight.run import render_states

REPO_ROOT = Path(__file__).resolve().parents[2]
FACTS = REPO_ROOT / "examples" / "facts"


def example(name: str) -> ClusterFacts:
    return load_model_file(FACTS / f"{name}.yaml", ClusterFacts)


# --- unknown keys ------------------------------------------------------------------------------


def test_a_typo_is_an_undefined_key_with_its_full_path() -> None:
    defaults = {"driver": {"enabled": True, "version": "580"}, "mig": {"strategy": "single"}}
    values = {"driver": {"enabeld": False, "version": "570"}, "mig": {"strategy": "mixed"}, "migg": {}}
    assert undefined_keys(values, defaults) == ["driver.enabeld", "migg"]


def test_free_form_maps_null_and_scalar_defaults_accept_any_key() -> None:
    defaults = {"nodeSelector": {}, "data": None, "image": "x", "tolerations": []}
    values = {
        "nodeSelector": {"nvidia.com/gpu.present": "true"},
        "data": {"any": "v1"},
        "image": {"repository": "r"},
        "tolerations": [{"key": "k", "anything": 1}],
    }
    assert undefined_keys(values, defaults) == []


def test_label_maps_and_kubernetes_free_form_fields_accept_any_key() -> None:
    defaults = {
        "nodeSelector": {"nvidia.com/gpu.present": "true"},
        "resources": {"requests": {"cpu": "50m"}},
        "extra": {"app.kubernetes.io/name": "x"},
        "deviceClasses": {"create": True},
    }
    values = {
        "nodeSelector": {"nvidia.com/dra-kubelet-plugin": "true"},
        "resources": {"limits": {"cpu": "1"}},
        "extra": {"team": "a"},
        "deviceClasses": {"craete": True},
    }
    assert undefined_keys(values, defaults) == ["deviceClasses.craete"]


def test_unknown_key_problems_name_the_chart_and_path() -> None:
    (p,) = unknown_key_problems({"serviceMonitor": {"enable": True}}, {"serviceMonitor": {"enabled": False}}, "dcgm")
    assert p.kind == "unknown-key" and p.path == "serviceMonitor.enable"
    assert "chart dcgm does not define serviceMonitor.enable" in p.message


# --- reading helm's answer -----------------------------------------------------------------------

SCHEMA_ERR_NEW = """Error: values don't meet the specifications of the schema(s) in the following chart(s):
kata-deploy:
- at '/shims': validation failed
  - at '/shims/disableAll': got boolean, want object
- at '/runtimeClasses': additional properties 'createDefualt' not allowed
"""

SCHEMA_ERR_OLD = """Error: values don't meet the specifications of the schema(s) in the following chart(s):
kata-deploy:
- shims.disableAll: Invalid type. Expected: object, given: boolean
"""

TEMPLATE_ERR = (
    "Error: template: kata-deploy/templates/runtimeclasses.yaml:14:18: executing "
    '"kata-deploy/templates/runtimeclasses.yaml" at <$shimConfig.enabled>: '
    "can't evaluate field enabled in type interface {}\n"
)


def test_schema_violations_become_one_problem_each_with_a_dotted_path() -> None:
    problems = template_problems(SCHEMA_ERR_NEW)
    assert [(p.kind, p.path, p.message) for p in problems] == [
        ("schema", "shims.disableAll", "got boolean, want object"),
        ("schema", "runtimeClasses", "additional properties 'createDefualt' not allowed"),
    ]
    (old,) = template_problems(SCHEMA_ERR_OLD)
    assert (old.kind, old.path) == ("schema", "shims.disableAll")
    assert "Expected: object, given: boolean" in old.message


def test_a_template_error_keeps_helms_message() -> None:
    (p,) = template_problems(TEMPLATE_ERR)
    assert p.kind == "template" and p.path is None
    assert p.message.startswith("template: kata-deploy/templates/runtimeclasses.yaml:14:18")
    assert "can't evaluate field enabled" in p.message
    assert str(p).startswith("template: template: kata-deploy")


def test_an_empty_stderr_still_says_something() -> None:
    (p,) = template_problems("")
    assert p.kind == "template" and p.message


# --- what is checked ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def states() -> list:  # type: ignore[type-arg]
    (bp,) = load_blueprints([REPO_ROOT / "blueprints" / "gpu-platform"])
    clusters = [(example(n), {}) for n in ("mixed", "l4-only", "h100-only", "sandbox")]
    return render_states(bp, clusters, {})


def test_equal_values_on_several_clusters_are_checked_once(states: list) -> None:  # type: ignore[type-arg]
    planned = plan_checks(states)
    by_addon: dict[str, list[list[str]]] = {}
    for check, _rel in planned:
        by_addon.setdefault(check.addon, []).append(check.targets)
    clusters = [s.cluster for s in states]
    # Add-ons no overlay touches render the same everywhere: one check for all four clusters.
    for addon in ("kai-scheduler", "gatekeeper", "kata", "dra-driver"):
        assert by_addon[addon] == [clusters], addon
    # The GPU Operator's values differ per hardware (MIG, time-slicing, sandbox): one check each.
    operator_targets = by_addon["gpu-operator"]
    assert sorted(t for targets in operator_targets for t in targets) == sorted(clusters)
    assert len(operator_targets) == len({values_hash(s.step("gpu-operator").helm.values) for s in states})
    # Manifest add-ons are not charts.
    assert "kai-queues" not in by_addon and "gpu-sharing" not in by_addon


def test_values_hash_ignores_key_order() -> None:
    assert values_hash({"a": 1, "b": {"c": 2, "d": 3}}) == values_hash({"b": {"d": 3, "c": 2}, "a": 1})
    assert values_hash({"a": 1}) != values_hash({"a": 2})


def test_report_summary_names_addon_chart_cluster_and_message(states: list) -> None:  # type: ignore[type-arg]
    check, _rel = next(c for c in plan_checks(states) if c[0].addon == "kata")
    check.problems.extend(template_problems(SCHEMA_ERR_NEW))
    report = PreflightReport(checks=[check])
    assert not report.ok and report.failed == [check]
    first = report.summary().splitlines()[0]
    assert first.startswith("add-on kata (kata-deploy 3.24.0) for mixed-1")
    assert first.endswith("schema: shims.disableAll: got boolean, want object")


def test_a_cluster_the_blueprint_does_not_select_is_not_rendered() -> None:
    (bp,) = load_blueprints([REPO_ROOT / "blueprints" / "gpu-platform"])
    off = example("l4-only").model_copy(update={"cluster_labels": {"blueprintd.io/gpu-platform": "disabled"}})
    assert [s.cluster for s in render_states(bp, [(example("mixed"), {}), (off, {})], {})] == ["mixed-1"]


def test_only_template_and_schema_problems_refuse_a_version(states: list) -> None:  # type: ignore[type-arg]
    planned = {check.addon: check for check, _rel in plan_checks(states)}
    kata, kai = planned["kata"], planned["kai-scheduler"]
    kata.problems.extend(template_problems(SCHEMA_ERR_NEW))
    kai.problems.append(Problem(kind="unavailable", message="no network"))
    kai.problems.append(Problem(kind="unknown-key", path="x", message="typo"))
    report = PreflightReport(checks=[kata, kai])
    assert len(report.summary().splitlines()) == len(kata.problems) + 2
    refused = report.refusal().splitlines()
    assert refused and all(line.startswith("add-on kata ") for line in refused)
    assert PreflightReport(checks=[kai]).refusal() == ""
