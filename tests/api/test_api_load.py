"""Loading Blueprints from YAML: every kind of bad input names file, line, field and the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from blueprintd.api.blueprint import Blueprint
from blueprintd.api.issues import InvalidInput, Issue
from blueprintd.api.load import load_blueprint_text, load_blueprints, load_objects, parse_blueprint
from blueprintd.errors import ValidationError

GOOD = """\
apiVersion: blueprintd.io/v1alpha1
kind: Blueprint
metadata:
  name: demo
spec:
  version: 1.0.0
  addons:
    - name: operator
      namespace: ops
      helm:
        repo: https://charts.example.com
        chart: operator
        version: 1.2.3
    - name: extra
      namespace: ops
      dependsOn: [operator]
      manifests:
        - apiVersion: v1
          kind: ConfigMap
          metadata: {name: cm}
"""


def issues_of(text: str, source: str = "bp.yaml") -> list[Issue]:
    with pytest.raises(InvalidInput) as info:
        load_blueprint_text(text, source)
    assert isinstance(info.value, ValidationError)
    return info.value.issues


def only(issues: list[Issue]) -> Issue:
    assert len(issues) == 1, [str(i) for i in issues]
    return issues[0]


def test_valid_blueprint_loads() -> None:
    bp = load_blueprint_text(GOOD)
    assert bp.name == "demo"
    assert bp.spec.addons[1].depends_on == ["operator"]


def test_malformed_yaml_names_line() -> None:
    issue = only(issues_of("apiVersion: blueprintd.io/v1alpha1\nkind: [Blueprint\nspec: {}\n"))
    assert issue.source == "bp.yaml"
    assert issue.line == 3
    assert "malformed YAML" in issue.message


def test_duplicate_yaml_key_is_an_error() -> None:
    text = GOOD.replace("  version: 1.0.0\n", "  version: 1.0.0\n  version: 2.0.0\n")
    issue = only(issues_of(text))
    assert issue.field == "spec.version"
    assert issue.line == 7
    assert "duplicate key 'version'" in issue.message


def test_unknown_field_lists_allowed_fields() -> None:
    text = GOOD.replace("        chart: operator\n", "        chart: operator\n        chrt: typo\n")
    issue = only(issues_of(text))
    assert issue.field == "spec.addons[0].helm.chrt"
    assert issue.line == 13
    assert issue.message == "unknown field 'chrt'"
    assert "chart" in issue.allowed and "releaseName" in issue.allowed
    assert str(issue).startswith("bp.yaml:13: spec.addons[0].helm.chrt: unknown field 'chrt' (allowed: repo, chart,")


def test_wrong_type_says_what_was_expected() -> None:
    text = GOOD.replace("      dependsOn: [operator]", "      dependsOn: operator")
    issue = only(issues_of(text))
    assert issue.field == "spec.addons[1].dependsOn"
    assert issue.line == 16
    assert "expected a list, got a string 'operator'" in issue.message


def test_invalid_semver_names_field_and_line() -> None:
    issue = only(issues_of(GOOD.replace("version: 1.0.0", "version: v1.0")))
    assert issue.field == "spec.version"
    assert issue.line == 6
    assert "is not SemVer" in issue.message


def test_invalid_chart_version() -> None:
    issue = only(issues_of(GOOD.replace("version: 1.2.3", "version: latest")))
    assert issue.field == "spec.addons[0].helm.version"
    assert issue.line == 13
    assert "'latest' is not an exact SemVer version" in issue.message


def test_missing_required_field_points_at_parent_line() -> None:
    issue = only(issues_of(GOOD.replace("        chart: operator\n", "")))
    assert issue.field == "spec.addons[0].helm.chart"
    assert issue.message == "required field is missing"
    assert issue.line == 10  # the `helm:` line


def test_invalid_enum_value_lists_allowed_values() -> None:
    text = GOOD + "  drift:\n    mode: fix\n"
    issue = only(issues_of(text))
    assert issue.field == "spec.drift.mode"
    assert issue.allowed == "remediate, notify, block"


def test_helm_and_manifests_together() -> None:
    text = GOOD.replace(
        "      dependsOn: [operator]\n",
        "      dependsOn: [operator]\n      helm: {repo: https://x, chart: c, version: 1.0.0}\n",
    )
    issue = only(issues_of(text))
    assert issue.field == "spec.addons[1]"
    assert "exactly one of 'helm' or 'manifests'" in issue.message


def test_duplicate_addon_names() -> None:
    issue = issues_of(GOOD.replace("name: extra", "name: operator"))[0]
    assert issue.field == "spec.addons[1].name"
    assert issue.line == 14
    assert "duplicate add-on name 'operator'" in issue.message


def test_dependency_cycle() -> None:
    text = GOOD.replace("      helm:\n        repo", "      dependsOn: [extra]\n      helm:\n        repo")
    issue = only(issues_of(text))
    assert "dependency cycle: extra → operator → extra" in issue.message
    assert issue.field == "spec.addons[1].dependsOn"


def test_unknown_dependency_lists_addons() -> None:
    issue = only(issues_of(GOOD.replace("dependsOn: [operator]", "dependsOn: [operatr]")))
    assert issue.field == "spec.addons[1].dependsOn[0]"
    assert "unknown add-on 'operatr'" in issue.message
    assert issue.allowed == "extra, operator"


def test_all_problems_are_reported_together() -> None:
    text = GOOD.replace("version: 1.0.0", "version: one").replace("chart: operator", "chart: 7")
    issues = issues_of(text)
    fields = {i.field for i in issues}
    assert fields == {"spec.version", "spec.addons[0].helm.chart"}


def test_not_a_blueprint_kind() -> None:
    issue = only(issues_of(GOOD.replace("kind: Blueprint", "kind: Deployment")))
    assert issue.field == "kind"
    assert "Blueprint" in issue.allowed and "MemberCluster" in issue.allowed


def test_wrong_api_version() -> None:
    issue = only(issues_of(GOOD.replace("blueprintd.io/v1alpha1", "blueprintd.io/v1")))
    assert issue.field == "apiVersion"
    assert issue.allowed == "blueprintd.io/v1alpha1"


def test_document_that_is_not_a_mapping() -> None:
    issue = only(issues_of("- just\n- a list\n"))
    assert "expected a Kubernetes object" in issue.message


def test_missing_metadata_name() -> None:
    issue = only(issues_of(GOOD.replace("  name: demo\n", "  labels: {a: b}\n")))
    assert issue.field == "metadata.name"


def test_alias_bomb_is_refused() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 8):
        prev = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{', '.join([prev] * 10)}]")
    issue = only(issues_of("\n".join(lines) + "\n"))
    assert "expands to more than" in issue.message


def test_folder_with_several_files_reports_each_file(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.yml").write_text(GOOD.replace("name: demo", "name: other").replace("1.0.0", "x"))
    (tmp_path / "notes.txt").write_text("not yaml: [")
    with pytest.raises(InvalidInput) as info:
        load_blueprints([tmp_path])
    (issue,) = info.value.issues
    assert issue.source.endswith("sub/b.yml")
    assert issue.line == 6


def test_multi_document_file_and_duplicate_blueprint(tmp_path: Path) -> None:
    path = tmp_path / "two.yaml"
    path.write_text(GOOD + "---\n" + GOOD)
    with pytest.raises(InvalidInput) as info:
        load_objects([path])
    (issue,) = info.value.issues
    assert "defined twice" in issue.message
    assert issue.line == 25  # metadata.name of the second document (GOOD has 20 lines, then ---)


def test_missing_file_is_an_issue(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as info:
        load_blueprints([tmp_path / "nope.yaml"])
    assert "no such file" in info.value.issues[0].message


def test_parse_blueprint_from_dict_has_no_line_numbers(small: dict[str, Any]) -> None:
    small["spec"]["version"] = "1"
    with pytest.raises(InvalidInput) as info:
        parse_blueprint(small, source="api")
    (issue,) = info.value.issues
    assert issue.line is None
    assert str(issue).startswith("api: spec.version:")


def test_roundtrip_through_wire_form(small: dict[str, Any]) -> None:
    bp = parse_blueprint(small)
    again = parse_blueprint(yaml.safe_load(yaml.safe_dump(bp.to_wire())))
    assert again == bp
    assert isinstance(again, Blueprint)
