"""The API server's check of Blueprint parameters: a ValidatingAdmissionPolicy, in CEL.

A CRD's own CEL rules cannot do this job. A parameter's ``default`` and ``enum`` may hold
any JSON type, and Kubernetes does not expose untyped values to CRD rules; typing every
parameter as an object in the CRD would break the objects stored in the untyped form
(their status could no longer be written: CEL rules fail to convert them). A
ValidatingAdmissionPolicy sees the object as plain JSON, so it can apply the same rules as
``params.py``, on CREATE and UPDATE of Blueprints (not their ``status``), with messages that
name the parameter, the value and what is allowed.

Rules, mirroring ``params.declaration_issues``:

1. Only parameters that are new or changed are checked (compared with ``oldObject``):
   objects stored in the untyped form stay writable, as validation ratcheting keeps them for
   schema rules, while any new or changed value must be a declaration.
2. A parameter is an object with ``type`` and ``default``; ``type`` is string, integer,
   number or boolean.
3. ``minimum``/``maximum`` are numbers, only on integer and number parameters, with
   ``minimum <= maximum``; ``enum`` is a non-empty list, not on boolean parameters.
4. ``default`` has the declared type (integer: a whole JSON number; number: any JSON number;
   never a boolean for either), lies within ``minimum``/``maximum`` and is one of ``enum``.

What stays with ``blueprintd validate``, the GitSource sync and the operator (which refuses
to capture a revision of an invalid declaration): the type and uniqueness of every ``enum``
value, and per-cluster overrides, which need the Blueprint and the MemberCluster together.
"""

from __future__ import annotations

from typing import Any

from blueprintd.api.params import PARAM_TYPES

API_VERSION = "admissionregistration.k8s.io/v1"
POLICY_NAME = "blueprint-parameters.blueprintd.io"
FILE_NAME = "admissionpolicy-blueprint-parameters.yaml"

_TYPES = "[" + ", ".join(f"'{t}'" for t in PARAM_TYPES) + "]"  # a CEL list of the declarable types


def _show(v: str) -> str:
    """CEL text of value ``v`` as JSON would show it ("many", 4, true)."""
    return (
        f"(type({v}) == string ? '\"' + {v} + '\"' : "
        f"(type({v}) == int || type({v}) == double || type({v}) == bool) ? string({v}) : 'a list or object')"
    )


def _fits(t: str, v: str) -> str:
    """CEL: value ``v`` is of parameter type ``t`` (JSON decoding gives int for whole numbers)."""
    return (
        f"(({t} == 'string' && type({v}) == string) || ({t} == 'boolean' && type({v}) == bool) || "
        f"({t} == 'integer' && type({v}) == int) || "
        f"({t} == 'number' && (type({v}) == int || type({v}) == double)))"
    )


def _num(v: str) -> str:
    return f"(type({v}) == int || type({v}) == double)"


def _allowed(p: str) -> str:
    """CEL text of what a value of parameter ``p`` may be (``params.allowed`` in CEL)."""
    lo, hi = f"string({p}.minimum)", f"string({p}.maximum)"
    bounds = (
        f"(has({p}.minimum) && has({p}.maximum) ? ' from ' + {lo} + ' to ' + {hi} : "
        f"has({p}.minimum) ? ' of at least ' + {lo} : has({p}.maximum) ? ' of at most ' + {hi} : '')"
    )
    return (
        f"(has({p}.enum) ? {p}.type + ', one of ' + {p}.enum.map(e, {_show('e')}).join(', ') : "
        f"{p}.type == 'string' ? 'a string' : {p}.type == 'boolean' ? 'true or false' : "
        f"({p}.type == 'integer' ? 'an integer' : 'a number') + {bounds})"
    )


def _validation(bad: str, message: str) -> dict[str, Any]:
    return {
        "expression": f"size(variables.{bad}) == 0",
        "messageExpression": message,
        "message": "invalid Blueprint parameter declaration (see docs/blueprints.md#parameters)",
        "reason": "Invalid",
    }


