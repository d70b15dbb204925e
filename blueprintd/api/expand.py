"""The effective add-on list of a Blueprint: user add-ons plus those generated from policies.

``spec.policies`` is a convenience: Gatekeeper templates, constraints and network policies
become ordinary manifest add-ons, ordered so each kind of object is installed after what it
needs (templates after Gatekeeper, constraints after the templates' CRDs exist). Validation
and rendering both use this list, so overlays can target generated add-ons (for example to
switch a constraint to ``dryrun`` on some clusters) and errors name them consistently.

Also here: which kinds are cluster-scoped (render fills the add-on namespace into
namespaced objects only; render never asks an API server).
"""

from __future__ import annotations

from typing import Any

from blueprintd.api.blueprint import (
    NETWORK_POLICIES_ADDON,
    POLICY_CONSTRAINTS_ADDON,
    POLICY_TEMPLATES_ADDON,
    Addon,
    BlueprintSpec,
    Readiness,
    ReadinessCheck,
)

TENANT_LABEL = "blueprintd.io/tenant"

CLUSTER_SCOPED_KINDS = frozenset(
    {
        "APIService",
        "CSIDriver",
        "CSINode",
        "ClusterPolicy",
        "ClusterRole",
        "ClusterRoleBinding",
        "ConstraintTemplate",
        "CustomResourceDefinition",
        "DeviceClass",
        "IngressClass",
        "MutatingAdmissionPolicy",
        "MutatingAdmissionPolicyBinding",
        "MutatingWebhookConfiguration",
        "Namespace",
        "Node",
        "PersistentVolume",
        "PriorityClass",
        "Queue",
        "ResourceSlice",
        "RuntimeClass",
        "StorageClass",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "ValidatingWebhookConfiguration",
        "VolumeAttachment",
    }
)
# Every object in these API groups is cluster-scoped (Gatekeeper constraints and mutators).
CLUSTER_SCOPED_GROUPS = frozenset({"constraints.gatekeeper.sh", "mutations.gatekeeper.sh"})


def api_group(api_version: str) -> str:
    return api_version.rsplit("/", 1)[0] if "/" in api_version else ""


def is_cluster_scoped(obj: dict[str, Any]) -> bool:
    kind = obj.get("kind")
    api_version = obj.get("apiVersion")
    if isinstance(api_version, str) and api_group(api_version) in CLUSTER_SCOPED_GROUPS:
        return True
    return kind in CLUSTER_SCOPED_KINDS


def with_namespace(obj: dict[str, Any], namespace: str | None) -> dict[str, Any]:
    """``obj`` with ``metadata.namespace`` set when it is namespaced and has none (shallow copy)."""
    if not namespace or is_cluster_scoped(obj):
        return obj
    meta = obj.get("metadata")
    if not isinstance(meta, dict) or meta.get("namespace"):
        return obj
    return {**obj, "metadata": {**meta, "namespace": namespace}}


def _template_kind(template: dict[str, Any]) -> str:
    try:
        kind = template["spec"]["crd"]["spec"]["names"]["kind"]
    except (KeyError, TypeError):
        return ""
    return kind if isinstance(kind, str) else ""


def template_kinds(spec: BlueprintSpec) -> list[str]:
    """Constraint kinds the Blueprint's ConstraintTemplates define."""
    if spec.policies is None or spec.policies.gatekeeper is None:
        return []
    return [k for k in (_template_kind(t) for t in spec.policies.gatekeeper.templates) if k]


def policy_addons(spec: BlueprintSpec) -> list[Addon]:
    """The add-ons generated from ``spec.policies`` (possibly none)."""
    policies = spec.policies
    if policies is None:
        return []
    user_names = {a.name for a in spec.addons}
    out: list[Addon] = []
    gk = policies.gatekeeper
    if gk is not None:
        gk_deps = [gk.addon] if gk.addon in user_names else []
        if gk.templates:
            checks = [
                ReadinessCheck(kind="CRD", name=f"{kind.lower()}.constraints.gatekeeper.sh")
                for kind in template_kinds(spec)
            ]
            out.append(
                Addon(
                    name=POLICY_TEMPLATES_ADDON,
                    manifests=list(gk.templates),
                    depends_on=gk_deps,
                    readiness=Readiness(checks=checks) if checks else None,
                )
            )
        if gk.constraints:
            deps = [POLICY_TEMPLATES_ADDON] if gk.templates else gk_deps
            out.append(Addon(name=POLICY_CONSTRAINTS_ADDON, manifests=list(gk.constraints), depends_on=deps))
    if policies.network_policies or policies.tenant_namespaces:
        objects: list[dict[str, Any]] = [
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": ns, "labels": {TENANT_LABEL: "true"}},
            }
            for ns in policies.tenant_namespaces
        ]
        for policy in policies.network_policies:
            meta = policy.get("metadata")
            if isinstance(meta, dict) and meta.get("namespace"):
                objects.append(policy)
                continue
            for ns in policies.tenant_namespaces:
                objects.append(with_namespace(policy, ns))
        out.append(Addon(name=NETWORK_POLICIES_ADDON, manifests=objects))
    return out


def effective_addons(spec: BlueprintSpec) -> list[Addon]:
    """User add-ons followed by generated ones, manifests with namespaces filled in."""
    result = []
    for addon in [*spec.addons, *policy_addons(spec)]:
        if addon.manifests is not None and addon.namespace:
            filled = [with_namespace(m, addon.namespace) if isinstance(m, dict) else m for m in addon.manifests]
            addon = addon.model_copy(update={"manifests": filled})
        result.append(addon)
    return result
