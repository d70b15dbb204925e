"""Semantic checks of overlays, CEL, patches and policies (beyond the schema)."""

from __future__ import annotations

from typing import Any

import pytest

from blueprintd.api.issues import InvalidInput, Issue
from blueprintd.api.load import parse_blueprint


def problems(data: dict[str, Any]) -> list[Issue]:
    with pytest.raises(InvalidInput) as info:
        parse_blueprint(data, source="bp")
    return info.value.issues


def one(data: dict[str, Any]) -> Issue:
    found = problems(data)
    assert len(found) == 1, [str(i) for i in found]
    return found[0]


def overlay(data: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = data["spec"]["overlays"][0]
    return result


def test_small_blueprint_is_valid(small: dict[str, Any]) -> None:
    bp = parse_blueprint(small)
    assert [a.name for a in bp.spec.addons] == ["operator", "objects"]


def test_cel_syntax_error(small: dict[str, Any]) -> None:
    overlay(small)["when"] = "pool.gpuCount > "
    issue = one(small)
    assert issue.field == "spec.overlays[0].when"
    assert "CEL syntax error" in issue.message


def test_cel_unknown_variable(small: dict[str, Any]) -> None:
    overlay(small)["when"] = "node.gpuCount > 0"
    issue = one(small)
    assert "unknown variable 'node'" in issue.message
    assert "cluster, params, pool" in issue.message


def test_cel_unknown_pool_field_lists_known_fields(small: dict[str, Any]) -> None:
    overlay(small)["when"] = "pool.gpus > 0"
    issue = one(small)
    assert "pool has no field 'gpus'" in issue.message
    assert "gpuCount" in issue.message and "migProfile" in issue.message


def test_cel_pool_is_not_available_in_cluster_scope(small: dict[str, Any]) -> None:
    ov = overlay(small)
    ov["scope"] = "cluster"
    ov.pop("nodeLabels")
    issue = one(small)
    assert issue.field == "spec.overlays[0].when"
    assert "unknown variable 'pool'" in issue.message


def test_cel_params_must_be_declared(small: dict[str, Any]) -> None:
    overlay(small)["when"] = "params.replica > 1"
    issue = one(small)
    assert "params has no field 'replica' (known: replicas)" in issue.message


def test_macro_variables_are_not_unknown(small: dict[str, Any]) -> None:
    overlay(small)["when"] = "pool.nodes.exists(n, n.startsWith('gpu-')) && params.replicas > 1"
    parse_blueprint(small)


def test_invalid_template_in_patch_names_its_path(small: dict[str, Any]) -> None:
    overlay(small)["patches"][0]["values"] = {"feature": {"profile": "${ pool.nope }"}}
    issue = one(small)
    assert issue.field == "spec.overlays[0].patches[0].values.feature.profile"
    assert "pool has no field 'nope'" in issue.message


def test_invalid_label_key(small: dict[str, Any]) -> None:
    overlay(small)["nodeLabels"] = {"bad key": "x"}
    issue = one(small)
    assert "label key 'bad key' is invalid" in issue.message


def test_node_labels_need_node_pool_scope(small: dict[str, Any]) -> None:
    ov = overlay(small)
    ov["scope"] = "cluster"
    ov["when"] = "true"
    issue = one(small)
    assert issue.field == "spec.overlays[0]"
    assert "nodeLabels are only allowed on overlays with scope nodePool" in issue.message


def test_patch_to_unknown_addon(small: dict[str, Any]) -> None:
    overlay(small)["patches"][0]["addon"] = "operatr"
    issue = one(small)
    assert issue.field == "spec.overlays[0].patches[0].addon"
    assert issue.allowed == "objects, operator"


def test_values_patch_on_manifest_addon(small: dict[str, Any]) -> None:
    overlay(small)["patches"][0]["addon"] = "objects"
    issue = one(small)
    assert "installs manifests, not a Helm chart" in issue.message


def test_manifest_target_must_exist(small: dict[str, Any]) -> None:
    overlay(small)["patches"] = [
        {"addon": "objects", "target": {"kind": "ConfigMap", "name": "setings"}, "mergePatch": {"data": {"b": "2"}}}
    ]
    issue = one(small)
    assert issue.field == "spec.overlays[0].patches[0].target"
    assert "has no ConfigMap named 'setings'" in issue.message
    assert issue.allowed == "ConfigMap/settings"


def test_patch_needs_exactly_one_kind(small: dict[str, Any]) -> None:
    overlay(small)["patches"][0]["valuesJsonPatch"] = [{"op": "remove", "path": "/replicas"}]
    issue = one(small)
    assert "exactly one of values, valuesJsonPatch, mergePatch or jsonPatch (got values, valuesJsonPatch)" in (
        issue.message
    )


def test_json_patch_op_needs_value(small: dict[str, Any]) -> None:
    overlay(small)["patches"] = [{"addon": "operator", "valuesJsonPatch": [{"op": "replace", "path": "/replicas"}]}]
    issue = one(small)
    assert issue.field == "spec.overlays[0].patches[0].valuesJsonPatch[0]"
    assert "op 'replace' needs a 'value'" in issue.message


def test_json_patch_bad_pointer(small: dict[str, Any]) -> None:
    overlay(small)["patches"] = [
        {"addon": "operator", "valuesJsonPatch": [{"op": "replace", "path": "replicas", "value": 3}]}
    ]
    issue = one(small)
    assert issue.field == "spec.overlays[0].patches[0].valuesJsonPatch[0].path"
    assert "must start with '/'" in issue.message


def test_json_patch_to_missing_path(small: dict[str, Any]) -> None:
    overlay(small)["patches"] = [
        {"addon": "operator", "valuesJsonPatch": [{"op": "replace", "path": "/feature/enabld", "value": True}]}
    ]
    issue = one(small)
    assert issue.field == "spec.overlays[0].patches[0].valuesJsonPatch[0].path"
    assert "'/feature/enabld' does not exist in add-on 'operator'" in issue.message


def test_json_patch_to_path_another_overlay_creates_is_fine(small: dict[str, Any]) -> None:
    small["spec"]["overlays"].append(
        {
            "name": "tune",
            "scope": "nodePool",
            "priority": 1,
            "when": "pool.gpuCount > 4",
            "patches": [{"addon": "operator", "valuesJsonPatch": [{"op": "remove", "path": "/feature/enabled"}]}],
        }
    )
    overlay(small)["patches"][0]["values"] = {"feature": {"new": {"deep": 1}}}
    small["spec"]["overlays"][1]["patches"][0]["valuesJsonPatch"].append(
        {"op": "replace", "path": "/feature/new/deep", "value": 2}
    )
    parse_blueprint(small)


def test_duplicate_overlay_names(small: dict[str, Any]) -> None:
    small["spec"]["overlays"].append(dict(overlay(small)))
    issue = one(small)
    assert issue.field == "spec.overlays[1].name"
    assert "duplicate overlay name 'gpu'" in issue.message


def test_manifest_without_kind(small: dict[str, Any]) -> None:
    del small["spec"]["addons"][1]["manifests"][0]["kind"]
    issues = problems(small)
    assert any(i.field == "spec.addons[1].manifests[0].kind" for i in issues)


def test_reserved_addon_name(small: dict[str, Any]) -> None:
    small["spec"]["addons"][1]["name"] = "network-policies"
    issue = one(small)
    assert "reserved" in issue.message


def test_constraint_kind_must_have_a_template(small: dict[str, Any]) -> None:
    small["spec"]["policies"] = {
        "gatekeeper": {
            "addon": "operator",
            "templates": [
                {
                    "apiVersion": "templates.gatekeeper.sh/v1",
                    "kind": "ConstraintTemplate",
                    "metadata": {"name": "k8srequired"},
                    "spec": {"crd": {"spec": {"names": {"kind": "K8sRequired"}}}, "targets": []},
                }
            ],
            "constraints": [
                {
                    "apiVersion": "constraints.gatekeeper.sh/v1beta1",
                    "kind": "K8sRequird",
                    "metadata": {"name": "c"},
                    "spec": {},
                }
            ],
        }
    }
    issue = one(small)
    assert issue.field == "spec.policies.gatekeeper.constraints[0].kind"
    assert issue.allowed == "K8sRequired"


def test_network_policy_without_namespace_needs_tenants(small: dict[str, Any]) -> None:
    small["spec"]["policies"] = {
        "networkPolicies": [
            {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "deny"}, "spec": {}}
        ]
    }
    issue = one(small)
    assert "applies nowhere" in issue.message


