"""What changes for one member cluster when it moves from one rendered Blueprint version to another.

Pure: two ``DesiredState`` (either may be ``None``: the cluster is not selected on that side)
in, a ``MemberChanges`` out. ``blueprintd diff`` renders both sides with the same facts and the
same render pipeline the operator uses, so what differs here is exactly what the new version
changes for this cluster, independent of any drift the cluster has.

Rules:

- An add-on only in the new version is *installed*; only in the old one, *removed* (the
  operator uninstalls it or deletes its objects). Present in both: *upgraded* when the chart
  version differs (``from → to``), else *changed* when its values, objects or chart source
  differ, else not listed.
- Values and objects are compared field by field, both ways: a field set on one side only is a
  change with ``None`` on the other side. Paths are dotted with list indices in brackets
  (``driver.version``, ``spec.template.spec.containers[0].image``), as in ``blueprintd drift``.
  Lists of different lengths are one change of the whole list. A multi-line string that holds
  YAML on both sides (a config file in a ConfigMap or a chart value) is compared inside, the
  path continuing after `` | `` (``data.config.yaml | sharing.timeSlicing.replicas``).
- Manifest objects are matched by ``apiVersion kind namespace/name``: added, removed, or
  changed with their field changes.
- Node labels are compared per pool: every label whose value differs (``None``: not set).
- Overlays are compared per (overlay, pool): listed when one side fired and the other did
  not. An overlay that exists on one side only counts as "did not fire" on the other.
- Everything is sorted, so equal inputs give equal output (and ``group`` can compare them).
"""

from __future__ import annotations

from typing import Any, Literal

import yaml

from blueprintd.api.base import ApiModel
from blueprintd.render.desired import DesiredState, Step

AddonChangeKind = Literal["installed", "upgraded", "changed", "removed"]


class FieldChange(ApiModel):
    """One field whose value differs; ``None`` on a side: the field is not set there."""

    path: str
    before: Any = None
    after: Any = None


class ObjectChange(ApiModel):
    """One manifest object added, removed or changed (with its fields)."""

    target: str  # "ConfigMap gpu-operator/blueprintd-time-slicing"
    change: Literal["added", "changed", "removed"]
    fields: list[FieldChange] = []


class AddonChange(ApiModel):
    addon: str
    change: AddonChangeKind
    chart: str | None = None  # chart name, for Helm add-ons
    chart_from: str | None = None
    chart_to: str | None = None
    values: list[FieldChange] = []
    objects: list[ObjectChange] = []


class LabelChange(ApiModel):
    """A node label that changes on every node of a pool."""

    pool: str
    label: str
    before: str | None = None
    after: str | None = None


class OverlayChange(ApiModel):
    overlay: str
    pool: str | None = None
    before: bool
    after: bool


class MemberChanges(ApiModel):
    addons: list[AddonChange] = []
    node_labels: list[LabelChange] = []
    overlays: list[OverlayChange] = []

    @property
    def empty(self) -> bool:
        return not (self.addons or self.node_labels or self.overlays)


