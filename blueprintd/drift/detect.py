"""Drift detection (pure): what a member cluster has that its Blueprints do not say.

Drift is asked per *target* — one manifest object, one object a Helm release rendered, one
Helm release, or one node's labels — because the watches deliver one changed object at a
time and a check must cost no more than that object. Every comparison goes through the
planner's ``object_diffs`` / ``diff_owned``: planning and drift detection must agree on what
"different" means (only fields the Blueprint sets, ignore rules honoured, server defaults
never drift), or the operator would fight itself.

Each finding says who made the change when the object records it (the ``managedFields``
manager that now owns the field) and whether that was blueprintd itself: a field the operator
owns with another value is an upgrade in flight, not drift, so the caller holds it until the
operator tracks the new DesiredState. Values that may hold credentials are redacted here, so
nothing downstream (reports, events, logs) can leak them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from blueprintd.api.blueprint import DriftMode
from blueprintd.api.driftreport import DriftReason
from blueprintd.api.pointer import format_pointer
from blueprintd.api.ref import RELEASE_API_VERSION, RELEASE_KIND, ObjectRef
from blueprintd.plan.compare import diff_owned, drop_nulls, ignored
from blueprintd.plan.inventory import object_key
from blueprintd.plan.live import LiveState, ReleaseState
from blueprintd.plan.planner import desired_objects, extra_values, node_label_mode, object_diffs, wanted_node_labels
from blueprintd.render.desired import DesiredState, Step

# "guarded": an object blueprintd creates but whose content is not compared — a namespace it
# installs an add-on into, a Secret a chart renders (charts fill them with generated values),
# a CRD from a chart's crds/ directory (helm never upgrades those) — kept only so block mode
# can put its labels on it.
TargetKind = Literal["object", "rendered", "guarded", "release", "node"]
# Namespaces blueprintd never puts under block mode: the cluster's own.
SYSTEM_NAMESPACES = frozenset({"default", "kube-system", "kube-public", "kube-node-lease"})
Reason = DriftReason

# Field managers that are blueprintd itself: a field they own is the operator's own value.
OPERATOR_MANAGERS = frozenset({"blueprintd"})
HELM_MANAGED_BY = {"app.kubernetes.io/managed-by": "Helm"}
MAX_VALUE_CHARS = 1024
REDACTED = "<redacted>"
_SENSITIVE = re.compile(r"(?i)(passw|secret|token|credential|api[-_]?key|private[-_]?key|(^|[-_.])key$)")


@dataclass(frozen=True, order=True)
class Target:
    """One thing a check compares: it is also the unit a watch event touches and a remediation restores."""

    kind: TargetKind
    ref: ObjectRef

    @property
    def id(self) -> str:
        return f"{self.kind}:{self.ref}"


def release_target(namespace: str, name: str) -> Target:
    return Target("release", ObjectRef(RELEASE_API_VERSION, RELEASE_KIND, namespace, name))


def node_target(name: str) -> Target:
    return Target("node", ObjectRef("v1", "Node", "", name))


@dataclass(frozen=True)
class Drift:
    """One drifted field (``path`` ``.``: the whole object is missing)."""

    blueprint: str
    addon: str
    mode: DriftMode
    target: Target
    path: str
    pointer: str
    reason: Reason
    expected: Any
    actual: Any
    manager: str = ""
    detail: str = ""
    own: bool = False  # the value is blueprintd's own (an upgrade in flight), not drift

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.blueprint, self.target.id, self.path)


# --- paths and field managers -------------------------------------------------------------


def path_tokens(doc: Any, path: str) -> list[str | int]:
    """Split a dotted diff path into tokens, using ``doc`` to resolve keys that contain dots
    (``metadata.labels.app.kubernetes.io/name``): the longest matching key wins."""
    if path in ("", "."):
        return []
    tokens: list[str | int] = []
    node = doc
    rest = path
    while rest:
        if rest.startswith("["):
            end = rest.find("]")
            if end < 0:
                break
            raw = rest[1:end]
            idx: str | int = int(raw) if raw.isdigit() else raw
            tokens.append(idx)
            node = node[idx] if isinstance(node, list) and isinstance(idx, int) and idx < len(node) else None
            rest = rest[end + 1 :].removeprefix(".")
            continue
        key = None
        if isinstance(node, dict):
            fits = [
                k
                for k in node
                if isinstance(k, str) and (rest == k or rest.startswith(k + ".") or rest.startswith(k + "["))
            ]
            key = max(fits, key=len) if fits else None
        if key is None:
            m = re.match(r"[^.\[]+", rest)
            if m is None:
                break
            key = m.group(0)
        tokens.append(key)
        node = node.get(key) if isinstance(node, dict) else None
        rest = rest[len(key) :].removeprefix(".")
    return tokens


def _list_key(fields: dict[str, Any], item: Any, index: int) -> str | None:
    """The managedFields key of one list item: ``k:{merge keys}``, ``v:value`` or ``i:index``."""
    for k in fields:
        if k.startswith("k:") and isinstance(item, dict):
            try:
                want = json.loads(k[2:])
            except ValueError:
                continue
            if isinstance(want, dict) and all(str(item.get(a)) == str(b) for a, b in want.items()):
                return k
        elif k.startswith("v:"):
            try:
                if json.loads(k[2:]) == item:
                    return k
            except ValueError:
                continue
        elif k == f"i:{index}":
            return k
    return None


def _owns(fields: Any, node: Any, tokens: list[str | int]) -> bool:
    for tok in tokens:
        if not isinstance(fields, dict):
            return False
        if isinstance(tok, int):
            if not isinstance(node, list) or tok >= len(node):
                return False
            key = _list_key(fields, node[tok], tok)
            if key is None:
                return False
            fields, node = fields[key], node[tok]
        else:
            if f"f:{tok}" not in fields:
                return False
            fields = fields[f"f:{tok}"]
            node = node.get(tok) if isinstance(node, dict) else None
    return True


def field_owners(live: dict[str, Any], tokens: list[str | int]) -> list[tuple[str, str]]:
    """``(time, manager)`` of every field manager that owns the field (or something below it),
    from ``metadata.managedFields``; status-subresource writers never own spec fields."""
    out = []
    for entry in (live.get("metadata") or {}).get("managedFields") or []:
        if entry.get("subresource") == "status":
            continue
        if _owns(entry.get("fieldsV1") or {}, live, tokens):
            out.append((str(entry.get("time") or ""), str(entry.get("manager") or "")))
    return sorted(out)


def _attribution(live: dict[str, Any], tokens: list[str | int]) -> tuple[str, bool]:
    """Who changed the field (latest owner other than blueprintd) and whether only blueprintd owns it."""
    owners = field_owners(live, tokens)
    others = [m for _, m in owners if m not in OPERATOR_MANAGERS]
    return (others[-1] if others else ""), bool(owners) and not others


# --- values in reports -----------------------------------------------------------------------


def sensitive(kind: str, tokens: Iterable[str | int]) -> bool:
    toks = [t for t in tokens if isinstance(t, str)]
    if kind == "Secret" and toks and toks[0] in ("data", "stringData"):
        return True
    return any(_SENSITIVE.search(t) for t in toks)


def report_value(value: Any, kind: str, tokens: Iterable[str | int]) -> Any:
    """A value as it may appear in a report or event: redacted when it may be a credential,
    shortened when it is large (the report lives in etcd, 1.5 MB per object)."""
    if value is None:
        return None
    if sensitive(kind, tokens):
        return REDACTED
    value = _redact_nested(value)
    text = json.dumps(value, sort_keys=True, default=str)
    if len(text) > MAX_VALUE_CHARS:
        return text[: MAX_VALUE_CHARS - 1] + "…"
    return value


def _redact_nested(value: Any) -> Any:
    """Credentials below a reported subtree (``{"auth": {"apiToken": ...}}``) are redacted too."""
    if isinstance(value, dict):
        return {k: REDACTED if _SENSITIVE.search(str(k)) else _redact_nested(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_nested(v) for v in value]
    return value


def _contains_secret(value: Any) -> bool:
    return bool(_redact_nested(value) != value)


def _detail(expected: Any, actual: Any, secret: bool) -> str:
    """Value-level detail for a subtree difference (a list of another length, a replaced map)."""
    if secret or not isinstance(expected, dict | list) or not isinstance(actual, dict | list):
        return ""
    if _contains_secret(expected) or _contains_secret(actual):
        return "values differ below this field (details withheld: they may hold credentials)"
    from deepdiff import DeepDiff

    text = str(DeepDiff(expected, actual, verbose_level=2).pretty())
    text = "live differs from the Blueprint: " + "; ".join(text.splitlines())
    return text[:1000]


# --- targets -------------------------------------------------------------------------------


@dataclass(eq=False)
class TrackedObject:
    """A manifest object, or an object a Helm release rendered, that a Blueprint owns
    (``compare`` False: a guarded target, see ``TargetKind``)."""

    desired: DesiredState
    step: Step
    obj: dict[str, Any]
    target: Target
    compare: bool = True


@dataclass(eq=False)
class TrackedRelease:
    desired: DesiredState
    step: Step
    target: Target


@dataclass(frozen=True)
class LabelWant:
    value: str
    blueprint: str
    mode: DriftMode


def check_object(t: TrackedObject, live: dict[str, Any] | None) -> list[Drift]:
    """Owned-field differences of one object, attributed to the manager that made them."""
    if not t.compare:
        return []
    diffs = object_diffs(t.step, t.obj, live)
    bp, addon, mode = t.desired.blueprint, t.step.addon, t.step.drift.mode
    if not diffs:
        return []
    if live is None:
        return [
            Drift(
                bp,
                addon,
                mode,
                t.target,
                ".",
                "",
                "deleted",
                "present",
                None,
                detail=f"{t.target.ref} was deleted",
            )
        ]
    out = []
    for d in diffs:
        tokens = path_tokens(t.obj, d.path)
        manager, own = _attribution(live, tokens)
        secret = sensitive(t.target.ref.kind, tokens)
        out.append(
            Drift(
                bp,
                addon,
                mode,
                t.target,
                d.path,
                format_pointer(tuple(tokens)),
                "changed",
                report_value(d.expected, t.target.ref.kind, tokens),
                report_value(d.actual, t.target.ref.kind, tokens),
                manager=manager,
                detail=_detail(d.expected, d.actual, secret),
                own=own,
            )
        )
    return out


def _release_ignore(step: Step, name: str) -> tuple[str, ...]:
    """Ignore rules that name kind HelmRelease apply to release values (``values.<path>``)."""
    out: list[str] = []
    for rule in step.drift.ignore:
        if rule.kind == RELEASE_KIND and rule.name in (None, name):
            out.extend(rule.paths)
    return tuple(out)


def check_release(desired: DesiredState, step: Step, live: ReleaseState | None) -> list[Drift] | None:
    """A Helm release that is missing, failed, rolled back, at another chart version or with
    values changed out of band. A release mid-operation (pending-*) is not judged (None, not
    "no drift"): helm is still working and the next event shows the outcome."""
    helm = step.helm
    assert helm is not None
    target = release_target(helm.namespace, helm.release_name)
    bp, addon, mode = desired.blueprint, step.addon, step.drift.mode
    chart = f"{helm.chart} {helm.version}"
    if live is None or live.status == "uninstalled":
        return [
            Drift(
                bp,
                addon,
                mode,
                target,
                "release",
                "",
                "release-missing",
                "deployed",
                live.status if live else None,
                detail=f"release {helm.namespace}/{helm.release_name} ({chart}) is not installed",
            )
        ]
    if live.pending:
        return None
    own = live.by_operator
    out: list[Drift] = []

    def add(path: str, tokens: list[str | int], reason: Reason, expected: Any, actual: Any, detail: str = "") -> None:
        out.append(
            Drift(
                bp,
                addon,
                mode,
                target,
                path,
                format_pointer(tuple(tokens)),
                reason,
                report_value(expected, RELEASE_KIND, tokens),
                report_value(actual, RELEASE_KIND, tokens),
                detail=detail,
                own=own,
            )
        )

    if live.status != "deployed":
        add("status", ["status"], "release-status", "deployed", live.status, f"revision {live.revision}")
    if live.rolled_back:
        add(
            "revision",
            ["revision"],
            "release-rollback",
            f"{chart} as the Blueprint sets it",
            f"revision {live.revision}: {live.description}",
            "the release was rolled back out of band",
        )
    if (live.chart, live.version) != (helm.chart, helm.version):
        add("chart", ["chart"], "chart", chart, f"{live.chart} {live.version}")
    ignore = _release_ignore(step, helm.release_name)
    for d in diff_owned(helm.values, live.values, ignore, base="values"):
        tokens = path_tokens({"values": helm.values}, d.path)
        add(d.path, tokens, "values", d.expected, d.actual, _detail(d.expected, d.actual, sensitive("", tokens)))
    for rel in extra_values(helm.values, live.values):
        path = f"values.{rel}"
        tokens = path_tokens({"values": live.values}, path)
        if ignored(path, ignore):
            continue
        value: Any = live.values
        for tok in tokens[1:]:
            value = value.get(tok) if isinstance(value, dict) else None
        add(path, tokens, "values", None, value, "set out of band (the Blueprint does not set it)")
    return out


def check_node(node: str, wanted: dict[str, LabelWant], live: dict[str, Any] | None) -> list[Drift]:
    """Labels blueprintd sets on ``node`` that were removed or changed (a deleted node is not drift)."""
    if live is None:
        return []
    labels = (live.get("metadata") or {}).get("labels") or {}
    out = []
    for key, want in sorted(wanted.items()):
        have = labels.get(key)
        if have == want.value:
            continue
        tokens: list[str | int] = ["metadata", "labels", key]
        manager, own = _attribution(live, tokens) if have is not None else ("", False)
        out.append(
            Drift(
                want.blueprint,
                "",
                want.mode,
                node_target(node),
                f"metadata.labels.{key}",
                format_pointer(tuple(tokens)),
                "label-removed" if have is None else "label-changed",
                want.value,
                have,
                manager=manager,
                own=own,
            )
        )
    return out


def rendered_objects(
    step: Step, docs: Iterable[dict[str, Any]], namespaced: Callable[[str, str], bool]
) -> list[dict[str, Any]]:
    """The objects a Helm release rendered (``helm get manifest``), as they must be live: the
    release namespace filled in for namespaced kinds, and Helm's ownership metadata, so a
    recreated object is one helm adopts again on the next upgrade. A ``null`` a template
    rendered (``revisionHistoryLimit: {{ .Values.unset }}``) is not set: Helm creates the
    object without it and the server defaults it, so it is neither expected nor restored."""
    helm = step.helm
    assert helm is not None
    out = []
    for doc in docs:
        if not isinstance(doc, dict) or not doc.get("kind") or not (doc.get("metadata") or {}).get("name"):
            continue
        obj = drop_nulls(doc)  # a copy: the record's documents stay as helm stored them
        meta = obj.setdefault("metadata", {})
        if namespaced(str(obj.get("apiVersion", "")), str(obj["kind"])):
            meta["namespace"] = meta.get("namespace") or helm.namespace
        else:
            meta.pop("namespace", None)
        meta["labels"] = {**(meta.get("labels") or {}), **HELM_MANAGED_BY}
        meta["annotations"] = {
            **(meta.get("annotations") or {}),
            "meta.helm.sh/release-name": helm.release_name,
            "meta.helm.sh/release-namespace": helm.namespace,
        }
        out.append(obj)
    return out


# --- the index of everything tracked in one cluster --------------------------------------------


@dataclass
class DriftIndex:
    """Every target of the DesiredStates tracked for one cluster, keyed by target id."""

    desired: list[DesiredState]
    objects: dict[str, TrackedObject] = field(default_factory=dict)
    releases: dict[str, TrackedRelease] = field(default_factory=dict)
    nodes: dict[str, dict[str, LabelWant]] = field(default_factory=dict)
    rendered: dict[str, list[str]] = field(default_factory=dict)  # release target id -> object target ids

    @classmethod
    def build(cls, desired: list[DesiredState]) -> DriftIndex:
        index = cls(desired)
        for state in desired:
            for step in state.steps:
                if step.helm is not None:
                    t = release_target(step.helm.namespace, step.helm.release_name)
                    index.releases[t.id] = TrackedRelease(state, step, t)
                for obj in desired_objects(state, step):
                    t = Target("object", ObjectRef.of(obj))
                    index.objects[t.id] = TrackedObject(state, step, obj, t)
            mode = node_label_mode(state)
            for node, labels in wanted_node_labels(state).items():
                for key, value in labels.items():
                    index.nodes.setdefault(node, {})[key] = LabelWant(value, state.blueprint, mode)
        for state in desired:  # after every manifest: a Namespace a manifest declares is that object
            index._guard_namespaces(state)
        return index

    def _guard_namespaces(self, state: DesiredState) -> None:
        """The namespaces ``state``'s add-ons are installed into, as guarded targets: deleting
        one deletes everything in it (by the exempt namespace controller). A namespace several
        add-ons share follows the first ``block`` one; one a manifest declares is that object."""
        for step in sorted(state.steps, key=lambda s: s.drift.mode != "block"):
            ns = step.helm.namespace if step.helm is not None else step.namespace
            if not ns or ns in SYSTEM_NAMESPACES:
                continue
            t = Target("guarded", ObjectRef("v1", "Namespace", "", ns))
            if t.id in self.objects or Target("object", t.ref).id in self.objects:
                continue
            obj = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
            self.objects[t.id] = TrackedObject(state, step, obj, t, compare=False)

    def set_rendered(
        self, release_id: str, objs: list[dict[str, Any]], guarded: Iterable[dict[str, Any]] = ()
    ) -> list[str]:
        """Replace the objects a release rendered (``guarded``: those only protected, never
        compared); returns the target ids of the new set. A manifest object with the same
        identity stays the manifest's."""
        for old in self.rendered.pop(release_id, []):
            self.objects.pop(old, None)
        rel = self.releases.get(release_id)
        if rel is None:
            return []
        ids = []
        for obj, compare in [*((o, True) for o in objs), *((o, False) for o in guarded)]:
            t = Target("rendered" if compare else "guarded", ObjectRef.of(obj))
            if any(Target(k, t.ref).id in self.objects for k in ("object", "rendered", "guarded")):
                continue
            self.objects[t.id] = TrackedObject(rel.desired, rel.step, obj, t, compare=compare)
            ids.append(t.id)
        self.rendered[release_id] = ids
        return ids

    def targets(self) -> list[Target]:
        out = [t.target for t in self.objects.values()] + [r.target for r in self.releases.values()]
        return sorted(out + [node_target(n) for n in self.nodes])

    def check(self, target: Target, live: Any) -> list[Drift] | None:
        """Drift of one target; ``live`` is the object dict, the ``ReleaseState`` or the Node (None: absent).
        None: the target cannot be judged now (a Helm release mid-operation), so it is neither
        drifted nor back in line — an open report entry must stay open."""
        if target.kind in ("object", "rendered", "guarded"):
            t = self.objects.get(target.id)
            return check_object(t, live) if t is not None else []
        if target.kind == "release":
            r = self.releases.get(target.id)
            return check_release(r.desired, r.step, live) if r is not None else []
        wanted = self.nodes.get(target.ref.name)
        return check_node(target.ref.name, wanted, live) if wanted else []


