"""``render(blueprint, facts, options) -> DesiredState``: the pure heart of blueprintd.

Given a Blueprint and one cluster's hardware facts, decide which overlays apply (per
cluster and per node pool), apply their patches to add-on values and manifests, compute
node labels, order the add-ons by ``dependsOn`` and point Helm at chart mirrors. No I/O,
no randomness: equal inputs give byte-identical output (``DesiredState.to_json``). The one
clock read is the CEL deadline (``RenderOptions.cel_budget``): a render either finishes with
that output or fails with a budget error, so the clock never changes what is rendered.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from blueprintd.api import yamltext
from blueprintd.api.blueprint import Addon, Blueprint
from blueprintd.api.cel import CelBudget, CelBudgetExceeded, CelError, Meter, from_cel, template_expression, to_cel
from blueprintd.api.checks import label_key_problem, label_value_problem
from blueprintd.api.facts import ClusterFacts
from blueprintd.api.issues import Path, format_path, json_type, json_type_words
from blueprintd.api.params import OverrideError, ParamValue, effective_values, show
from blueprintd.api.pointer import format_pointer, parse_pointer
from blueprintd.api.ref import ObjectRef
from blueprintd.errors import RenderError
from blueprintd.render.activation import cluster_facts, pool_facts
from blueprintd.render.compiled import CompiledBlueprint, CompiledOverlay, compile_blueprint
from blueprintd.render.desired import DesiredState, Explanation, HelmRelease, NodeLabels, Step
from blueprintd.render.patching import (
    PatchFailed,
    WriteLog,
    Writer,
    copy_json,
    flatten_merge,
    json_patch,
    merge_patch,
)
from blueprintd.render.template_types import fits, patch_field_expectation, target_problem
from blueprintd.render.template_types import label_value_problem as template_label_problem


@dataclass(frozen=True)
class RenderOptions:
    """Per-call settings that are not part of the Blueprint.

    ``chart_mirrors`` maps an upstream chart repository URL (or a URL prefix ending at a
    path boundary) to a mirror, e.g. ``{"https://helm.ngc.nvidia.com/nvidia":
    "http://127.0.0.1:8080/nvidia"}``: air-gapped fleets and the test bed reach charts that
    way. ``parameters`` overrides Blueprint parameters for this cluster (from the
    MemberCluster); overriding a parameter the Blueprint does not declare is an error.
    ``cel_budget`` bounds CEL evaluation: cost units per evaluation and a wall-clock deadline
    for the whole render (operator settings ``cel_budget``).
    """

    chart_mirrors: Mapping[str, str] = field(default_factory=dict)
    parameters: Mapping[str, ParamValue] = field(default_factory=dict)
    cel_budget: CelBudget = field(default_factory=CelBudget)


@dataclass(frozen=True)
class Resolved:
    """One template result: where it was written in the overlay, where it landed, what it gave."""

    written: Path  # path in the overlay as written: "patches" or "nodeLabels", then template keys unresolved
    at: tuple[str | int, ...]  # the same path with templated keys resolved
    text: str
    result: Any


def mirror_repo(repo: str, mirrors: Mapping[str, str]) -> tuple[str, str | None]:
    """``(repo to use, upstream repo if a mirror replaced it)``; the longest matching prefix wins."""
    if not mirrors:
        return repo, None
    norm = repo.rstrip("/")
    best = ""
    for upstream in mirrors:
        key = upstream.rstrip("/")
        if (norm == key or norm.startswith(key + "/")) and len(key) > len(best):
            best = key
    if not best:
        return repo, None
    target = next(v for k, v in mirrors.items() if k.rstrip("/") == best).rstrip("/")
    return target + norm[len(best) :], repo


def _manifest_label(addon: str, doc: Any) -> str:
    """How write logs and errors name one manifest of an add-on: ``add-on gpu ConfigMap/cfg``."""
    ref = ObjectRef.of(doc)
    return f"add-on {addon} {ref.kind}/{ref.name}"


def _fmt(value: Any) -> str:
    text = (value or "''") if isinstance(value, str) else json.dumps(value, sort_keys=True, separators=(",", ":"))
    return text if len(text) <= 60 else text[:57] + "..."


class _Workspace:
    """Documents being patched; each is copied from the compiled Blueprint on first write."""

    def __init__(self, compiled: CompiledBlueprint) -> None:
        self.compiled = compiled
        self.values: dict[str, Any] = {}
        self.manifests: dict[tuple[str, int], Any] = {}

    def get_values(self, addon: str) -> Any:
        if addon not in self.values:
            self.values[addon] = copy_json(self.compiled.values[addon])
        return self.values[addon]

    def get_manifest(self, addon: str, index: int) -> Any:
        key = (addon, index)
        if key not in self.manifests:
            manifests = self.compiled.addons[addon].manifests or []
            self.manifests[key] = copy_json(manifests[index])
        return self.manifests[key]


class _Renderer:
    def __init__(self, compiled: CompiledBlueprint, facts: ClusterFacts, options: RenderOptions) -> None:
        self.c = compiled
        self.facts = facts
        self.options = options
        try:
            spec = compiled.blueprint.spec
            self.params: dict[str, Any] = effective_values(spec.parameters, options.parameters, compiled.name)
        except OverrideError as exc:
            raise RenderError(str(exc)) from None
        self.pools = sorted(facts.pools, key=lambda p: p.name)
        self.pool_data = {p.name: pool_facts(p) for p in self.pools}
        self.cluster_data = cluster_facts(facts, [self.pool_data[p.name] for p in self.pools])
        self.base_activation: dict[str, Any] | None = None  # CEL values, built on first use
        self.pool_cel: dict[str, Any] = {}
        self.ws = _Workspace(compiled)
        self.log = WriteLog()
        self.labels: dict[str, dict[str, tuple[Writer, str]]] = {}
        self.explanations: list[Explanation] = []
        self.budget = options.cel_budget
        self.deadline = time.monotonic() + self.budget.timeout_seconds

    # --- overlays -----------------------------------------------------------------------

    def activation(self, pool: str | None) -> dict[str, Any]:
        if self.base_activation is None:
            self.base_activation = {"cluster": to_cel(self.cluster_data), "params": to_cel(self.params)}
        if pool is None:
            return self.base_activation
        if pool not in self.pool_cel:
            self.pool_cel[pool] = to_cel(self.pool_data[pool])
        return {**self.base_activation, "pool": self.pool_cel[pool]}

    def plain(self, pool: str | None) -> dict[str, Any]:
        """The CEL variables as plain data (memo keys, explanations)."""
        out: dict[str, Any] = {"cluster": self.cluster_data, "params": self.params}
        if pool is not None:
            out["pool"] = self.pool_data[pool]
        return out

    def where(self, co: CompiledOverlay, pool: str | None) -> str:
        return f"overlay {co.name!r}" + (f" (pool {pool})" if pool else "")

    def meter(self) -> Meter:
        return Meter(self.budget.cost, self.deadline, self.budget.timeout_seconds)

    def over_budget(self, co: CompiledOverlay, pool: str | None, path: str, exc: CelBudgetExceeded) -> RenderError:
        """The error of an evaluation that ran out of budget: which Blueprint, overlay and field,
        which budget, and how to raise it."""
        setting = (
            "BLUEPRINTD_CEL_COST_BUDGET (operator setting cel_budget.cost)"
            if exc.what == "cost"
            else "BLUEPRINTD_RENDER_TIMEOUT (operator setting cel_budget.timeout_seconds)"
        )
        return RenderError(
            f"Blueprint {self.c.name!r} {self.where(co, pool)}, {path}: {exc}; nothing was applied for this "
            f"Blueprint (simplify the expression, or raise {setting})"
        )

    def decide(self, co: CompiledOverlay, pool: str | None) -> bool:
        subject = f"pool {pool}" if pool else f"cluster {self.facts.cluster or '(unnamed)'}"
        if co.when is None:
            self.explain(co, pool, True, f"{subject}: no condition, always applies")
            return True
        try:
            result = co.when.evaluate_memo(self.plain(pool), lambda: self.activation(pool), self.meter)
        except CelBudgetExceeded as exc:
            raise self.over_budget(co, pool, self.spec_path(co, ("when",)), exc) from None
        except CelError as exc:
            raise RenderError(f"{self.where(co, pool)}: condition {co.overlay.when!r} failed: {exc}") from None
        if not isinstance(result, bool):
            raise RenderError(
                f"{self.where(co, pool)}: condition {co.overlay.when!r} must be true or false, got {_fmt(result)}"
            )
        parts = []
        for root, name in co.when.refs:
            if root == "pool" and pool is not None:
                parts.append(f"{name}={_fmt(self.pool_data[pool].get(name))}")
            elif root == "params":
                parts.append(f"params.{name}={_fmt(self.params.get(name))}")
            elif root == "cluster":
                parts.append(f"cluster.{name}={_fmt(self.cluster_data.get(name))}")
        facts = ", ".join(parts) if parts else co.overlay.when
        self.explain(co, pool, result, f"{subject}: {facts} → {'true' if result else 'false'}")
        return result

    def explain(self, co: CompiledOverlay, pool: str | None, fired: bool, reason: str) -> None:
        scope = "nodePool" if co.scope == "nodePool" else "cluster"
        self.explanations.append(Explanation(overlay=co.name, scope=scope, pool=pool, fired=fired, reason=reason))

    def resolve(self, co: CompiledOverlay, pool: str | None, root: str, value: Any) -> tuple[Any, list[Resolved]]:
        """``value`` (the overlay's ``root``: patches or nodeLabels) with every ``${ CEL }``
        string (and map key) replaced by its result, and where each result landed (for the
        type checks of ``template_types``)."""
        if not co.templates:
            return value, []
        plain = self.plain(pool)
        found: list[Resolved] = []

        def evaluate(text: str, expr: str, written: Path) -> Any:
            try:
                # memoised results are shared: copy before they go into documents
                return copy_json(co.templates[expr].evaluate_memo(plain, lambda: self.activation(pool), self.meter))
            except CelBudgetExceeded as exc:
                raise self.over_budget(co, pool, self.spec_path(co, written), exc) from None
            except CelError as exc:
                raise RenderError(f"{self.where(co, pool)}: template {text!r} failed: {exc}") from None

        def walk(node: Any, written: Path, at: Path) -> Any:
            if isinstance(node, str):
                expr = template_expression(node)
                if expr is None:
                    return node
                result = evaluate(node, expr, written)
                found.append(Resolved(written, at, node, result))
                return result
            if isinstance(node, dict):
                out = {}
                for key, child in node.items():
                    expr = template_expression(key)
                    new_key = key if expr is None else evaluate(key, expr, (*written, key))
                    if not isinstance(new_key, str):
                        raise RenderError(
                            f"{self.where(co, pool)}: template key {key!r} gave {_fmt(new_key)}, not a string"
                        )
                    out[new_key] = walk(child, (*written, key), (*at, new_key))
                return out
            if isinstance(node, list):
                return [walk(child, (*written, i), (*at, i)) for i, child in enumerate(node)]
            return node

        return walk(value, (root,), ()), found

    @staticmethod
    def spec_path(co: CompiledOverlay, sub: Path) -> str:
        """Where ``sub`` (a path inside the overlay) is in the Blueprint: ``spec.overlays[2].when``."""
        return format_path(("spec", "overlays", co.index, *sub))

    def template_error(self, co: CompiledOverlay, pool: str | None, r: Resolved, problem: str) -> RenderError:
        """The refusal of a template result that does not fit its target, with both paths."""
        return RenderError(
            f"{self.where(co, pool)}: template {r.text!r} at {self.spec_path(co, r.written)} gave {show(r.result)} "
            f"({json_type_words(json_type(r.result))}): {problem}"
        )

    def check_templates(
        self, co: CompiledOverlay, pool: str | None, index: int, patch: Any, resolved: list[Resolved]
    ) -> None:
        """Refuse template results of patch ``index`` that do not fit where they land."""
        for r in resolved:
            if not r.at or r.at[0] != index:
                continue
            sub = r.at[1:]
            expected = patch_field_expectation(sub)
            if expected:
                if not fits(expected, r.result):
                    takes = f"{format_path(sub)} takes {json_type_words(expected)}"
                    raise self.template_error(co, pool, r, takes)
                continue
            if not sub or not isinstance(patch.get("addon"), str) or patch["addon"] not in self.c.addons:
                continue  # apply_patch reports the unknown add-on
            addon = self.c.addons[patch["addon"]]
            head = sub[0]
            if head in ("values", "valuesJsonPatch"):
                if addon.helm is None:
                    continue
                doc, label, manifest = self.ws.get_values(addon.name), f"add-on {addon.name} values", False
            elif head in ("mergePatch", "jsonPatch"):
                try:
                    j = self.find_target(addon, patch.get("target", {}), "")
                except RenderError:
                    continue  # apply_patch reports the missing target
                doc = self.ws.get_manifest(addon.name, j)
                label, manifest = _manifest_label(addon.name, doc), True
            else:
                continue
            if head in ("values", "mergePatch"):
                tokens = [str(t) for t in sub[1:]]
            else:
                if len(sub) < 3 or sub[2] != "value" or not isinstance(sub[1], int):
                    continue
                op = patch[head][sub[1]]
                if op.get("op") not in ("add", "replace", "test") or not isinstance(op.get("path"), str):
                    continue
                try:
                    tokens = [*parse_pointer(op["path"]), *(str(t) for t in sub[3:])]
                except ValueError:
                    continue  # apply_patch reports the malformed pointer
            problem = target_problem(doc, tokens, r.result, manifest=manifest)
            if problem:
                pointer = format_pointer(tokens) or "/"
                raise self.template_error(co, pool, r, f"{label} {pointer}: {problem}")

    def apply(self, co: CompiledOverlay, pool: str | None) -> None:
        writer = Writer(co.name, pool)
        patches, resolved = self.resolve(co, pool, "patches", co.patches)
        for index, patch in enumerate(patches):
            self.check_templates(co, pool, index, patch, resolved)
            self.apply_patch(co, pool, writer, index, patch)
        if co.overlay.node_labels and pool is not None:
            labels, resolved_labels = self.resolve(co, pool, "nodeLabels", dict(co.overlay.node_labels))
            for r in resolved_labels:
                if len(r.at) == 1 and (problem := template_label_problem(r.result)):
                    raise self.template_error(co, pool, r, problem)
            mine = self.labels.setdefault(pool, {})
            for key, value in labels.items():
                text = value if isinstance(value, str) else from_cel(value)
                text = text if isinstance(text, str) else json.dumps(text)
                problem = label_key_problem(key) or label_value_problem(text)
                if problem:
                    raise RenderError(f"{self.where(co, pool)}: node label: {problem}")
                previous = mine.get(key)
                if previous is not None and previous[0] != writer and previous[1] != text:
                    raise RenderError(
                        f"{previous[0]} and {writer} both set node label {key} on pool {pool} to different "
                        f"values ({previous[1]!r} vs {text!r}); make their conditions exclusive"
                    )
                mine[key] = (writer, text)

    def apply_patch(self, co: CompiledOverlay, pool: str | None, writer: Writer, index: int, patch: Any) -> None:
        name = patch.get("addon")
        addon = self.c.addons.get(name) if isinstance(name, str) else None
        where = f"{self.where(co, pool)} patch {index}"
        if addon is None:
            raise RenderError(f"{where}: no add-on named {name!r}")
        try:
            if "values" in patch or "valuesJsonPatch" in patch:
                if addon.helm is None:
                    raise RenderError(f"{where}: add-on {addon.name!r} is not a Helm chart")
                label = f"add-on {addon.name} values"
                doc = self.ws.get_values(addon.name)
                if "values" in patch:
                    for path, value in flatten_merge(patch["values"]):
                        self.log.record(label, path, value, writer)
                    self.ws.values[addon.name] = merge_patch(doc, patch["values"])
                else:
                    new, writes = json_patch(doc, patch["valuesJsonPatch"])
                    for path, value in writes:
                        self.log.record(label, path, value, writer)
                    self.ws.values[addon.name] = new
                return
            j = self.find_target(addon, patch.get("target", {}), where)
            doc = self.ws.get_manifest(addon.name, j)
            label = _manifest_label(addon.name, doc)
            if "mergePatch" in patch:
                for path, value in flatten_merge(patch["mergePatch"]):
                    self.log.record(label, path, value, writer)
                self.ws.manifests[(addon.name, j)] = merge_patch(doc, patch["mergePatch"])
            else:
                new, writes = json_patch(doc, patch["jsonPatch"])
                for path, value in writes:
                    self.log.record(label, path, value, writer)
                self.ws.manifests[(addon.name, j)] = new
        except PatchFailed as exc:
            raise RenderError(f"{where} on add-on {addon.name!r}: {exc}") from None
        except ValueError as exc:  # malformed pointer produced by a template
            raise RenderError(f"{where} on add-on {addon.name!r}: {exc}") from None

    def find_target(self, addon: Addon, target: dict[str, Any], where: str) -> int:
        for j, obj in enumerate(addon.manifests or []):
            api_version, kind, namespace, name = ObjectRef.of(obj)
            if kind == target.get("kind") and name == target.get("name"):
                if target.get("namespace") not in (None, namespace):
                    continue
                if target.get("apiVersion") not in (None, api_version):
                    continue
                return j
        raise RenderError(f"{where}: add-on {addon.name!r} has no {target.get('kind')} named {target.get('name')!r}")

    def run_overlays(self) -> None:
        for co in self.c.overlays:
            if co.scope == "cluster":
                if self.decide(co, None):
                    self.apply(co, None)
                continue
            if not self.pools:
                self.explain(co, None, False, "cluster has no node pools")
            for pool in self.pools:
                if self.decide(co, pool.name):
                    self.apply(co, pool.name)

    # --- output -------------------------------------------------------------------------

    def helm_release(self, addon: Addon) -> HelmRelease:
        helm = addon.helm
        assert helm is not None
        values = self.ws.values.get(addon.name)
        if values is None:
            values = copy_json(self.c.values[addon.name])
        for pointer in helm.encode_as_yaml:
            _encode_as_yaml(values, parse_pointer(pointer))
        repo, upstream = mirror_repo(helm.repo, self.options.chart_mirrors)
        return HelmRelease(
            release_name=addon.release_name,
            namespace=addon.namespace or "",
            repo=repo,
            chart=helm.chart,
            version=helm.version,
            values=values,
            upstream_repo=upstream,
        )

    def steps(self) -> list[Step]:
        user_addons = {a.name for a in self.c.blueprint.spec.addons}
        steps = []
        for name in self.c.order:
            addon = self.c.addons[name]
            helm = self.helm_release(addon) if addon.helm is not None else None
            manifests = None
            if addon.manifests is not None:
                manifests = [
                    self.ws.manifests[(name, j)] if (name, j) in self.ws.manifests else copy_json(obj)
                    for j, obj in enumerate(addon.manifests)
                ]
            steps.append(
                Step(
                    addon=name,
                    namespace=addon.namespace,
                    depends_on=sorted(set(addon.depends_on)),
                    helm=helm,
                    manifests=manifests,
                    readiness=addon.readiness,
                    drift=self.c.drift[name],
                    generated=name not in user_addons,
                )
            )
        return steps

    def node_labels(self) -> list[NodeLabels]:
        out = []
        for pool in self.pools:
            labels = self.labels.get(pool.name)
            if labels:
                out.append(
                    NodeLabels(
                        pool=pool.name,
                        nodes=sorted(pool.nodes),
                        labels={k: v for k, (_, v) in sorted(labels.items())},
                    )
                )
        return out

    def render(self) -> DesiredState:
        self.run_overlays()
        return DesiredState(
            blueprint=self.c.name,
            version=self.c.version,
            revision=self.c.revision,
            cluster=self.facts.cluster,
            parameters=dict(sorted(self.params.items())),
            steps=self.steps(),
            node_labels=self.node_labels(),
            node_label_drift=self.c.blueprint.spec.drift.mode,
            explanations=self.explanations,
        )


def _encode_as_yaml(doc: Any, tokens: list[str]) -> None:
    """Replace structured data at ``tokens`` ('*' = every key) by its YAML text, in place."""
    if not tokens or not isinstance(doc, dict):
        return
    head, rest = tokens[0], tokens[1:]
    keys = sorted(doc) if head == "*" else ([head] if head in doc else [])
    for key in keys:
        if rest:
            _encode_as_yaml(doc[key], rest)
        elif isinstance(doc[key], dict | list):
            doc[key] = yamltext.dump(doc[key], sort_keys=True, default_flow_style=False, width=1000)


def render(
    blueprint: Blueprint | CompiledBlueprint, facts: ClusterFacts, options: RenderOptions | None = None
) -> DesiredState:
    """Render ``blueprint`` for the cluster described by ``facts``.

    ``blueprint`` may be pre-compiled with ``compile_blueprint`` (the operator does this per
    BlueprintRevision); otherwise it is compiled here, with a cache keyed by content hash.
    Raises ``InvalidInput`` for an invalid Blueprint and ``RenderError`` when the Blueprint
    cannot be applied to these facts (conflicting overlays, a patch to a missing field, a
    condition that fails to evaluate).
    """
    compiled = blueprint if isinstance(blueprint, CompiledBlueprint) else compile_blueprint(blueprint)
    return _Renderer(compiled, facts, options or RenderOptions()).render()
