"""Block mode (pure): labels for protected manifests and the ValidatingAdmissionPolicy that refuses changes."""

from __future__ import annotations

from typing import Any

from blueprintd.drift.admission import (
    BLUEPRINT_LABEL,
    MODE_LABEL,
    block_labels,
    exempt_expression,
    node_label_policy,
    object_policy,
    policies,
    policy_name,
)
from blueprintd.plan.planner import desired_objects
from blueprintd.render.desired import DesiredState

CM = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": "ops"}, "data": {"a": "1"}}


def desired(modes: tuple[str, str], blueprint_mode: str = "remediate") -> DesiredState:
    data: dict[str, Any] = {
        "blueprint": "platform",
        "version": "1.0.0",
        "revision": "sha256:x",
        "cluster": "c1",
        "steps": [
            {"addon": "guarded", "namespace": "ops", "manifests": [CM], "drift": {"mode": modes[0]}},
            {"addon": "free", "namespace": "ops", "drift": {"mode": modes[1]},
             "manifests": [{**CM, "metadata": {"name": "other", "namespace": "ops", "labels": {"x": "y"}}}]},
        ],
        "nodeLabels": [{"pool": "h100", "nodes": ["n1", "n2"], "labels": {"nvidia.com/mig.config": "all-1g.10gb"}}],
        "nodeLabelDrift": blueprint_mode,
    }
    return DesiredState.model_validate(data)


def test_every_manifest_is_applied_with_the_labels_the_block_policy_selects() -> None:
    """Whatever the mode, each applied manifest says which Blueprint owns it and its drift
    mode: the block policy's selector matches it from the moment it exists."""
    state = desired(("block", "remediate"))
    guarded = desired_objects(state, state.step("guarded"))
    free = desired_objects(state, state.step("free"))
    assert guarded[0]["metadata"]["labels"] == block_labels("platform")
    selector = object_policy("platform", ["op"])[0]["spec"]["matchConstraints"]["objectSelector"]["matchLabels"]
    assert all(guarded[0]["metadata"]["labels"].get(k) == v for k, v in selector.items())
    assert free[0]["metadata"]["labels"] == {"x": "y", MODE_LABEL: "remediate", BLUEPRINT_LABEL: "platform",
                                             "blueprintd.io/managed-by": "blueprintd"}
    assert "labels" not in (state.step("guarded").manifests or [])[0]["metadata"], "the input is left alone"


def test_object_policy_denies_update_and_delete_of_labelled_objects_except_for_the_operator() -> None:
    policy, binding = object_policy("platform", ["blueprintd-operator"])
    assert policy["apiVersion"] == "admissionregistration.k8s.io/v1"
    assert policy["metadata"]["name"] == policy_name("platform") == "blueprintd-drift-block-platform"
    spec = policy["spec"]
    [rule] = spec["matchConstraints"]["resourceRules"]
    assert rule["operations"] == ["UPDATE", "DELETE"] and rule["resources"] == ["*"]  # no subresources
    selector = spec["matchConstraints"]["objectSelector"]["matchLabels"]
    assert selector == {MODE_LABEL: "block", BLUEPRINT_LABEL: "platform"}
    [cond] = spec["matchConditions"]
    assert '"blueprintd-operator"' in cond["expression"] and cond["expression"].startswith("!(")
    assert spec["validations"][0]["expression"] == "false"
    assert "drift mode block" in spec["validations"][0]["messageExpression"]
    assert binding["kind"] == "ValidatingAdmissionPolicyBinding"
    assert binding["spec"] == {"policyName": policy["metadata"]["name"], "validationActions": ["Deny"]}


def test_the_control_plane_stays_exempt() -> None:
    expr = exempt_expression(["op"])
    assert "system:serviceaccount:kube-system:" in expr and "system:nodes" in expr and '"op"' in expr


def test_node_label_policy_guards_only_the_listed_keys_of_the_listed_nodes() -> None:
    policy, _ = node_label_policy("platform", {"n2": ["k/b"], "n1": ["k/a"]}, ["op"])
    [rule] = policy["spec"]["matchConstraints"]["resourceRules"]
    assert rule["resources"] == ["nodes"] and rule["resourceNames"] == ["n1", "n2"] and rule["operations"] == ["UPDATE"]
    expr = policy["spec"]["validations"][0]["expression"]
    assert '"k/a" in oldObject.metadata.labels' in expr and '"k/b"' in expr
    assert node_label_policy("platform", {}, ["op"]) == []


def test_policies_per_blueprint_follow_the_modes() -> None:
    assert [o["kind"] for o in policies([desired(("block", "remediate"))], ["op"])["platform"]] == [
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ]
    # the Blueprint's own mode is block: its node labels are guarded too
    assert len(policies([desired(("block", "block"), "block")], ["op"])["platform"]) == 4
    assert len(policies([desired(("remediate", "remediate"), "block")], ["op"])["platform"]) == 2
    assert policies([desired(("notify", "remediate"))], ["op"]) == {"platform": []}


def test_the_refusal_message_evaluates_for_cluster_scoped_objects_too() -> None:
    """A cluster-scoped request carries no ``namespace``: the message must not read it blindly,
    or the API server answers only "failed expression: false" (a DeviceClass, a CRD, a Queue)."""
    import celpy

    [policy, _] = object_policy("gpu-platform", ["op"])
    env = celpy.Environment()
    program = env.program(env.compile(policy["spec"]["validations"][0]["messageExpression"]))
    base = {"kind": {"kind": "DeviceClass"}, "name": "time-sliced.gpu.nvidia.com", "operation": "DELETE",
            "userInfo": {"username": "alice"}}
    cluster = str(program.evaluate({"request": celpy.json_to_cel(base)}))
    assert cluster == ("blueprintd: DeviceClass time-sliced.gpu.nvidia.com is managed by Blueprint gpu-platform with "
                       "drift mode block: change the Blueprint, not the cluster (alice may not DELETE it)")
    namespaced = str(program.evaluate({"request": celpy.json_to_cel({**base, "namespace": "gpu-workloads"})}))
    assert "DeviceClass gpu-workloads/time-sliced.gpu.nvidia.com is managed" in namespaced