def detect(
    desired: list[DesiredState],
    live: LiveState,
    rendered: dict[tuple[str, str], list[dict[str, Any]]] | None = None,
) -> list[Drift]:
    """All drift of a cluster at once (the CLI, tests and full resyncs): ``live`` as
    ``MemberSession.observe`` reads it, ``rendered`` the objects each release rendered, already
    passed through ``rendered_objects``. Node labels in ``live`` carry no managedFields, so
    label drift found this way names no manager."""
    index = DriftIndex.build(desired)
    for (ns, name), objs in (rendered or {}).items():
        index.set_rendered(release_target(ns, name).id, objs)
    out: list[Drift] = []
    for t in index.targets():
        if t.kind == "node":
            labels = live.node_labels.get(t.ref.name)
            found = index.check(t, None if labels is None else {"metadata": {"labels": labels}})
        elif t.kind == "release":
            found = index.check(t, live.releases.get((t.ref.namespace, t.ref.name)))
        else:
            found = index.check(t, live.objects.get(object_key(index.objects[t.id].obj)))
        out += found or []  # not judged (None) reports nothing
    return out


def restore_patch(drift: Drift) -> list[dict[str, Any]]:
    """The RFC 6902 patch that puts the Blueprint's value back (what ``blueprintd drift -o``
    shows; remediation itself re-applies the whole owned object)."""
    if drift.path == "." or not drift.pointer or drift.target.kind == "release":
        return []
    if drift.expected is None:
        return [{"op": "remove", "path": drift.pointer}]
    op = "add" if drift.actual is None else "replace"
    return [{"op": op, "path": drift.pointer, "value": drift.expected}]
