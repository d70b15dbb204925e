"""Property: every broken Blueprint is refused with a ValidationError naming a field.

Starting from the default GPU platform Blueprint, Hypothesis applies one to three random
breaking mutations (dropped required fields, wrong types, invalid versions, invalid CEL,
duplicate names, dependency cycles, unknown references, patches to missing paths, unknown
fields, invalid labels) and renders the result as YAML text. Loading must fail with
``InvalidInput`` — never another exception — and every reported issue must name a field.
"""

from __future__ import annotations

import copy
import string
from collections.abc import Callable
from pathlib import Path
from typing import Any

import semver
import yaml
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from blueprintd.api.cel import POOL_FIELDS
from blueprintd.api.issues import InvalidInput
from blueprintd.api.load import load_blueprint_text

REPO_ROOT = Path(__file__).resolve().parents[2]
BASE: dict[str, Any] = yaml.safe_load((REPO_ROOT / "blueprints/gpu-platform/blueprint.yaml").read_text())

Draw = Callable[[st.SearchStrategy[Any]], Any]
Mutation = Callable[[dict[str, Any], Draw], bool]

ident = st.text(alphabet=string.ascii_lowercase, min_size=1, max_size=8)
not_semver = st.text(max_size=12).filter(lambda s: not semver.Version.is_valid(s))


def has(data: Any, key: Any) -> bool:
    if isinstance(data, dict):
        return key in data
    return isinstance(data, list) and isinstance(key, int) and key < len(data)


