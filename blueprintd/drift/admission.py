"""Drift mode ``block`` (pure): a ValidatingAdmissionPolicy that refuses changes to what a Blueprint owns.

The member API server itself refuses UPDATE and DELETE of protected objects by anyone but
the operator, so the change never happens (detection after the fact cannot undo a deleted
PersistentVolume). ValidatingAdmissionPolicy (``admissionregistration.k8s.io/v1``, GA since
Kubernetes 1.30) needs no webhook server: the rule is CEL evaluated in the API server.

Protected objects are selected by the identity labels blueprintd puts on them
(``plan.ownership``: part of every manifest as the reconcile applies it; the drift monitor puts
them on what a Helm release installed), one policy per Blueprint so Blueprints never overwrite
each other's policy. A node's labels are protected key by key
with a second policy: the node object itself belongs to the kubelet and must stay writable.

Identities that may still write: the operator's own (refused, it could not remediate or
upgrade) and the control plane's (the namespace and garbage collectors delete objects, node
components update nodes); a change made by them is seen by the watches and reported as drift.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from blueprintd.plan.ownership import (
    BLUEPRINT_LABEL,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    MODE_LABEL,
    identity_labels,
)
from blueprintd.plan.ownership import label_value as _label_value
from blueprintd.render.desired import DesiredState

__all__ = [
    "API_VERSION",
    "BLUEPRINT_LABEL",
    "MANAGED_BY",
    "MANAGED_BY_LABEL",
    "MODE_LABEL",
    "block_labels",
    "node_label_policy",
    "object_policy",
    "policies",
    "policy_name",
]

API_VERSION = "admissionregistration.k8s.io/v1"

# Control-plane identities that must keep working on protected objects.
CONTROL_PLANE_USERS = ("system:kube-controller-manager", "system:kube-scheduler")
CONTROL_PLANE_PREFIXES = ("system:serviceaccount:kube-system:",)
CONTROL_PLANE_GROUPS = ("system:nodes",)


def block_labels(blueprint: str) -> dict[str, str]:
    """The labels that put an object under the ``block`` policy of ``blueprint``."""
    return identity_labels(blueprint, "block")


def policy_name(blueprint: str, suffix: str = "") -> str:
    base = f"blueprintd-drift-block-{blueprint}"
    name = base + (f"-{suffix}" if suffix else "")
    return name[:253]


def _cel(value: str) -> str:
    """A CEL string literal (JSON escaping is valid CEL for the characters names contain)."""
    return json.dumps(value)


def exempt_expression(operator_users: Iterable[str]) -> str:
    """CEL: the request comes from the operator or the control plane."""
    users = sorted({u for u in operator_users if u} | set(CONTROL_PLANE_USERS))
    parts = [f"request.userInfo.username in [{', '.join(_cel(u) for u in users)}]"]
    parts += [f"request.userInfo.username.startsWith({_cel(p)})" for p in CONTROL_PLANE_PREFIXES]
    parts += [
        f"(has(request.userInfo.groups) && request.userInfo.groups.exists(g, g == {_cel(g)}))"
        for g in CONTROL_PLANE_GROUPS
    ]
    return " || ".join(parts)


def _meta(name: str, blueprint: str) -> dict[str, Any]:
    return {"name": name, "labels": {MANAGED_BY_LABEL: MANAGED_BY, BLUEPRINT_LABEL: _label_value(blueprint)}}


def object_policy(blueprint: str, operator_users: Iterable[str]) -> list[dict[str, Any]]:
    """Policy + binding refusing UPDATE/DELETE of objects labelled for ``blueprint``'s block mode.

    ``resources: ["*"]`` leaves subresources out, so controllers keep writing ``status`` and
    ``scale`` of a protected workload; the object selector matches the old object on DELETE
    and either version on UPDATE, so removing the labels is refused as well. A cluster-scoped
    request has no ``namespace`` at all: the message asks ``has()`` first, or it would not
    evaluate and the person would read only "failed expression: false"."""
    name = policy_name(blueprint)
    message = (
        f"'blueprintd: ' + request.kind.kind + ' ' + "
        f"(has(request.namespace) && request.namespace != '' ? request.namespace + '/' : '') + request.name + "
        f"' is managed by Blueprint ' + {_cel(blueprint)} + ' with drift mode block: change the Blueprint, "
        f"not the cluster (' + request.userInfo.username + ' may not ' + request.operation + ' it)'"
    )
    constraints = {
        "resourceRules": [
            {
                "apiGroups": ["*"],
                "apiVersions": ["*"],
                "resources": ["*"],
                "operations": ["UPDATE", "DELETE"],
                "scope": "*",
            }
        ],
        "objectSelector": {"matchLabels": {MODE_LABEL: "block", BLUEPRINT_LABEL: _label_value(blueprint)}},
    }
    validation = {"expression": "false", "messageExpression": message, "reason": "Forbidden"}
    return _policy(name, blueprint, constraints, validation, operator_users)


def node_label_policy(
    blueprint: str, nodes: dict[str, list[str]], operator_users: Iterable[str]
) -> list[dict[str, Any]]:
    """Policy + binding keeping the listed label keys of the listed nodes as they are
    (set, changed or removed only by the operator); every other field of a node stays free."""
    if not nodes:
        return []
    name = policy_name(blueprint, "nodes")
    keys = sorted({k for ks in nodes.values() for k in ks})
    checks = []
    for key in keys:
        k = _cel(key)
        old = f"(has(oldObject.metadata.labels) && {k} in oldObject.metadata.labels)"
        new = f"(has(object.metadata.labels) && {k} in object.metadata.labels)"
        checks.append(f"({old} == {new} && (!{old} || oldObject.metadata.labels[{k}] == object.metadata.labels[{k}]))")
    constraints = {
        "resourceRules": [
            {
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "resources": ["nodes"],
                "operations": ["UPDATE"],
                "resourceNames": sorted(nodes),
            }
        ]
    }
    validation = {
        "expression": " && ".join(checks),
        "message": (
            f"blueprintd: node labels {', '.join(keys)} are set by Blueprint {blueprint} "
            "with drift mode block: change the Blueprint, not the node"
        ),
        "reason": "Forbidden",
    }
    return _policy(name, blueprint, constraints, validation, operator_users)


def _policy(
    name: str,
    blueprint: str,
    constraints: dict[str, Any],
    validation: dict[str, Any],
    operator_users: Iterable[str],
) -> list[dict[str, Any]]:
    """A deny-only ValidatingAdmissionPolicy (failing closed) and its binding; the operator and
    the control plane are never matched."""
    policy = {
        "apiVersion": API_VERSION,
        "kind": "ValidatingAdmissionPolicy",
        "metadata": _meta(name, blueprint),
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": constraints,
            "matchConditions": [{"name": "not-exempt", "expression": f"!({exempt_expression(operator_users)})"}],
            "validations": [validation],
        },
    }
    return [policy, _binding(name, blueprint)]


def _binding(name: str, blueprint: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": _meta(name, blueprint),
        "spec": {"policyName": name, "validationActions": ["Deny"]},
    }


def policies(desired: list[DesiredState], operator_users: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
    """Per Blueprint: the admission objects its ``block`` add-ons need (empty list: none, so an
    existing policy of that Blueprint is to be removed)."""
    from blueprintd.plan.planner import node_label_mode, wanted_node_labels

    users = list(operator_users)
    out: dict[str, list[dict[str, Any]]] = {}
    for state in desired:
        objs: list[dict[str, Any]] = []
        if any(s.drift.mode == "block" for s in state.steps):
            objs += object_policy(state.blueprint, users)
        if node_label_mode(state) == "block":
            wanted = wanted_node_labels(state)
            objs += node_label_policy(state.blueprint, {n: sorted(ls) for n, ls in wanted.items()}, users)
        out[state.blueprint] = objs
    return out