def test_drift_ignore_path_syntax(small: dict[str, Any]) -> None:
    small["spec"]["drift"] = {"ignore": [{"kind": "Deployment", "paths": ["spec..replicas"]}]}
    issue = one(small)
    assert issue.field == "spec.drift.ignore[0].paths[0]"


def test_canary_needs_exactly_one_of_count_or_selector(small: dict[str, Any]) -> None:
    small["spec"]["rollout"] = {"canary": {}}
    issue = one(small)
    assert issue.field == "spec.rollout.canary"
    assert "exactly one of 'count' or 'selector'" in issue.message


def test_max_unavailable_percent(small: dict[str, Any]) -> None:
    small["spec"]["rollout"] = {"maxUnavailable": "150%"}
    issue = one(small)
    assert issue.field == "spec.rollout.maxUnavailable"
    small["spec"]["rollout"] = {"maxUnavailable": "25%"}
    assert parse_blueprint(small).spec.rollout.max_unavailable == "25%"


def test_parameters_must_be_scalars(small: dict[str, Any]) -> None:
    small["spec"]["parameters"] = {"replicas": [1, 2]}
    issue = one(small)
    assert issue.field == "spec.parameters.replicas"
    assert issue.message.startswith("expected ")


TEMPLATE = {
    "apiVersion": "templates.gatekeeper.sh/v1",
    "kind": "ConstraintTemplate",
    "metadata": {"name": "k8srequired"},
    "spec": {"crd": {"spec": {"names": {"kind": "K8sRequired"}}}, "targets": []},
}


