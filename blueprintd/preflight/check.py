"""Chart pre-flight, the pure part: what to template, and what a failure means.

blueprintd renders every cluster's Helm values itself, so it can ask the real chart whether
it accepts them before a version reaches any cluster. This module decides *what* to run and
*how to read* the answer; ``blueprintd.preflight.helm`` runs helm. Rules:

* **One check per distinct input.** Two clusters whose rendered values for an add-on are
  equal (same repository, chart, version, release, namespace and values) are checked once;
  the result names every cluster it stands for. A fleet of 100 identical clusters costs one
  ``helm template`` per add-on.
* **Problems have kinds**, so a user knows what to fix:
  ``schema`` (the chart's ``values.schema.json`` rejects a value: fix the key or its type),
  ``template`` (the chart's templates fail with these values: Helm's own message),
  ``unknown-key`` (a key the chart's default values do not define: most often a typo; only
  reported for charts without a schema, which catch these themselves),
  ``unavailable`` (the chart could not be pulled: network, mirror or cache; nothing was
  checked).
* **Unknown keys** are found by walking the values next to the chart's ``values.yaml``: a key
  is unknown when its parent is a map in the defaults that does not have it. A default map is
  free-form, and anything goes below it, when it is empty, ``null`` or not a map; when one of
  its keys contains ``/`` or ``.`` (labels, annotations, file names: ``nodeSelector:
  {nvidia.com/gpu.present: "true"}``); or when its key is a Kubernetes field that takes any
  keys (``nodeSelector``, ``labels``, ``annotations``, ``resources``, ``affinity``, …). Lists
  are not descended.
* A chart-level problem (``unavailable``) is reported once per check, never per key.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Collection, Iterable, Mapping
from typing import Any, Literal

from pydantic import Field

from blueprintd.api.base import ApiModel
from blueprintd.render.desired import DesiredState, HelmRelease

ProblemKind = Literal["schema", "template", "unknown-key", "unavailable"]


class Problem(ApiModel):
    """One thing the chart refuses (or could not be asked)."""

    kind: ProblemKind = Field(description="schema | template | unknown-key | unavailable.")
    message: str = Field(description="What is wrong; Helm's own text for schema and template problems.")
    path: str | None = Field(default=None, description="Dotted values path, where known.")

    def __str__(self) -> str:
        where = f" {self.path}:" if self.path else ""
        return f"{self.kind}:{where} {self.message}"


class ChartCheck(ApiModel):
    """One add-on's chart templated with one set of values, and what came of it."""

    addon: str = Field(description="Add-on name.")
    repo: str = Field(description="Repository the chart was pulled from (after chart mirrors).")
    chart: str = Field(description="Chart name.")
    version: str = Field(description="Chart version.")
    release: str = Field(description="Helm release name.")
    namespace: str = Field(description="Release namespace.")
    targets: list[str] = Field(default_factory=list, description="Clusters whose rendered values these are.")
    values_hash: str = Field(description="sha256 of the canonical values JSON.")
    problems: list[Problem] = Field(default_factory=list, description="Empty when the chart accepts the values.")
    objects: int = Field(default=0, description="Objects the chart rendered (0 when it failed).")

    @property
    def ok(self) -> bool:
        return not self.problems


class PreflightReport(ApiModel):
    """Every chart check of one pre-flight run."""

    checks: list[ChartCheck] = Field(default_factory=list, description="One per distinct (add-on, values).")

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failed(self) -> list[ChartCheck]:
        return [c for c in self.checks if not c.ok]

    def summary(self, kinds: Collection[ProblemKind] | None = None) -> str:
        """One line per problem (of ``kinds``, default all) of a failing (add-on, clusters):
        what the operator puts in a condition."""
        return "\n".join(
            f"add-on {c.addon} ({c.chart} {c.version}) for {', '.join(c.targets)}: {p}"
            for c in self.failed
            for p in c.problems
            if kinds is None or p.kind in kinds
        )

    def refusal(self) -> str:
        """Why a version must not roll out, or "" when it may.

        Only what fails on every cluster it was rendered for refuses a version: a template
        error or a value the chart's schema rejects. An unknown key (the chart ignores it) and
        a chart that could not be pulled right now (the member's own retries will pull it) do
        not."""
        return self.summary(REFUSING_KINDS)


# The problems that stop a version from rolling out (see ``PreflightReport.refusal``).
REFUSING_KINDS: frozenset[ProblemKind] = frozenset({"template", "schema"})


