"""Semantic checks of a Blueprint spec, beyond what the schema can say.

The schema (pydantic and the CRD) checks shapes; these checks relate parts to each other:
add-on names are unique, every ``dependsOn`` names an add-on without forming a cycle,
``policies.gatekeeper.addon`` names the add-on installing Gatekeeper, manifests are real
Kubernetes objects, overlays compile and only use known CEL variables,
patches target add-ons and manifests that exist, JSON patch operations are well formed and
point at fields that exist (or that another overlay creates). Every problem is returned
as an ``Issue`` with the field path, so users fix all of them in one round.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from blueprintd.api.blueprint import (
    GENERATED_ADDONS,
    NETWORK_POLICIES_ADDON,
    POLICY_CONSTRAINTS_ADDON,
    POLICY_TEMPLATES_ADDON,
    Addon,
    BlueprintSpec,
    DriftIgnore,
    JsonPatchOp,
    Overlay,
    OverlayPatch,
)
from blueprintd.api.cel import (
    CLUSTER_FIELDS,
    POOL_FIELDS,
    CelError,
    compile_cel,
    iter_templates,
    template_expression,
)
from blueprintd.api.expand import api_group, effective_addons, template_kinds
from blueprintd.api.issues import Issue, Path
from blueprintd.api.limits import DEFAULT_LIMITS, BlueprintLimits, check_limits
from blueprintd.api.params import parameter_issues
from blueprintd.api.pointer import lookup, parse_path, parse_pointer
from blueprintd.api.ref import ObjectRef

LABEL_NAME_RE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
LABEL_PREFIX_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")

_ANY = object()  # marker in the "may exist" tree: anything below may exist


def cel_variables(scope: str, params: Iterable[str]) -> dict[str, frozenset[str] | None]:
    """The CEL variables an overlay of ``scope`` may use."""
    variables: dict[str, frozenset[str] | None] = {"cluster": CLUSTER_FIELDS, "params": frozenset(params)}
    if scope == "nodePool":
        variables["pool"] = POOL_FIELDS
    return variables


def label_key_problem(key: str) -> str:
    """Why ``key`` is not a valid Kubernetes label key ('' when it is)."""
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not LABEL_PREFIX_RE.fullmatch(prefix)):
        return f"label key {key!r} has an invalid prefix (a DNS subdomain such as nvidia.com)"
    if not name or len(name) > 63 or not LABEL_NAME_RE.fullmatch(name):
        return f"label key {key!r} is invalid: name part up to 63 letters, digits, '-', '_', '.'"
    return ""


def label_value_problem(value: str) -> str:
    if value and (len(value) > 63 or not LABEL_NAME_RE.fullmatch(value)):
        return f"label value {value!r} is invalid: up to 63 letters, digits, '-', '_', '.', alphanumeric at both ends"
    return ""


class _Checker:
    def __init__(self, spec: BlueprintSpec, root: Path) -> None:
        self.spec = spec
        self.root = root
        self.issues: list[Issue] = []
        self.addons = effective_addons(spec)
        self.by_name: dict[str, Addon] = {}
        for a in self.addons:
            self.by_name.setdefault(a.name, a)
        self.params = set(spec.parameters)

    def add(self, message: str, path: Path, allowed: str = "") -> None:
        self.issues.append(Issue(message, (*self.root, *path), allowed))

    def addon_path(self, name: str, index: int | None) -> Path:
        if index is not None:
            return ("addons", index)
        return {
            POLICY_TEMPLATES_ADDON: ("policies", "gatekeeper", "templates"),
            POLICY_CONSTRAINTS_ADDON: ("policies", "gatekeeper", "constraints"),
            NETWORK_POLICIES_ADDON: ("policies", "networkPolicies"),
        }.get(name, ("addons",))

    # --- add-ons ------------------------------------------------------------------------

    def check_addons(self) -> None:
        seen: dict[str, int] = {}
        for i, addon in enumerate(self.spec.addons):
            if addon.name in GENERATED_ADDONS:
                self.add(
                    f"add-on name {addon.name!r} is reserved for the add-on generated from spec.policies",
                    ("addons", i, "name"),
                )
            if addon.name in seen:
                self.add(
                    f"duplicate add-on name {addon.name!r} (also spec.addons[{seen[addon.name]}]); "
                    "names must be unique",
                    ("addons", i, "name"),
                )
            seen.setdefault(addon.name, i)
            names = sorted(self.by_name)
            for j, dep in enumerate(addon.depends_on):
                if dep == addon.name:
                    self.add(f"add-on {addon.name!r} cannot depend on itself", ("addons", i, "dependsOn", j))
                elif dep not in self.by_name:
                    self.add(
                        f"dependsOn names unknown add-on {dep!r}",
                        ("addons", i, "dependsOn", j),
                        ", ".join(names),
                    )
            if addon.helm is not None:
                for j, pointer in enumerate(addon.helm.encode_as_yaml):
                    try:
                        parse_pointer(pointer)
                    except ValueError as exc:
                        self.add(str(exc), ("addons", i, "helm", "encodeAsYaml", j))
            if addon.manifests is not None:
                self.check_manifests(addon, ("addons", i, "manifests"))
            if addon.drift is not None:
                self.check_ignores(addon.drift.ignore, ("addons", i, "drift", "ignore"))
        self.check_cycles()

    def check_cycles(self) -> None:
        index = {a.name: i for i, a in enumerate(self.spec.addons)}
        graph = {a.name: [d for d in a.depends_on if d in self.by_name and d != a.name] for a in self.addons}
        state: dict[str, int] = {}  # 1 = on stack, 2 = done
        reported: set[frozenset[str]] = set()

        def visit(name: str, stack: list[str]) -> None:
            state[name] = 1
            stack.append(name)
            for dep in graph.get(name, []):
                if state.get(dep) == 1:
                    cycle = [*stack[stack.index(dep) :], dep]
                    key = frozenset(cycle)
                    if key not in reported:
                        reported.add(key)
                        first = cycle[0]
                        path = ("addons", index[first], "dependsOn") if first in index else ("addons",)
                        self.add("dependency cycle: " + " → ".join(cycle), path)
                elif state.get(dep) is None:
                    visit(dep, stack)
            stack.pop()
            state[name] = 2

        for addon in sorted(graph):
            if addon not in state:
                visit(addon, [])

    def check_manifests(self, addon: Addon, path: Path) -> None:
        seen: dict[tuple[str, str, str, str], int] = {}
        for j, obj in enumerate(addon.manifests or []):
            at = (*path, j)
            for fld in ("apiVersion", "kind"):
                if not isinstance(obj.get(fld), str) or not obj.get(fld):
                    self.add(f"a Kubernetes object needs a string '{fld}'", (*at, fld))
            meta = obj.get("metadata")
            if not isinstance(meta, dict):
                self.add("a Kubernetes object needs 'metadata' with a 'name'", (*at, "metadata"))
                continue
            if not isinstance(meta.get("name"), str) or not meta.get("name"):
                self.add("a Kubernetes object needs a string 'metadata.name'", (*at, "metadata", "name"))
                continue
            key = ObjectRef.of(obj)
            if key in seen:
                self.add(
                    f"duplicate object {key} (also item {seen[key]})",
                    (*at, "metadata", "name"),
                )
            seen.setdefault(key, j)

    def check_ignores(self, ignores: list[DriftIgnore], path: Path) -> None:
        for k, rule in enumerate(ignores):
            for m, p in enumerate(rule.paths):
                try:
                    parse_path(p)
                except ValueError as exc:
                    self.add(str(exc), (*path, k, "paths", m))

    # --- policies -----------------------------------------------------------------------

    def check_policies(self) -> None:
        policies = self.spec.policies
        if policies is None:
            return
        if policies.gatekeeper is not None:
            gk = policies.gatekeeper
            base: Path = ("policies", "gatekeeper")
            for j, tmpl in enumerate(gk.templates):
                at = (*base, "templates", j)
                if tmpl.get("kind") != "ConstraintTemplate" or api_group(str(tmpl.get("apiVersion", ""))) != (
                    "templates.gatekeeper.sh"
                ):
                    self.add(
                        "expected a ConstraintTemplate",
                        (*at, "kind"),
                        "apiVersion templates.gatekeeper.sh/v1",
                    )
                try:
                    kind = tmpl["spec"]["crd"]["spec"]["names"]["kind"]
                except (KeyError, TypeError):
                    kind = None
                if not isinstance(kind, str) or not kind:
                    self.add("a ConstraintTemplate needs spec.crd.spec.names.kind", (*at, "spec"))
            kinds = template_kinds(self.spec)
            for j, con in enumerate(gk.constraints):
                at = (*base, "constraints", j)
                if api_group(str(con.get("apiVersion", ""))) != "constraints.gatekeeper.sh":
                    self.add(
                        f"constraint apiVersion {con.get('apiVersion')!r} is not a Gatekeeper constraint",
                        (*at, "apiVersion"),
                        "constraints.gatekeeper.sh/v1beta1",
                    )
                if kinds and con.get("kind") not in kinds:
                    self.add(
                        f"constraint kind {con.get('kind')!r} has no ConstraintTemplate in this Blueprint",
                        (*at, "kind"),
                        ", ".join(kinds),
                    )
            for name in (POLICY_TEMPLATES_ADDON, POLICY_CONSTRAINTS_ADDON):
                generated = self.by_name.get(name)
                if generated is not None and generated.name not in {a.name for a in self.spec.addons}:
                    sub = "templates" if name == POLICY_TEMPLATES_ADDON else "constraints"
                    self.check_manifests(generated, (*base, sub))
        for j, pol in enumerate(policies.network_policies):
            at = ("policies", "networkPolicies", j)
            if pol.get("kind") != "NetworkPolicy":
                self.add(f"expected kind NetworkPolicy, got {pol.get('kind')!r}", (*at, "kind"), "NetworkPolicy")
            meta = pol.get("metadata")
            if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or not meta.get("name"):
                self.add("a NetworkPolicy needs metadata.name", (*at, "metadata", "name"))
            elif not meta.get("namespace") and not policies.tenant_namespaces:
                self.add(
                    "network policy has no namespace and spec.policies.tenantNamespaces is empty, so "
                    "it applies nowhere",
                    (*at, "metadata"),
                )

    def check_gatekeeper_addon(self) -> None:
        """``policies.gatekeeper.addon`` must name an add-on of ``spec.addons`` (or be "").

        The generated policy add-ons depend on it, so the ConstraintTemplates wait until
        Gatekeeper serves their API. A name that matches no add-on used to pass validation and
        fail on every member ("the cluster does not serve ConstraintTemplate"). ``""`` states
        that Gatekeeper is installed outside this Blueprint. Only checked when there are
        templates or constraints: without them nothing depends on the add-on.
        """
        policies = self.spec.policies
        gk = policies.gatekeeper if policies is not None else None
        if gk is None or not (gk.templates or gk.constraints) or gk.addon == "":
            return
        user_addons = sorted({a.name for a in self.spec.addons})
        if gk.addon in user_addons:
            return
        why = "is generated from spec.policies" if gk.addon in GENERATED_ADDONS else "is not in spec.addons"
        self.add(
            f"names add-on {gk.addon!r}, which {why}; the policy add-ons wait for it so that Gatekeeper "
            "serves ConstraintTemplate before they are applied. Name the add-on that installs Gatekeeper, "
            'or set addon: "" when Gatekeeper is installed outside this Blueprint',
            ("policies", "gatekeeper", "addon"),
            ", ".join(user_addons),
        )

    # --- overlays -----------------------------------------------------------------------

    def check_overlays(self) -> None:
        seen: dict[str, int] = {}
        may_exist = self.possible_paths()
        for k, overlay in enumerate(self.spec.overlays):
            at: Path = ("overlays", k)
            if overlay.name in seen:
                self.add(
                    f"duplicate overlay name {overlay.name!r} (also spec.overlays[{seen[overlay.name]}])",
                    (*at, "name"),
                )
            seen.setdefault(overlay.name, k)
            variables = cel_variables(overlay.scope, self.params)
            try:
                compile_cel(overlay.when, variables)
            except CelError as exc:
                self.add(f"invalid condition: {exc}", (*at, "when"))
            for key, value in overlay.node_labels.items():
                self.check_label(key, value, (*at, "nodeLabels", key), variables)
            for p, patch in enumerate(overlay.patches):
                self.check_patch(overlay, patch, (*at, "patches", p), variables, may_exist)

    def check_label(self, key: str, value: str, path: Path, variables: dict[str, frozenset[str] | None]) -> None:
        for text, what in ((key, "key"), (value, "value")):
            expr = template_expression(text)
            if expr is not None:
                try:
                    compile_cel(expr, variables)
                except CelError as exc:
                    self.add(f"invalid templated label {what}: {exc}", path)
        if template_expression(key) is None and (problem := label_key_problem(key)):
            self.add(problem, path)
        if template_expression(value) is None and (problem := label_value_problem(value)):
            self.add(problem, path)

    def check_patch(
        self,
        overlay: Overlay,
        patch: OverlayPatch,
        path: Path,
        variables: dict[str, frozenset[str] | None],
        may_exist: dict[tuple[str, int], dict[str, Any]],
    ) -> None:
        wire = patch.model_dump(by_alias=True, exclude_none=True, mode="json")
        for sub, expr in iter_templates(wire):
            try:
                compile_cel(expr, variables)
            except CelError as exc:
                self.add(f"invalid template: {exc}", (*path, *sub))
        addon = self.by_name.get(patch.addon)
        if addon is None:
            self.add(
                f"patch targets unknown add-on {patch.addon!r}",
                (*path, "addon"),
                ", ".join(sorted(self.by_name)),
            )
            return
        helm_patch = patch.values is not None or patch.values_json_patch is not None
        if helm_patch and addon.helm is None:
            self.add(
                f"add-on {addon.name!r} installs manifests, not a Helm chart: "
                "patch it with target + mergePatch/jsonPatch",
                (*path, "values" if patch.values is not None else "valuesJsonPatch"),
            )
            return
        if not helm_patch and addon.manifests is None:
            self.add(
                f"add-on {addon.name!r} is a Helm chart: patch its values with values or valuesJsonPatch",
                (*path, "target"),
            )
            return
        doc: Any
        target_index = -1
        if helm_patch:
            assert addon.helm is not None
            doc = addon.helm.values
        else:
            assert patch.target is not None
            target_index = self.find_target(addon, patch, path)
            if target_index < 0:
                return
            doc = (addon.manifests or [])[target_index]
        ops = patch.values_json_patch if patch.values_json_patch is not None else patch.json_patch
        if ops is None:
            return
        field = "valuesJsonPatch" if patch.values_json_patch is not None else "jsonPatch"
        tree = may_exist.get((addon.name, target_index), {})
        for o, op in enumerate(ops):
            self.check_op(op, doc, tree, (*path, field, o), addon.name)

    def find_target(self, addon: Addon, patch: OverlayPatch, path: Path) -> int:
        target = patch.target
        assert target is not None
        if any(template_expression(v) is not None for v in (target.kind, target.name, target.namespace or "")):
            return -1
        for j, obj in enumerate(addon.manifests or []):
            api_version, kind, namespace, name = ObjectRef.of(obj)
            if kind != target.kind or name != target.name:
                continue
            if target.namespace is not None and namespace != target.namespace:
                continue
            if target.api_version is not None and api_version != target.api_version:
                continue
            return j
        present = ", ".join(sorted({f"{ref.kind}/{ref.name}" for ref in map(ObjectRef.of, addon.manifests or [])}))
        self.add(
            f"add-on {addon.name!r} has no {target.kind} named {target.name!r}"
            + (f" in namespace {target.namespace!r}" if target.namespace else ""),
            (*path, "target"),
            present or "no objects",
        )
        return -1

    def check_op(self, op: JsonPatchOp, doc: Any, tree: dict[str, Any], path: Path, addon: str) -> None:
        pointers = [("path", op.path)] + ([("from", op.from_)] if op.from_ is not None else [])
        for fld, pointer in pointers:
            if template_expression(pointer) is not None:
                continue
            try:
                tokens = parse_pointer(pointer)
            except ValueError as exc:
                self.add(str(exc), (*path, fld))
                continue
            if op.op == "add" and fld == "path":
                if not tokens:
                    continue
                tokens = tokens[:-1]  # add creates the last token; its parent must exist
                need = "its parent"
            else:
                need = "it"
            if not lookup(doc, tokens)[0] and not _may_exist(tree, tokens):
                self.add(
                    f"{fld} {pointer!r} does not exist in add-on {addon!r} and no overlay creates it; "
                    f"op '{op.op}' needs {need} to exist (use 'add' to create a field)",
                    (*path, fld),
                )

    def possible_paths(self) -> dict[tuple[str, int], dict[str, Any]]:
        """Per (add-on, manifest index or -1 for values): a tree of fields some overlay may create."""
        trees: dict[tuple[str, int], dict[str, Any]] = {}
        for overlay in self.spec.overlays:
            for patch in overlay.patches:
                addon = self.by_name.get(patch.addon)
                if addon is None:
                    continue
                index = -1
                if patch.target is not None:
                    index = next(
                        (
                            j
                            for j, obj in enumerate(addon.manifests or [])
                            if (ref := ObjectRef.of(obj)).kind == patch.target.kind and ref.name == patch.target.name
                        ),
                        -2,
                    )
                tree = trees.setdefault((addon.name, index), {})
                merge = patch.values if patch.values is not None else patch.merge_patch
                if merge is not None:
                    _grow(tree, [], merge)
                for op in patch.values_json_patch or patch.json_patch or []:
                    if op.op in ("add", "copy", "move"):
                        if template_expression(op.path) is not None:
                            continue
                        try:
                            tokens = parse_pointer(op.path)
                        except ValueError:
                            continue
                        _grow(tree, tokens, op.value if op.op == "add" else _ANY)
        return trees

    def run(self) -> list[Issue]:
        for issue in parameter_issues(self.spec.parameters, ("parameters",)):
            self.add(issue.message, issue.path, issue.allowed)
        self.check_addons()
        self.check_policies()
        self.check_gatekeeper_addon()
        self.check_ignores(self.spec.drift.ignore, ("drift", "ignore"))
        self.check_overlays()
        return self.issues


def _grow(tree: dict[str, Any], tokens: list[str], value: Any) -> None:
    """Record that ``tokens`` (and, for objects, everything in ``value``) may exist."""
    node = tree
    for token in tokens:
        if template_expression(token) is not None:
            node["*"] = _ANY
            return
        child = node.get(token)
        if child is _ANY:
            return
        node = node.setdefault(token, {})
    if value is _ANY:
        node["*"] = _ANY
    elif isinstance(value, dict):
        for key, sub in value.items():
            _grow(node, [str(key)], sub)


def _may_exist(tree: dict[str, Any], tokens: list[str]) -> bool:
    node: Any = tree
    for token in tokens:
        if not isinstance(node, dict):
            return False
        if node.get("*") is _ANY:
            return True
        node = node.get(token)
        if node is None:
            return False
        if node is _ANY:
            return True
    return True


def check_spec(spec: BlueprintSpec, root: Path = ("spec",), limits: BlueprintLimits = DEFAULT_LIMITS) -> list[Issue]:
    """Every semantic problem of ``spec``, and every limit it exceeds; paths start with ``root``."""
    return _Checker(spec, root).run() + check_limits(spec, root, limits)
