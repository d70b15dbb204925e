"""Fleet-wide preview: one result per (member cluster, Blueprint), and identical changes grouped.

Pure. ``MemberPreview`` is what ``blueprintd diff -o json`` prints per member; ``group`` folds
the fleet into lines a person reads at 100 clusters: every change is written as one line of
text, and clusters with the same line share it ("12 clusters: gpu-operator upgraded
v25.10.0 → v25.10.1").

Rules:

- A member *changes* when its version changes, it is newly selected or unselected, or its
  rendered state differs (``compare.MemberChanges``). A member whose preview failed (its
  API server was unreachable, its facts could not be read) is an *error*, listed on its own.
- Lines come in a fixed order: selection, version, then per add-on (the add-on line, its
  values, its objects), node labels, overlays. Groups keep the order in which their line first
  appears, walking clusters by name, so output is stable.
- A group names its clusters in full (never shortened); "all N clusters" when it covers every
  member the preview looked at.
"""

from __future__ import annotations

import json
from typing import Any

from blueprintd.api.base import ApiModel
from blueprintd.preview.compare import AddonChange, MemberChanges


class MemberPreview(ApiModel):
    """What a Blueprint change means for one member cluster."""

    cluster: str
    blueprint: str
    selected_before: bool = False
    selected_after: bool = False
    version_from: str | None = None  # the version the cluster is assigned now (None: not selected)
    version_to: str | None = None  # the version it would get (None: no longer selected)
    why: str = ""  # "pinned on the MemberCluster", "rollout wave 1 of 3 (canary)", ...
    changes: MemberChanges = MemberChanges()
    actions: list[dict[str, Any]] = []  # the operator's plan against the live cluster, in order
    error: str = ""

    @property
    def changed(self) -> bool:
        return (
            self.selected_before != self.selected_after
            or self.version_from != self.version_to
            or not self.changes.empty
        )


class Group(ApiModel):
    change: str
    clusters: list[str]


class FleetPreview(ApiModel):
    members: list[MemberPreview] = []
    groups: list[Group] = []
    unchanged: list[str] = []
    errors: list[MemberPreview] = []

    @property
    def exit_code(self) -> int:
        """0: nothing changes, 1: something changes, 2: a member could not be previewed."""
        if self.errors:
            return 2
        return 1 if self.groups else 0


def _value(v: Any) -> str:
    if v is None:
        return "(unset)"
    return v if isinstance(v, str) else json.dumps(v, sort_keys=True)


def _v(version: str | None) -> str:
    """Chart versions as people write them in release notes: v25.10.1."""
    if not version:
        return "?"
    return version if version.startswith("v") else f"v{version}"


def addon_lines(a: AddonChange) -> list[str]:
    chart = f" (chart {a.chart})" if a.chart else ""
    if a.change == "upgraded":
        head = f"{a.addon} {_v(a.chart_from)} → {_v(a.chart_to)}"
    elif a.change == "installed":
        head = f"{a.addon} installed" + (f" {_v(a.chart_to)}{chart}" if a.chart_to else "")
    elif a.change == "removed":
        head = f"{a.addon} removed" + (f" (was {_v(a.chart_from)}{chart})" if a.chart_from else "")
    else:
        head = f"{a.addon} changed"
    details = [f"{a.addon} values: {c.path}: {_value(c.before)} → {_value(c.after)}" for c in a.values]
    for o in a.objects:
        if o.change != "changed":
            details.append(f"{a.addon}: {o.target} {o.change}")
        details += [f"{a.addon}: {o.target}: {c.path}: {_value(c.before)} → {_value(c.after)}" for c in o.fields]
    if a.change == "changed" and details:
        return details  # the details say it; "x changed" on top would be noise
    return [head, *details]


def change_lines(m: MemberPreview) -> list[str]:
    """Every change of one member as one line of text each (see the module rules)."""
    lines: list[str] = []
    if m.selected_after and not m.selected_before:
        lines.append(f"{m.blueprint}: newly selected")
    elif m.selected_before and not m.selected_after:
        lines.append(f"{m.blueprint}: no longer selected (its add-ons are removed)")
    if m.version_from != m.version_to and m.version_from and m.version_to:
        lines.append(f"{m.blueprint} {m.version_from} → {m.version_to}")
    elif m.version_to and not m.version_from:
        lines.append(f"{m.blueprint} {m.version_to}")
    for a in m.changes.addons:
        lines += addon_lines(a)
    lines += [
        f"pool {c.pool}: label {c.label}: {_value(c.before)} → {_value(c.after)}" for c in m.changes.node_labels
    ]
    for o in m.changes.overlays:
        where = f" on pool {o.pool}" if o.pool else ""
        lines.append(f"overlay {o.overlay}{where}: {'fires' if o.after else 'no longer fires'}")
    return lines


def group(members: list[MemberPreview]) -> FleetPreview:
    """Fold per-member previews into shared change lines (see the module rules)."""
    members = sorted(members, key=lambda m: (m.cluster, m.blueprint))
    errors = [m for m in members if m.error]
    lines: dict[str, list[str]] = {}
    changed: set[str] = set()
    for m in members:
        if m.error:
            continue
        for line in change_lines(m) if m.changed else []:
            clusters = lines.setdefault(line, [])
            if m.cluster not in clusters:
                clusters.append(m.cluster)
            changed.add(m.cluster)
    names = sorted({m.cluster for m in members})
    return FleetPreview(
        members=members,
        groups=[Group(change=line, clusters=clusters) for line, clusters in lines.items()],
        unchanged=[n for n in names if n not in changed and n not in {e.cluster for e in errors}],
        errors=errors,
    )


def describe_clusters(clusters: list[str], total: int) -> str:
    """'all 12 clusters' or '3 clusters: a, b, c' (names in full)."""
    if total > 1 and len(clusters) == total:
        return f"all {total} clusters"
    noun = "cluster" if len(clusters) == 1 else "clusters"
    return f"{len(clusters)} {noun}: {', '.join(clusters)}"
