"""Load blueprintd objects from YAML files or dicts, with errors that say where and why.

``load_objects(paths)`` reads files and folders (multi-document YAML), recognises each
document's kind, validates it against the model and, for Blueprints, the semantic checks
(``checks.py``), and raises one ``InvalidInput`` listing every problem as
``file:line: field.path: message (allowed: …)``. ``parse_object(data)`` does the same for
an in-memory dict (an object read from the API server, a webhook request).
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path as FsPath
from typing import Any, Literal

import pydantic
from pydantic import BaseModel

from blueprintd.api import API_VERSION
from blueprintd.api.base import ApiModel
from blueprintd.api.blueprint import Blueprint
from blueprintd.api.checks import check_spec
from blueprintd.api.common import check_dns_subdomain, matches
from blueprintd.api.driftreport import DriftReport
from blueprintd.api.gitsource import GitSource
from blueprintd.api.issues import InvalidInput, Issue, Path, PathElem, json_type, json_type_words
from blueprintd.api.limits import DEFAULT_LIMITS, BlueprintLimits
from blueprintd.api.membercluster import MemberCluster
from blueprintd.api.params import override_issues, shorthand_issues
from blueprintd.api.revision import BlueprintRevision
from blueprintd.api.yamlsrc import Document, parse_yaml, read_documents

KINDS: dict[str, type[ApiModel]] = {
    "Blueprint": Blueprint,
    "BlueprintRevision": BlueprintRevision,
    "MemberCluster": MemberCluster,
    "GitSource": GitSource,
    "DriftReport": DriftReport,
}

_TYPE_WORDS = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "dict_type": "an object (a YAML mapping)",
    "model_type": "an object (a YAML mapping)",
    "model_attributes_type": "an object (a YAML mapping)",
    "list_type": "a list",
    "datetime_type": "a date-time",
    "datetime_parsing": "a date-time such as 2024-01-01T00:00:00Z",
    "datetime_from_date_parsing": "a date-time such as 2024-01-01T00:00:00Z",
}


@dataclass
class Loaded:
    """One object read from a document."""

    document: Document
    obj: ApiModel

    @property
    def kind(self) -> str:
        return type(self.obj).__name__


def _json_name(value: Any) -> str:
    """What ``value`` is, in words; integers and other numbers are both ``a number`` here."""
    kind = json_type(value)
    return json_type_words("number" if kind == "integer" else kind)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _unwrap(annotation: Any) -> Any:
    """``X | None`` → ``X``; ``list[X]`` / ``dict[str, X]`` stay as they are."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return _unwrap(args[0])
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    return annotation


def _field_by_alias(model: type[BaseModel], name: str) -> Any:
    for fname, info in model.model_fields.items():
        if (info.alias or fname) == name or fname == name:
            return info.annotation
    return None


def _type_at(model: type[BaseModel], path: Path) -> Any:
    """The annotation found at ``path`` inside ``model`` (``None`` when unknown)."""
    current: Any = model
    for elem in path:
        current = _unwrap(current)
        origin = typing.get_origin(current)
        if isinstance(current, type) and issubclass(current, BaseModel) and isinstance(elem, str):
            current = _field_by_alias(current, elem)
        elif origin is list and isinstance(elem, int):
            current = typing.get_args(current)[0]
        elif origin is dict and isinstance(elem, str):
            current = typing.get_args(current)[1]
        else:
            return None
        if current is None:
            return None
    return _unwrap(current)


def _allowed_fields(model: type[BaseModel], path: Path) -> str:
    found = _type_at(model, path)
    if isinstance(found, type) and issubclass(found, BaseModel):
        return ", ".join(info.alias or name for name, info in found.model_fields.items())
    return ""


def _allowed_values(model: type[BaseModel], path: Path) -> str:
    found = _type_at(model, path)
    if typing.get_origin(found) is Literal:
        return ", ".join(str(a) for a in typing.get_args(found))
    if isinstance(found, type) and issubclass(found, Enum):
        return ", ".join(str(m.value) for m in found)
    return ""


def _child_of(node: Any, elem: int | str) -> tuple[bool, Any]:
    if isinstance(node, dict) and isinstance(elem, str) and elem in node:
        return True, node[elem]
    if isinstance(node, list) and isinstance(elem, int) and 0 <= elem < len(node):
        return True, node[elem]
    return False, None


def _loc_path(loc: tuple[int | str, ...], data: Any, error_type: str) -> Path:
    """Pydantic's ``loc`` as a path of real keys (union branch tags such as 'int' are dropped)."""
    path: list[PathElem] = []
    node = data
    for i, elem in enumerate(loc):
        last = i == len(loc) - 1
        found, child = _child_of(node, elem)
        if found:
            path.append(elem)
            node = child
        elif last and error_type in ("missing", "extra_forbidden") and isinstance(elem, str):
            path.append(elem)
        elif isinstance(node, dict) and isinstance(elem, str) and error_type == "missing":
            path.append(elem)
            node = None
        # anything else is a union tag ("int", "function-after[...]") and is skipped
    return tuple(path)


