"""Limits on what a Blueprint may hold and on the CEL it may run, checked at validate time.

Blueprints arrive from git and from ``kubectl apply``: untrusted input that the operator
stores (a BlueprintRevision embeds the whole spec, and etcd refuses objects over 1.5 MiB),
renders for every selected member and hands to Helm (a release secret holds the values). So
besides the schema's own caps, a Blueprint is refused up front when:

* a CEL expression's estimated worst-case cost (``celcost``) is over ``cel_cost``;
* it is bigger than ``spec_bytes`` as JSON, an add-on's values (or one overlay patch) bigger
  than ``values_bytes``, it holds more than ``manifests`` manifests in all, more than
  ``addons`` add-ons or ``overlays`` overlays, a string longer than ``string_bytes``, a
  templated ``${ … }`` expression longer than ``expression_bytes``, or documents nested
  deeper than ``depth``.

Every refusal names the field path, what was found and the limit, in the style of
Kubernetes' own messages (``Too long: …``, ``Forbidden: estimated CEL cost …``). Defaults are
documented in docs/blueprints.md; the operator takes raised limits from its settings and
``blueprintd validate`` from flags.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from blueprintd.api.blueprint import MAX_ADDONS, MAX_OVERLAYS, BlueprintSpec
from blueprintd.api.cel import DEFAULT_COST_BUDGET, CelError, iter_templates, template_expression
from blueprintd.api.celcost import CostEstimateError, estimate, variable_shapes
from blueprintd.api.expand import effective_addons
from blueprintd.api.issues import Issue, Path


@dataclass(frozen=True)
class BlueprintLimits:
    """Validate-time limits (operator settings ``blueprint_limits``)."""

    cel_cost: int = DEFAULT_COST_BUDGET  # estimated cost of one CEL expression
    spec_bytes: int = 1024 * 1024  # the whole spec, as compact JSON
    values_bytes: int = 512 * 1024  # one add-on's Helm values, or one overlay patch
    manifests: int = 1024  # manifests of all add-ons together (policies included)
    addons: int = MAX_ADDONS  # the CRD schema caps these two at 64 whatever the setting
    overlays: int = MAX_OVERLAYS
    string_bytes: int = 256 * 1024  # any one string (values, manifests, descriptions)
    expression_bytes: int = 4096  # a templated ${ … } expression (overlay `when` has the same schema cap)
    depth: int = 64  # nesting of maps and lists in values, patches and manifests


DEFAULT_LIMITS = BlueprintLimits()


def _json_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def _walk(value: Any, path: Path) -> Iterator[tuple[Path, Any, int]]:
    """Every node under ``value`` with its path and depth (iterative: depth is what we check)."""
    stack: list[tuple[Path, Any, int]] = [(path, value, 0)]
    while stack:
        at, node, depth = stack.pop()
        yield at, node, depth
        if isinstance(node, dict):
            for key, child in reversed(list(node.items())):
                yield (*at, str(key)), str(key), depth + 1  # keys are strings too
                stack.append(((*at, str(key)), child, depth + 1))
        elif isinstance(node, list):
            for i in reversed(range(len(node))):
                stack.append(((*at, i), node[i], depth + 1))


def _factor(cost: int, limit: int) -> str:
    factor = cost / max(limit, 1)
    return f"{factor:.1f}x" if factor < 100 else f"{factor:,.0f}x"


class _LimitChecker:
    def __init__(self, spec: BlueprintSpec, root: Path, limits: BlueprintLimits) -> None:
        self.spec = spec
        self.root = root
        self.limits = limits
        self.issues: list[Issue] = []

    def add(self, message: str, path: Path) -> None:
        self.issues.append(Issue(message, (*self.root, *path)))

    def sizes(self) -> None:
        lim = self.limits
        wire = self.spec.model_dump(by_alias=True, exclude_defaults=True, mode="json")
        total = _json_size(wire)
        if total > lim.spec_bytes:
            self.add(
                f"Too long: the Blueprint is {total} bytes as JSON, more than the limit of {lim.spec_bytes} "
                "(split it into several Blueprints, or move large configuration into the charts)",
                (),
            )
        if len(self.spec.addons) > lim.addons:
            self.add(f"Too many: {len(self.spec.addons)}: must have at most {lim.addons} add-ons", ("addons",))
        if len(self.spec.overlays) > lim.overlays:
            self.add(f"Too many: {len(self.spec.overlays)}: must have at most {lim.overlays} overlays", ("overlays",))
        manifests = sum(len(a.manifests or []) for a in effective_addons(self.spec))
        if manifests > lim.manifests:
            self.add(
                f"Too many: {manifests} manifests in all add-ons (policies included): "
                f"must have at most {lim.manifests}",
                ("addons",),
            )
        for i, addon in enumerate(wire.get("addons") or []):
            values = (addon.get("helm") or {}).get("values")
            if values is not None and (size := _json_size(values)) > lim.values_bytes:
                self.add(
                    f"Too long: {size} bytes of Helm values, more than the limit of {lim.values_bytes}",
                    ("addons", i, "helm", "values"),
                )
        for k, overlay in enumerate(wire.get("overlays") or []):
            for p, patch in enumerate(overlay.get("patches") or []):
                if (size := _json_size(patch)) > lim.values_bytes:
                    self.add(
                        f"Too long: the patch is {size} bytes, more than the limit of {lim.values_bytes}",
                        ("overlays", k, "patches", p),
                    )
        deep_reported = False
        for at, node, depth in _walk(wire, ()):
            if depth > lim.depth and not deep_reported:
                deep_reported = True
                self.add(f"Too deep: nested more than {lim.depth} levels of maps and lists", at)
            if isinstance(node, str):
                if len(node) > lim.string_bytes:
                    self.add(f"Too long: may not be more than {lim.string_bytes} characters (got {len(node)})", at)
                elif (expr := template_expression(node)) is not None and len(expr) > lim.expression_bytes:
                    self.add(
                        f"Too long: templated CEL expression may not be more than {lim.expression_bytes} "
                        f"characters (got {len(expr)})",
                        at,
                    )

    def cel_costs(self) -> None:
        for k, overlay in enumerate(self.spec.overlays):
            variables = variable_shapes(overlay.scope, self.spec.parameters)
            at: Path = ("overlays", k)
            if overlay.when.strip() != "true":
                self.cost(overlay.when, variables, (*at, "when"))
            for key, value in overlay.node_labels.items():
                for text in (key, value):
                    if (expr := template_expression(text)) is not None:
                        self.cost(expr, variables, (*at, "nodeLabels", key))
            for p, patch in enumerate(overlay.patches):
                wire = patch.model_dump(by_alias=True, exclude_none=True, mode="json")
                for sub, expr in iter_templates(wire):
                    self.cost(expr, variables, (*at, "patches", p, *sub))

    def cost(self, text: str, variables: Any, path: Path) -> None:
        if len(text) > self.limits.expression_bytes * 4:
            return  # already refused as too long; estimating it would only repeat that
        try:
            cost, _ = estimate(text, variables)
        except CostEstimateError as exc:  # something that can never work
            self.add(f"Invalid value: {exc}", path)
            return
        except CelError:
            return  # syntax and name errors are reported by the semantic checks
        limit = self.limits.cel_cost
        if cost > limit:
            self.add(
                f"Forbidden: estimated CEL cost {cost} exceeds the limit of {limit} by a factor of "
                f"{_factor(cost, limit)} (simplify the expression: each nested comprehension multiplies "
                "the cost by the size of its list; or raise the limit: operator setting "
                "BLUEPRINTD_CEL_COST_LIMIT, blueprintd validate --cel-cost-limit)",
                path,
            )

    def run(self) -> list[Issue]:
        self.sizes()
        self.cel_costs()
        return self.issues


def check_limits(spec: BlueprintSpec, root: Path = ("spec",), limits: BlueprintLimits = DEFAULT_LIMITS) -> list[Issue]:
    """Every limit ``spec`` exceeds, as issues whose paths start at ``root``."""
    return _LimitChecker(spec, root, limits).run()