def values_hash(values: Mapping[str, Any]) -> str:
    """Canonical hash of Helm values: equal content, equal hash, whatever the key order."""
    text = json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def plan_checks(states: Iterable[DesiredState]) -> list[tuple[ChartCheck, HelmRelease]]:
    """The distinct chart checks for rendered states, in first-seen order (see module rules)."""
    found: dict[tuple[str, ...], tuple[ChartCheck, HelmRelease]] = {}
    for state in states:
        for step in state.steps:
            rel = step.helm
            if rel is None:
                continue
            digest = values_hash(rel.values)
            key = (step.addon, rel.repo, rel.chart, rel.version, rel.release_name, rel.namespace, digest)
            if key not in found:
                check = ChartCheck(
                    addon=step.addon,
                    repo=rel.repo,
                    chart=rel.chart,
                    version=rel.version,
                    release=rel.release_name,
                    namespace=rel.namespace,
                    values_hash=digest,
                )
                found[key] = (check, rel)
            targets = found[key][0].targets
            if state.cluster not in targets:
                targets.append(state.cluster)
    return list(found.values())


# Kubernetes fields whose keys are the user's (see the module rules).
FREE_FORM_KEYS = frozenset(
    {
        "nodeSelector",
        "labels",
        "annotations",
        "podLabels",
        "podAnnotations",
        "commonLabels",
        "resources",
        "affinity",
        "securityContext",
        "podSecurityContext",
        "containerSecurityContext",
        "data",
        "stringData",
    }
)


def _free_form(key: str, default: Any) -> bool:
    if not isinstance(default, Mapping) or not default or key in FREE_FORM_KEYS:
        return True
    return any("/" in str(k) or "." in str(k) for k in default)


def undefined_keys(values: Any, defaults: Any, prefix: str = "", key: str = "") -> list[str]:
    """Dotted paths of keys in ``values`` that ``defaults`` (the chart's values.yaml) lacks."""
    if not isinstance(values, Mapping) or _free_form(key, defaults):
        return []
    out: list[str] = []
    for k in sorted(values, key=str):
        path = f"{prefix}.{k}" if prefix else str(k)
        if k not in defaults:
            out.append(path)
        else:
            out.extend(undefined_keys(values[k], defaults[k], path, str(k)))
    return out


def unknown_key_problems(values: Mapping[str, Any], defaults: Mapping[str, Any], chart: str) -> list[Problem]:
    return [
        Problem(
            kind="unknown-key",
            path=path,
            message=f"chart {chart} does not define {path} in its default values (a typo? the chart ignores it)",
        )
        for path in undefined_keys(values, defaults)
    ]


# helm 3.18+ (santhosh-tekuri/jsonschema): "- at '/shims/disableAll': got boolean, want object";
# older helm (gojsonschema): "- shims.disableAll: Invalid type. Expected: object, given: boolean".
_SCHEMA_HEADER = "values don't meet the specifications of the schema"
_AT_POINTER = re.compile(r"^-?\s*at '([^']*)':\s*(.+)$")
_DOTTED = re.compile(r"^-\s*([^:\s]+):\s*(.+)$")


def template_problems(stderr: str) -> list[Problem]:
    """Problems in a failed ``helm template``'s stderr: one per schema violation, or the
    template error as Helm wrote it."""
    text = stderr.strip().removeprefix("Error: ").strip()
    if _SCHEMA_HEADER not in text:
        return [Problem(kind="template", message=_bounded(text) or "helm template failed without a message")]
    problems: list[Problem] = []
    for raw in text.splitlines():
        line = raw.strip()
        if m := _AT_POINTER.match(line):
            pointer, msg = m.groups()
            path = ".".join(p.replace("~1", "/").replace("~0", "~") for p in pointer.strip("/").split("/") if p)
            problems.append(Problem(kind="schema", path=path or None, message=msg.strip()))
        elif (m := _DOTTED.match(line)) and not line.startswith("- at "):
            problems.append(Problem(kind="schema", path=m.group(1), message=m.group(2).strip()))
    # helm nests the violations under their parent ("at '/shims': validation failed"): the
    # parent line says nothing the nested ones do not.
    specific = [p for p in problems if p.message != "validation failed"]
    return specific or problems or [Problem(kind="schema", message=_bounded(text))]


def _bounded(text: str, limit: int = 2000) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