def test_gatekeeper_addon_must_name_an_addon(small: dict[str, Any]) -> None:
    """policies.gatekeeper.addon names the add-on that installs Gatekeeper's CRDs: a typo (or
    no such add-on at all) used to pass validate and fail only on the member cluster."""
    small["spec"]["policies"] = {"gatekeeper": {"templates": [TEMPLATE]}}  # addon defaults to "gatekeeper"
    issue = one(small)
    assert issue.field == "spec.policies.gatekeeper.addon"
    assert "'gatekeeper'" in issue.message and "spec.addons" in issue.message
    assert issue.allowed == "objects, operator"
    small["spec"]["policies"]["gatekeeper"]["addon"] = "operator"
    parse_blueprint(small)


def test_gatekeeper_installed_outside_the_blueprint_is_said_explicitly(small: dict[str, Any]) -> None:
    small["spec"]["policies"] = {"gatekeeper": {"addon": "", "templates": [TEMPLATE]}}
    bp = parse_blueprint(small)
    from blueprintd.api.expand import policy_addons

    (templates,) = policy_addons(bp.spec)
    assert templates.depends_on == []


def test_gatekeeper_addon_cannot_be_a_generated_addon(small: dict[str, Any]) -> None:
    small["spec"]["policies"] = {"gatekeeper": {"addon": "policy-templates", "templates": [TEMPLATE]}}
    issue = one(small)
    assert issue.field == "spec.policies.gatekeeper.addon"


def test_gatekeeper_addon_without_policies_is_not_a_reference(small: dict[str, Any]) -> None:
    small["spec"]["policies"] = {"gatekeeper": {"addon": "gatekeeper"}}
    parse_blueprint(small)


def test_every_reference_field_is_checked(small: dict[str, Any]) -> None:
    """One Blueprint with a dangling reference in each field that names another part of it."""
    spec = small["spec"]
    spec["addons"][1]["dependsOn"] = ["operatr"]
    spec["policies"] = {"gatekeeper": {"addon": "gatekeepr", "templates": [TEMPLATE]}}
    spec["overlays"][0]["patches"] = [
        {"addon": "operatr", "values": {"x": 1}},
        {"addon": "objects", "target": {"kind": "ConfigMap", "name": "setings"}, "mergePatch": {"data": {}}},
    ]
    fields = sorted(i.field for i in problems(small))
    assert fields == [
        "spec.addons[1].dependsOn[0]",
        "spec.overlays[0].patches[0].addon",
        "spec.overlays[0].patches[1].target",
        "spec.policies.gatekeeper.addon",
    ]