def _pydantic_issues(exc: pydantic.ValidationError, data: Any, model: type[BaseModel]) -> list[tuple[Path, str, str]]:
    grouped: dict[Path, list[dict[str, Any]]] = {}
    for err in exc.errors(include_url=False):
        path = _loc_path(tuple(err["loc"]), data, err["type"])
        grouped.setdefault(path, []).append(dict(err))
    out: list[tuple[Path, str, str]] = []
    for path, errs in grouped.items():
        types_ = [e["type"] for e in errs]
        if len(errs) > 1 and all(t in _TYPE_WORDS for t in types_):
            wanted = sorted({_TYPE_WORDS[t] for t in types_})
            got = errs[0].get("input")
            out.append((path, f"expected {' or '.join(wanted)}, got {_json_name(got)} {_short(got)}", ""))
            continue
        first = errs[0]
        typ = first["type"]
        given = first.get("input")
        if typ == "missing":
            out.append((path, "required field is missing", ""))
        elif typ == "extra_forbidden":
            name = path[-1] if path else "?"
            out.append((path, f"unknown field {name!r}", _allowed_fields(model, path[:-1])))
        elif typ in ("literal_error", "enum"):
            allowed = _allowed_values(model, path) or str(first.get("ctx", {}).get("expected", ""))
            out.append((path, f"invalid value {_short(given)}", allowed.replace("'", "")))
        elif typ in _TYPE_WORDS:
            hint = ""
            if typ == "string_type" and isinstance(given, int | float | bool):
                hint = f" (YAML read it as {'a boolean' if isinstance(given, bool) else 'a number'}: quote it)"
            out.append((path, f"expected {_TYPE_WORDS[typ]}, got {_json_name(given)} {_short(given)}{hint}", ""))
        elif typ == "value_error":
            message = str(first["msg"]).removeprefix("Value error, ")
            out.append((path, message, ""))
        else:
            out.append((path, str(first["msg"]), ""))
    return out


def _check_header(data: dict[str, Any], doc: Document) -> tuple[type[ApiModel] | None, list[Issue]]:
    kinds = ", ".join(KINDS)
    kind = data.get("kind")
    api_version = data.get("apiVersion")
    issues = []
    if api_version != API_VERSION:
        what = "missing" if api_version is None else f"{api_version!r} is not served by blueprintd"
        issues.append(doc.issue(f"apiVersion {what}", ("apiVersion",), API_VERSION))
    model = KINDS.get(kind) if isinstance(kind, str) else None
    if model is None:
        what = "missing" if kind is None else f"{kind!r} is not a blueprintd kind"
        issues.append(doc.issue(f"kind {what}", ("kind",), kinds))
    return model, issues


def validate_document(
    doc: Document, expect: type[ApiModel] | None = None, limits: BlueprintLimits = DEFAULT_LIMITS
) -> tuple[ApiModel | None, list[Issue]]:
    """Parse and check one document; returns the object (if it parsed) and all issues."""
    data = doc.data
    if not isinstance(data, dict):
        return None, [doc.issue(f"expected a Kubernetes object (a YAML mapping), got {_json_name(data)}")]
    model, issues = _check_header(data, doc)
    if expect is not None and model is not None and model is not expect:
        issues.append(doc.issue(f"expected a {expect.__name__}, got a {model.__name__}", ("kind",), expect.__name__))
        return None, issues
    if model is None:
        return None, issues
    try:
        obj = model.model_validate(data)
    except pydantic.ValidationError as exc:
        reported = {issue.path for issue in issues}  # apiVersion/kind already explained
        for path, message, allowed in _pydantic_issues(exc, data, model):
            if path not in reported:
                issues.append(doc.issue(message, path, allowed))
        return None, issues
    name = data.get("metadata", {}).get("name") if isinstance(data.get("metadata"), dict) else None
    if not name:
        issues.append(doc.issue("metadata.name is required", ("metadata", "name")))
    else:
        try:
            check_dns_subdomain(str(name))
        except ValueError as exc:
            issues.append(doc.issue(str(exc), ("metadata", "name")))
    if isinstance(obj, Blueprint | BlueprintRevision):
        spec = obj.spec if isinstance(obj, Blueprint) else obj.spec.spec
        root: Path = ("spec",) if isinstance(obj, Blueprint) else ("spec", "spec")
        found = check_spec(spec, root, limits)
        if isinstance(obj, Blueprint):  # new content declares types; stored revisions may predate them
            found = shorthand_issues(spec.parameters, (*root, "parameters")) + found
        for issue in found:
            issues.append(doc.issue(issue.message, issue.path, issue.allowed))
    return (obj if not issues else None), issues


