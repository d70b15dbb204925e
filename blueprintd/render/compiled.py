"""A Blueprint prepared for rendering many clusters: checked, ordered, CEL compiled.

Compiling is the expensive, cluster-independent part of rendering (semantic checks, CEL
parsing, topological order, overlay precedence). It happens once per Blueprint content and
is cached by (name, content hash), so rendering the same Blueprint for thousands of clusters
only evaluates CEL and applies patches.

Overlay precedence (documented in docs/blueprints.md): cluster-scope overlays first, then
nodePool-scope ones; within a scope by ``priority`` (lower first), then by name; a nodePool
overlay is applied to pools in name order. Precedence fixes the order of JSON patch
operations and of explanations; it never decides a conflict — two overlays that set the
same field to different values are a render error.
"""

from __future__ import annotations

import heapq
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from blueprintd.api.blueprint import Addon, Blueprint, DriftIgnore, DriftPolicy, Overlay
from blueprintd.api.cel import CelProgram, compile_cel, iter_templates
from blueprintd.api.checks import cel_variables, check_spec
from blueprintd.api.expand import effective_addons
from blueprintd.api.issues import InvalidInput
from blueprintd.api.limits import DEFAULT_LIMITS, BlueprintLimits
from blueprintd.errors import RenderError

_CACHE_SIZE = 64
_cache: OrderedDict[tuple[str, str, BlueprintLimits], CompiledBlueprint] = OrderedDict()
_cache_lock = threading.Lock()


@dataclass(frozen=True)
class CompiledOverlay:
    overlay: Overlay
    when: CelProgram | None  # None: no condition, always applies
    patches: list[dict[str, Any]]  # wire form
    templates: dict[str, CelProgram]  # CEL text → program, for ``${ ... }`` strings
    index: int  # position in spec.overlays, for error messages

    @property
    def name(self) -> str:
        return self.overlay.name

    @property
    def scope(self) -> str:
        return self.overlay.scope


@dataclass(frozen=True)
class CompiledBlueprint:
    """Everything about a Blueprint that does not depend on the cluster."""

    blueprint: Blueprint
    revision: str
    addons: dict[str, Addon]
    order: list[str]
    overlays: list[CompiledOverlay]
    drift: dict[str, DriftPolicy]
    values: dict[str, dict[str, Any]]  # helm add-on → base values (never mutated)

    @property
    def name(self) -> str:
        return self.blueprint.name

    @property
    def version(self) -> str:
        return self.blueprint.spec.version


def topological_order(addons: list[Addon]) -> list[str]:
    """Add-on names so that each comes after its ``dependsOn``; ties broken by name.

    Raises ``RenderError`` for unknown dependencies and cycles (naming the add-ons).
    """
    names = {a.name for a in addons}
    deps = {a.name: set(a.depends_on) for a in addons}
    for name, wanted in deps.items():
        missing = sorted(wanted - names)
        if missing:
            raise RenderError(f"add-on {name!r} depends on unknown add-on {missing[0]!r}")
    users: dict[str, list[str]] = {n: [] for n in names}
    for name, wanted in deps.items():
        for dep in wanted:
            users[dep].append(name)
    remaining = {n: len(d) for n, d in deps.items()}
    ready = [n for n, count in remaining.items() if count == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        name = heapq.heappop(ready)
        order.append(name)
        for user in users[name]:
            remaining[user] -= 1
            if remaining[user] == 0:
                heapq.heappush(ready, user)
    if len(order) != len(names):
        stuck = sorted(n for n, c in remaining.items() if c > 0)
        raise RenderError("dependency cycle among add-ons: " + ", ".join(stuck))
    return order


def _compile_overlay(overlay: Overlay, params: set[str], index: int) -> CompiledOverlay:
    variables = cel_variables(overlay.scope, params)
    when = None if overlay.when.strip() == "true" else compile_cel(overlay.when, variables)
    patches = [p.model_dump(by_alias=True, exclude_none=True, mode="json") for p in overlay.patches]
    for wire, patch in zip(patches, overlay.patches, strict=True):
        # ``value: null`` in a JSON patch op is meaningful; exclude_none dropped it.
        for field in ("valuesJsonPatch", "jsonPatch"):
            ops = patch.values_json_patch if field == "valuesJsonPatch" else patch.json_patch
            if ops is not None:
                wire[field] = [op.to_wire() for op in ops]
    templates = {
        expr: compile_cel(expr, variables)
        for _, expr in [*iter_templates(patches), *iter_templates(dict(overlay.node_labels))]
    }
    return CompiledOverlay(overlay, when, patches, templates, index)


def _precedence(overlay: Overlay) -> tuple[int, int, str]:
    return (0 if overlay.scope == "cluster" else 1, overlay.priority, overlay.name)


def compile_blueprint(blueprint: Blueprint, limits: BlueprintLimits = DEFAULT_LIMITS) -> CompiledBlueprint:
    """Check and compile ``blueprint`` (cached by name, content hash and limits).

    Raises ``InvalidInput`` when the Blueprint fails its semantic checks or exceeds ``limits``
    (CEL cost, sizes; see ``blueprintd.api.limits``).
    """
    revision = blueprint.content_hash()
    key = (blueprint.name, revision, limits)
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    issues = check_spec(blueprint.spec, limits=limits)
    if issues:
        raise InvalidInput([i.__class__(i.message, i.path, i.allowed, blueprint.name) for i in issues])
    # Work on a private copy: later changes to the caller's object must not reach the cache.
    blueprint = blueprint.model_copy(deep=True)
    spec = blueprint.spec
    addons = effective_addons(spec)
    by_name = {a.name: a for a in addons}
    base_ignore: list[DriftIgnore] = list(spec.drift.ignore)
    drift = {
        a.name: DriftPolicy(
            mode=(a.drift.mode if a.drift and a.drift.mode else spec.drift.mode),
            ignore=base_ignore + (list(a.drift.ignore) if a.drift else []),
        )
        for a in addons
    }
    params = set(spec.parameters)
    position = {id(o): i for i, o in enumerate(spec.overlays)}
    overlays = [_compile_overlay(o, params, position[id(o)]) for o in sorted(spec.overlays, key=_precedence)]
    compiled = CompiledBlueprint(
        blueprint=blueprint,
        revision=revision,
        addons=by_name,
        order=topological_order(addons),
        overlays=overlays,
        drift=drift,
        values={a.name: a.helm.values for a in addons if a.helm is not None},
    )
    with _cache_lock:
        _cache[key] = compiled
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return compiled