def get(data: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        if not has(data, key):
            return None
        data = data[key]
    return data


def pick(draw: Draw, items: list[Any]) -> Any:
    return items[draw(st.integers(0, len(items) - 1))]


def addons(data: dict[str, Any]) -> list[dict[str, Any]]:
    found = get(data, ("spec", "addons"))
    return [a for a in found if isinstance(a, dict)] if isinstance(found, list) else []


def overlays(data: dict[str, Any]) -> list[dict[str, Any]]:
    found = get(data, ("spec", "overlays"))
    return [o for o in found if isinstance(o, dict)] if isinstance(found, list) else []


def drop_required(data: dict[str, Any], draw: Draw) -> bool:
    candidates: list[tuple[Any, str]] = [(data, "kind"), (data, "spec")]
    if isinstance(data.get("metadata"), dict):
        candidates.append((data["metadata"], "name"))
    if isinstance(data.get("spec"), dict):
        candidates.append((data["spec"], "version"))
    for addon in addons(data):
        candidates.append((addon, "name"))
        if isinstance(addon.get("helm"), dict):
            candidates += [(addon["helm"], k) for k in ("repo", "chart", "version")]
            candidates.append((addon, "helm"))
        for check in get(addon, ("readiness", "checks")) or []:
            candidates += [(check, "kind"), (check, "name")]
    for ov in overlays(data):
        candidates.append((ov, "name"))
        for patch in ov.get("patches") or []:
            candidates.append((patch, "addon"))
    present = [(obj, key) for obj, key in candidates if isinstance(obj, dict) and key in obj]
    if not present:
        return False
    obj, key = pick(draw, present)
    del obj[key]
    return True


def wrong_type(data: dict[str, Any], draw: Draw) -> bool:
    targets: list[tuple[Any, str, st.SearchStrategy[Any]]] = []
    spec = data.get("spec")
    if isinstance(spec, dict):
        targets += [
            (spec, "version", st.one_of(st.integers(), st.booleans(), st.none(), st.just([1]))),
            (spec, "addons", st.one_of(st.integers(), st.text(max_size=5), st.just({"a": 1}))),
            (spec, "overlays", st.one_of(st.integers(), st.just({"a": 1}))),
            (spec, "parameters", st.one_of(st.integers(), st.just(["x"]))),
        ]
        if isinstance(spec.get("parameters"), dict):
            targets.append((spec["parameters"], "timeSlicingReplicas", st.just([1, 2]) | st.just({"n": 4})))
        if isinstance(spec.get("rollout"), dict):
            targets.append((spec["rollout"], "healthTimeoutSeconds", st.just("soon") | st.integers(max_value=0)))
            targets.append((spec["rollout"], "failurePolicy", st.just("retry") | st.integers()))
        if isinstance(spec.get("drift"), dict):
            targets.append((spec["drift"], "mode", st.just("ignore") | st.integers()))
    for addon in addons(data):
        targets += [
            (addon, "dependsOn", st.one_of(st.text(max_size=5), st.integers(), st.just({"a": 1}))),
            (addon, "namespace", st.one_of(st.integers(), st.just(["ns"]), st.just("Not A Namespace"))),
        ]
        if isinstance(addon.get("helm"), dict):
            targets.append((addon["helm"], "values", st.one_of(st.integers(), st.text(max_size=5), st.just([1]))))
    for ov in overlays(data):
        targets += [
            (ov, "priority", st.one_of(st.just("high"), st.just([1]), st.just(1.5))),
            (ov, "when", st.one_of(st.integers(), st.booleans(), st.just(["x"]))),
            (ov, "scope", st.one_of(st.just("everywhere"), st.integers())),
            (ov, "nodeLabels", st.one_of(st.just({"a": 5}), st.just(["x"]), st.integers())),
        ]
    if not targets:
        return False
    obj, key, values = pick(draw, targets)
    obj[key] = draw(values)
    return True


def bad_version(data: dict[str, Any], draw: Draw) -> bool:
    choices: list[tuple[dict[str, Any], str, st.SearchStrategy[Any]]] = []
    if isinstance(data.get("spec"), dict):
        choices.append((data["spec"], "version", not_semver))
    for addon in addons(data):
        if isinstance(addon.get("helm"), dict):
            chart = st.text(max_size=12).filter(lambda s: not semver.Version.is_valid(s.removeprefix("v")))
            choices.append((addon["helm"], "version", chart))
    if not choices:
        return False
    obj, key, values = pick(draw, choices)
    obj[key] = draw(values)
    return True


def bad_cel(data: dict[str, Any], draw: Draw) -> bool:
    ovs = overlays(data)
    if not ovs:
        return False
    ov = pick(draw, ovs)
    name = draw(ident)
    kind = draw(st.integers(0, 4))
    if kind == 0:
        text = "(" + draw(st.sampled_from(["pool.gpuCount > 0", "true", "params.x"]))
    elif kind == 1:
        text = "pool.gpuCount > 0 &&"
    elif kind == 2:
        field = "zz" + name if ("zz" + name) not in POOL_FIELDS else "zzz"
        text = f"pool.{field} == 1"
        ov["scope"] = "nodePool"
    elif kind == 3:
        text = f"zz{name} == 1"
    else:
        text = f"params.zz{name} > 0"
    if draw(st.booleans()) or not isinstance(ov.get("nodeLabels"), dict):
        ov["when"] = text
    else:
        ov["nodeLabels"]["example.com/templated"] = "${ " + text + " }"
        ov["scope"] = "nodePool"
    return True


def duplicate(data: dict[str, Any], draw: Draw) -> bool:
    lists = [
        lst for lst in (get(data, ("spec", "addons")), get(data, ("spec", "overlays"))) if isinstance(lst, list) and lst
    ]
    if not lists:
        return False
    items = pick(draw, lists)
    original = pick(draw, items)
    if not isinstance(original, dict) or "name" not in original:
        return False
    items.append(copy.deepcopy(original))
    return True


def cycle(data: dict[str, Any], draw: Draw) -> bool:
    named = [a for a in addons(data) if isinstance(a.get("name"), str)]
    if not named:
        return False
    size = draw(st.integers(1, min(4, len(named))))
    ring = draw(st.permutations(named))[:size]
    for i, addon in enumerate(ring):
        nxt = ring[(i + 1) % size]["name"]
        deps = addon.get("dependsOn")
        addon["dependsOn"] = [*deps, nxt] if isinstance(deps, list) else [nxt]
    return True


def unknown_reference(data: dict[str, Any], draw: Draw) -> bool:
    missing = "zz-" + draw(ident)
    choice = draw(st.integers(0, 1))
    if choice == 0 and addons(data):
        addon = pick(draw, addons(data))
        deps = addon.get("dependsOn")
        addon["dependsOn"] = [*deps, missing] if isinstance(deps, list) else [missing]
        return True
    patched = [p for ov in overlays(data) for p in ov.get("patches") or [] if isinstance(p, dict)]
    if not patched:
        return False
    pick(draw, patched)["addon"] = missing
    return True


def patch_missing_path(data: dict[str, Any], draw: Draw) -> bool:
    ovs = overlays(data)
    helm_addons = [a for a in addons(data) if isinstance(a.get("helm"), dict) and isinstance(a.get("name"), str)]
    if not ovs or not helm_addons:
        return False
    ov = pick(draw, ovs)
    addon = pick(draw, helm_addons)
    op = draw(st.sampled_from(["replace", "remove", "test"]))
    entry: dict[str, Any] = {"op": op, "path": f"/zz{draw(ident)}/{draw(ident)}"}
    if op != "remove":
        entry["value"] = draw(st.integers())
    patches = ov.get("patches")
    patch = {"addon": addon["name"], "valuesJsonPatch": [entry]}
    ov["patches"] = [*patches, patch] if isinstance(patches, list) else [patch]
    return True


def unknown_field(data: dict[str, Any], draw: Draw) -> bool:
    objects: list[dict[str, Any]] = [data]
    if isinstance(data.get("spec"), dict):
        objects.append(data["spec"])
        for key in ("rollout", "drift", "policies"):
            if isinstance(data["spec"].get(key), dict):
                objects.append(data["spec"][key])
    for addon in addons(data):
        objects.append(addon)
        if isinstance(addon.get("helm"), dict):
            objects.append(addon["helm"])
    objects += overlays(data)
    pick(draw, objects)["zz" + draw(ident)] = draw(st.integers() | st.text(max_size=4))
    return True


def bad_names(data: dict[str, Any], draw: Draw) -> bool:
    labelled = [ov for ov in overlays(data) if isinstance(ov.get("nodeLabels"), dict)]
    if draw(st.booleans()) and labelled:
        pick(draw, labelled)["nodeLabels"]["bad key " + draw(ident)] = "x"
        return True
    targets = addons(data) + overlays(data)
    if not targets:
        return False
    pick(draw, targets)["name"] = draw(st.sampled_from(["Bad_Name", "-x", "x" * 64, "UPPER", "a.b"]))
    return True


MUTATIONS: list[Mutation] = [
    drop_required,
    wrong_type,
    bad_version,
    bad_cel,
    duplicate,
    cycle,
    unknown_reference,
    patch_missing_path,
    unknown_field,
    bad_names,
]


@st.composite
def broken_blueprints(draw: Draw) -> tuple[str, list[str]]:
    data = copy.deepcopy(BASE)
    applied: list[str] = []
    for mutation in draw(st.lists(st.sampled_from(MUTATIONS), min_size=1, max_size=3)):
        if mutation(data, draw):
            applied.append(mutation.__name__)
    if not applied:  # every mutation found nothing to break: break the version
        data.setdefault("spec", {})
        if isinstance(data["spec"], dict):
            data["spec"]["version"] = "not-semver"
        else:
            data["spec"] = {"version": "not-semver"}
        applied.append("fallback")
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True), applied


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(broken_blueprints())
def test_every_broken_blueprint_is_rejected_with_a_field_path(case: tuple[str, list[str]]) -> None:
    text, applied = case
    note(f"mutations: {applied}")
    try:
        load_blueprint_text(text, "broken.yaml")
    except InvalidInput as exc:
        assert exc.issues
        message = str(exc)
        for issue in exc.issues:
            assert issue.field, f"issue without a field path: {issue}"
            assert issue.field in message
            assert issue.source == "broken.yaml"
        return
    raise AssertionError(f"accepted a broken Blueprint (mutations {applied})")


def test_base_blueprint_is_valid() -> None:
    load_blueprint_text(yaml.safe_dump(BASE), "base.yaml")