def _join(base: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{base}[{key}]"
    return f"{base}.{key}" if base else str(key)


def field_changes(before: Any, after: Any, base: str = "") -> list[FieldChange]:
    """Every field that differs between two JSON-like values (see the module rules)."""
    if isinstance(before, dict) and isinstance(after, dict):
        out: list[FieldChange] = []
        for key in sorted(set(before) | set(after), key=str):
            out += field_changes(before.get(key), after.get(key), _join(base, key))
        return out
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        pairs = enumerate(zip(before, after, strict=True))
        return [c for i, (b, a) in pairs for c in field_changes(b, a, _join(base, i))]
    if before == after:
        return []
    if isinstance(before, str) and isinstance(after, str) and "\n" in before + after:
        inner_before, inner_after = _yaml_doc(before), _yaml_doc(after)
        if inner_before is not None and inner_after is not None:
            return [
                c.model_copy(update={"path": f"{base or '.'} | {c.path}"})
                for c in field_changes(inner_before, inner_after)
            ]
    return [FieldChange(path=base or ".", before=before, after=after)]


def _yaml_doc(text: str) -> dict[str, Any] | list[Any] | None:
    """A string that holds a YAML mapping or list (a config file in a ConfigMap or a chart value)."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    return doc if isinstance(doc, dict | list) else None


def object_target(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    ns = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj.get('kind')} {ns}{meta.get('name')}"


def _objects(step: Step | None) -> dict[str, dict[str, Any]]:
    return {f"{o.get('apiVersion')} {object_target(o)}": o for o in (step.manifests or [] if step else [])}


def object_changes(before: Step | None, after: Step | None) -> list[ObjectChange]:
    old, new = _objects(before), _objects(after)
    out: list[ObjectChange] = []
    for key in sorted(set(old) | set(new)):
        target = object_target(new.get(key) or old[key])
        if key not in old:
            out.append(ObjectChange(target=target, change="added"))
        elif key not in new:
            out.append(ObjectChange(target=target, change="removed"))
        elif fields := field_changes(old[key], new[key]):
            out.append(ObjectChange(target=target, change="changed", fields=fields))
    return out


def addon_change(before: Step | None, after: Step | None) -> AddonChange | None:
    """How one add-on changes, or ``None`` when it renders the same (see the module rules)."""
    step = after or before
    assert step is not None
    old_helm, new_helm = (before.helm if before else None), (after.helm if after else None)
    either = new_helm or old_helm
    chart = either.chart if either else None
    objects = object_changes(before, after)
    if before is None or after is None:
        return AddonChange(
            addon=step.addon,
            change="installed" if before is None else "removed",
            chart=chart,
            chart_from=old_helm.version if old_helm else None,
            chart_to=new_helm.version if new_helm else None,
            objects=objects,
        )
    values = field_changes(old_helm.values if old_helm else None, new_helm.values if new_helm else None)
    source = field_changes(
        old_helm.model_dump(exclude={"values", "version"}) if old_helm else None,
        new_helm.model_dump(exclude={"values", "version"}) if new_helm else None,
        "chart",
    )
    from_v, to_v = (old_helm.version if old_helm else None), (new_helm.version if new_helm else None)
    if from_v != to_v:
        kind: AddonChangeKind = "upgraded"
    elif values or objects or source:
        kind = "changed"
    else:
        return None
    return AddonChange(
        addon=step.addon,
        change=kind,
        chart=chart,
        chart_from=from_v,
        chart_to=to_v,
        values=source + values,
        objects=objects,
    )


def _labels(state: DesiredState | None) -> dict[str, dict[str, str]]:
    return {nl.pool: dict(nl.labels) for nl in (state.node_labels if state else [])}


def _fired(state: DesiredState | None) -> dict[tuple[str, str | None], bool]:
    return {(e.overlay, e.pool): e.fired for e in (state.explanations if state else [])}


def compare(before: DesiredState | None, after: DesiredState | None) -> MemberChanges:
    """What moving one cluster from ``before`` to ``after`` changes (see the module rules)."""
    old_steps = {s.addon: s for s in (before.steps if before else [])}
    new_steps = {s.addon: s for s in (after.steps if after else [])}
    order = [s.addon for s in (after.steps if after else [])] + [
        a for a in (s.addon for s in (before.steps if before else [])) if a not in new_steps
    ]
    addons = [c for a in order if (c := addon_change(old_steps.get(a), new_steps.get(a))) is not None]

    old_labels, new_labels = _labels(before), _labels(after)
    labels = [
        LabelChange(pool=pool, label=key, before=old, after=new)
        for pool in sorted(set(old_labels) | set(new_labels))
        for key in sorted(set(old_labels.get(pool, {})) | set(new_labels.get(pool, {})))
        if (old := old_labels.get(pool, {}).get(key)) != (new := new_labels.get(pool, {}).get(key))
    ]

    old_fired, new_fired = _fired(before), _fired(after)
    overlays = [
        OverlayChange(overlay=o, pool=p, before=old_fired.get((o, p), False), after=new_fired.get((o, p), False))
        for (o, p) in sorted(set(old_fired) | set(new_fired), key=lambda k: (k[0], k[1] or ""))
        if old_fired.get((o, p), False) != new_fired.get((o, p), False)
    ]
    return MemberChanges(addons=addons, node_labels=labels, overlays=overlays)