def load_documents(
    docs: Iterable[Document], expect: type[ApiModel] | None = None, limits: BlueprintLimits = DEFAULT_LIMITS
) -> list[Loaded]:
    """Validate documents; raises ``InvalidInput`` with every issue of every document."""
    loaded: list[Loaded] = []
    issues: list[Issue] = []
    blueprints: dict[str, Loaded] = {}
    for doc in docs:
        obj, found = validate_document(doc, expect, limits)
        issues.extend(found)
        if obj is None:
            continue
        item = Loaded(doc, obj)
        if isinstance(obj, Blueprint):
            previous = blueprints.get(obj.name)
            if previous is not None:
                where = f"{previous.document.source}:{previous.document.start_line or '?'}"
                issues.append(
                    doc.issue(f"Blueprint {obj.name!r} is defined twice (also {where})", ("metadata", "name"))
                )
                continue
            blueprints[obj.name] = item
        loaded.append(item)
    issues.extend(_member_override_issues(loaded))
    if issues:
        raise InvalidInput(issues)
    return loaded


def _member_override_issues(loaded: list[Loaded]) -> list[Issue]:
    """MemberCluster parameter values that a Blueprint selecting that cluster refuses.

    Only when both are among the documents read: a MemberCluster on its own cannot know the
    declarations, so render checks the same values per cluster (``params.effective_values``).
    """
    blueprints = [item.obj for item in loaded if isinstance(item.obj, Blueprint)]
    issues: list[Issue] = []
    for item in loaded:
        member = item.obj
        if not isinstance(member, MemberCluster) or not member.spec.parameters:
            continue
        labels = dict(member.metadata.labels or {})
        for bp in blueprints:
            if matches(bp.spec.cluster_selector, labels):
                root: Path = ("spec", "parameters")
                for issue in override_issues(bp.spec.parameters, member.spec.parameters, root, bp.name):
                    issues.append(item.document.issue(issue.message, issue.path, issue.allowed))
    return issues


def load_objects(paths: Iterable[str | FsPath], limits: BlueprintLimits = DEFAULT_LIMITS) -> list[Loaded]:
    """Every blueprintd object in the YAML files and folders ``paths`` (Blueprints within ``limits``)."""
    return load_documents(read_documents(paths), limits=limits)


def load_blueprints(paths: Iterable[str | FsPath]) -> list[Blueprint]:
    """Every Blueprint in ``paths``; any other kind is an error."""
    return [item.obj for item in load_documents(read_documents(paths), Blueprint) if isinstance(item.obj, Blueprint)]


def load_blueprint_text(text: str, source: str = "<input>") -> Blueprint:
    """The single Blueprint in a YAML text."""
    items = load_documents(parse_yaml(text, source), Blueprint)
    if len(items) != 1 or not isinstance(items[0].obj, Blueprint):
        raise InvalidInput([Issue(f"expected exactly one Blueprint, found {len(items)}", source=source)])
    return items[0].obj


def parse_object(data: Any, source: str = "", expect: type[ApiModel] | None = None) -> ApiModel:
    """Validate an in-memory object (no line numbers); raises ``InvalidInput``."""
    obj, issues = validate_document(Document(data, source), expect)
    if issues or obj is None:
        raise InvalidInput(issues or [Issue("invalid object", source=source)])
    return obj


def parse_blueprint(data: Any, source: str = "") -> Blueprint:
    """Validate an in-memory Blueprint (schema and semantics); raises ``InvalidInput``."""
    obj = parse_object(data, source, Blueprint)
    assert isinstance(obj, Blueprint)
    return obj


M = typing.TypeVar("M", bound=BaseModel)


def load_model_file(path: str | FsPath, model: type[M]) -> M:
    """One plain (non-Kubernetes) model from a YAML file, e.g. ``ClusterFacts``.

    Errors carry file, line and field path like Blueprint errors do.
    """
    docs = read_documents([path])
    if len(docs) != 1:
        raise InvalidInput([Issue(f"expected one YAML document, found {len(docs)}", source=str(path))])
    doc = docs[0]
    if not isinstance(doc.data, dict):
        raise InvalidInput([doc.issue(f"expected a YAML mapping, got {_json_name(doc.data)}")])
    try:
        return model.model_validate(doc.data)
    except pydantic.ValidationError as exc:
        raise InvalidInput(
            [doc.issue(message, p, allowed) for p, message, allowed in _pydantic_issues(exc, doc.data, model)]
        ) from None