def admission_policy() -> list[dict[str, Any]]:
    """The ValidatingAdmissionPolicy and its binding (installed with the CRDs)."""
    p = "variables.params[k]"
    numeric = f"({p}.type == 'integer' || {p}.type == 'number')"
    variables = [
        {
            "name": "params",
            "expression": "has(object.spec) && has(object.spec.parameters) ? object.spec.parameters : {}",
        },
        {
            "name": "old",
            "expression": (
                "oldObject != null && has(oldObject.spec) && has(oldObject.spec.parameters) ? "
                "oldObject.spec.parameters : {}"
            ),
        },
        {
            "name": "changed",
            "expression": (
                "variables.params.filter(k, !(k in variables.old) || variables.old[k] != variables.params[k])"
            ),
        },
        {
            "name": "plain",
            "expression": (
                f"variables.changed.filter(k, !(type({p}) == map && has({p}.type) && has({p}.default)))"
            ),
        },
        {
            "name": "badType",
            "expression": f"variables.changed.filter(k, !(k in variables.plain) && !({p}.type in {_TYPES}))",
        },
        {
            "name": "declared",
            "expression": "variables.changed.filter(k, !(k in variables.plain) && !(k in variables.badType))",
        },
        {
            "name": "badBounds",
            "expression": (
                f"variables.declared.filter(k, "
                f"((has({p}.minimum) || has({p}.maximum)) && !{numeric}) || "
                f"(has({p}.minimum) && !{_num(p + '.minimum')}) || (has({p}.maximum) && !{_num(p + '.maximum')}) || "
                f"(has({p}.minimum) && has({p}.maximum) && {_num(p + '.minimum')} && {_num(p + '.maximum')} && "
                f"double({p}.minimum) > double({p}.maximum)) || "
                f"(has({p}.enum) && (type({p}.enum) != list || size({p}.enum) == 0 || {p}.type == 'boolean')))"
            ),
        },
        {
            "name": "badDefault",
            "expression": (
                f"variables.declared.filter(k, !(k in variables.badBounds) && ("
                f"!{_fits(p + '.type', p + '.default')} || "
                f"({numeric} && has({p}.minimum) && double({p}.default) < double({p}.minimum)) || "
                f"({numeric} && has({p}.maximum) && double({p}.default) > double({p}.maximum)) || "
                f"(has({p}.enum) && !{p}.enum.exists(e, type(e) == type({p}.default) && e == {p}.default))))"
            ),
        },
    ]
    first = {bad: f"variables.{bad}[0]" for bad in ("plain", "badType", "badBounds", "badDefault")}
    value = {bad: f"variables.params[{first[bad]}]" for bad in first}
    validations = [
        _validation(
            "plain",
            f"'spec.parameters.' + {first['plain']} + ': parameter ' + {first['plain']} + ' is '"
            f" + {_show(value['plain'])} + ' without a declared type; declare it as "
            "{type: string|integer|number|boolean, default: <value>} with optional minimum, maximum, enum "
            "and description'",
        ),
        _validation(
            "badType",
            f"'spec.parameters.' + {first['badType']} + '.type: parameter ' + {first['badType']} + ' has type '"
            f" + {_show(value['badType'] + '.type')} + ' (allowed: string, integer, number, boolean)'",
        ),
        _validation(
            "badBounds",
            f"'spec.parameters.' + {first['badBounds']} + ': parameter ' + {first['badBounds']} + ': minimum and "
            "maximum must be numbers with minimum <= maximum, only on integer and number parameters; enum must "
            "be a non-empty list, not on boolean parameters'",
        ),
        _validation(
            "badDefault",
            f"'spec.parameters.' + {first['badDefault']} + '.default: parameter ' + {first['badDefault']}"
            f" + ': default ' + {_show(value['badDefault'] + '.default')}"
            f" + ' is not allowed (allowed: ' + {_allowed(value['badDefault'])} + ')'",
        ),
    ]
    policy = {
        "apiVersion": API_VERSION,
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": POLICY_NAME},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": ["blueprintd.io"],
                        "apiVersions": ["*"],
                        "operations": ["CREATE", "UPDATE"],
                        "resources": ["blueprints"],
                    }
                ]
            },
            "variables": variables,
            "validations": validations,
        },
    }
    binding = {
        "apiVersion": API_VERSION,
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": POLICY_NAME},
        "spec": {"policyName": POLICY_NAME, "validationActions": ["Deny"]},
    }
    return [policy, binding]
