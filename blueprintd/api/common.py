"""Kubernetes building blocks shared by every blueprintd kind.

``ObjectMeta`` mirrors the subset of Kubernetes metadata the operator reads and writes;
``Condition`` is the standard status condition; ``LabelSelector`` is the Kubernetes label
selector together with a pure ``matches`` so that cluster selection and canary selection
behave exactly like ``kubectl get -l`` without talking to an API server.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import ConfigDict, Field, field_validator, model_validator

from blueprintd.api.base import ApiModel

DNS_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS_LABEL_PATTERN = DNS_LABEL_RE.pattern
DNS_SUBDOMAIN_PATTERN = DNS_SUBDOMAIN_RE.pattern

DNS_LABEL_HELP = "lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters"
DNS_SUBDOMAIN_HELP = "lowercase letters, digits, '-' and '.', at most 253 characters"


def check_dns_label(value: str) -> str:
    """Raise ``ValueError`` unless ``value`` is a DNS-1123 label (names of add-ons, overlays, namespaces)."""
    if len(value) > 63 or not DNS_LABEL_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not a valid name: use {DNS_LABEL_HELP}")
    return value


def check_dns_subdomain(value: str) -> str:
    """Raise ``ValueError`` unless ``value`` is a DNS-1123 subdomain (object names)."""
    if len(value) > 253 or not DNS_SUBDOMAIN_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not a valid object name: use {DNS_SUBDOMAIN_HELP}")
    return value


class ObjectMeta(ApiModel):
    """Standard Kubernetes object metadata (the fields blueprintd reads or writes)."""

    # Kubernetes may add server-side fields we do not model; they are kept, not rejected,
    # so that objects read back from an API server always parse.
    model_config = ConfigDict(extra="allow")

    name: str = Field(default="", description="Object name, unique per kind (and namespace).", max_length=253)
    generate_name: str | None = Field(default=None, description="Prefix for a server-generated name.")
    namespace: str | None = Field(default=None, description="Namespace of namespaced objects.")
    labels: dict[str, str] = Field(default_factory=dict, description="Labels used by selectors.")
    annotations: dict[str, str] = Field(default_factory=dict, description="Free-form annotations.")
    uid: str | None = Field(default=None, description="Server-assigned unique id.")
    resource_version: str | None = Field(
        default=None, description="Server-assigned version for optimistic concurrency."
    )
    generation: int | None = Field(default=None, description="Incremented by the server on every spec change.")
    creation_timestamp: datetime | None = Field(default=None, description="When the object was created.")
    deletion_timestamp: datetime | None = Field(default=None, description="When deletion was requested.")
    finalizers: list[str] = Field(default_factory=list, description="Finalizers blocking deletion.")
    owner_references: list[dict[str, Any]] = Field(default_factory=list, description="Owning objects.")

    def to_wire(self) -> dict[str, Any]:
        """Metadata without empty collections, as users write it."""
        data = super().to_wire()
        return {k: v for k, v in data.items() if v not in ({}, [])}


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(ApiModel):
    """A standard Kubernetes status condition (``kubectl wait --for=condition=Ready`` reads these)."""

    type: str = Field(description="Condition type in CamelCase, e.g. Ready, Reachable, Drifted.", max_length=316)
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(default="", description="One-word CamelCase reason for the last transition.", max_length=1024)
    message: str = Field(default="", description="Human-readable details of the last transition.", max_length=32768)
    last_transition_time: datetime | None = Field(
        default=None, description="When the status last changed (not when it was last checked)."
    )
    observed_generation: int | None = Field(
        default=None, description="metadata.generation the condition was computed from."
    )


class SelectorOperator(StrEnum):
    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"


class LabelSelectorRequirement(ApiModel):
    """One ``matchExpressions`` entry: a key, an operator and (for In/NotIn) values."""

    key: str = Field(description="Label key the requirement applies to.", max_length=317)
    operator: SelectorOperator = Field(description="In, NotIn, Exists or DoesNotExist.")
    values: list[str] = Field(
        default_factory=list,
        description="Values for In and NotIn (at least one); must be empty for Exists and DoesNotExist.",
        max_length=64,
    )

    @model_validator(mode="after")
    def _values_match_operator(self) -> LabelSelectorRequirement:
        needs_values = self.operator in (SelectorOperator.IN, SelectorOperator.NOT_IN)
        if needs_values and not self.values:
            raise ValueError(f"operator {self.operator.value} needs at least one value in 'values'")
        if not needs_values and self.values:
            raise ValueError(f"operator {self.operator.value} takes no 'values'")
        return self

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        if self.operator is SelectorOperator.EXISTS:
            return present
        if self.operator is SelectorOperator.DOES_NOT_EXIST:
            return not present
        if self.operator is SelectorOperator.IN:
            return present and labels[self.key] in self.values
        return not present or labels[self.key] not in self.values


class LabelSelector(ApiModel):
    """A Kubernetes label selector. All conditions must hold; an empty selector matches everything."""

    match_labels: dict[str, str] = Field(
        default_factory=dict, description="Labels that must be present with exactly these values."
    )
    match_expressions: list[LabelSelectorRequirement] = Field(
        default_factory=list,
        description="Set-based requirements (In, NotIn, Exists, DoesNotExist).",
        max_length=32,
    )

    @field_validator("match_labels")
    @classmethod
    def _label_keys(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not key:
                raise ValueError("label keys must not be empty")
        return value

    def matches(self, labels: dict[str, str]) -> bool:
        return matches(self, labels)


def matches(selector: LabelSelector | None, labels: dict[str, str]) -> bool:
    """Whether ``labels`` satisfy ``selector`` with Kubernetes semantics.

    ``None`` and an empty selector both match every label set: a Blueprint without a
    ``clusterSelector`` applies to every member cluster, which is the least surprising
    behaviour for a fleet-wide platform standard.
    """
    if selector is None:
        return True
    for key, value in selector.match_labels.items():
        if labels.get(key) != value:
            return False
    return all(req.matches(labels) for req in selector.match_expressions)


class LocalObjectReference(ApiModel):
    """A reference to an object by name (and, for cross-namespace references, namespace)."""

    name: str = Field(description="Name of the referenced object.", max_length=253)
    namespace: str | None = Field(default=None, description="Namespace; defaults to the referrer's namespace.")
