"""Generate the CustomResourceDefinitions in ``crds/`` from the pydantic models.

The models are the single source of truth: the API server, ``kubectl explain`` and the
operator all see the same fields and descriptions. Pydantic emits JSON Schema; Kubernetes
wants a *structural* OpenAPI v3 schema, so this module rewrites it:

* ``$ref``/``$defs`` are inlined (Kubernetes does not resolve references);
* ``anyOf`` is removed: ``X | None`` becomes ``X`` (absent fields are simply omitted),
  ``int | str`` becomes ``x-kubernetes-int-or-string``, other scalar unions and ``Any``
  become ``x-kubernetes-preserve-unknown-fields`` (validated by the models instead);
* free-form maps (Helm values, manifests) keep unknown fields instead of being pruned;
* ``title``, ``default``, ``additionalProperties: false`` and ``uniqueItems`` are dropped
  (defaults are applied by the models, so stored objects stay exactly as users wrote them);
* every property must carry a description, or generation fails — that text is what
  ``kubectl explain`` shows.

Run ``python -m blueprintd.api.crdgen`` to rewrite ``crds/``; ``--check`` exits 1 when the
files are stale (a unit test does the same).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from blueprintd.api import GROUP, VERSION
from blueprintd.api.blueprint import Blueprint
from blueprintd.api.driftreport import DriftReport
from blueprintd.api.gitsource import GitSource
from blueprintd.api.membercluster import MemberCluster
from blueprintd.api.params_admission import FILE_NAME as PARAMETERS_POLICY_FILE
from blueprintd.api.params_admission import admission_policy
from blueprintd.api.revision import BlueprintRevision

_KEEP = {
    "type",
    "description",
    "enum",
    "pattern",
    "format",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "minItems",
    "maxItems",
    "maxProperties",
    "required",
}


@dataclass(frozen=True)
class PrinterColumn:
    name: str
    json_path: str
    type: str = "string"
    priority: int = 0
    description: str = ""

    def to_crd(self) -> dict[str, Any]:
        col: dict[str, Any] = {"name": self.name, "type": self.type, "jsonPath": self.json_path}
        if self.description:
            col["description"] = self.description
        if self.priority:
            col["priority"] = self.priority
        return col


@dataclass(frozen=True)
class KindSpec:
    model: type[BaseModel]
    plural: str
    short_names: tuple[str, ...]
    columns: tuple[PrinterColumn, ...]
    categories: tuple[str, ...] = field(default=("blueprintd",))

    @property
    def kind(self) -> str:
        return self.model.__name__

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"


_AGE = PrinterColumn("Age", ".metadata.creationTimestamp", "date")
_READY = PrinterColumn("Ready", '.status.conditions[?(@.type=="Ready")].status', description="Ready condition")

KINDS: tuple[KindSpec, ...] = (
    KindSpec(
        Blueprint,
        "blueprints",
        ("bp",),
        (
            PrinterColumn("Version", ".spec.version", description="Published version"),
            PrinterColumn("Clusters", ".status.matchedClusters", "integer", description="Selected clusters"),
            PrinterColumn("Ready", ".status.readyClusters", "integer", description="Clusters healthy on it"),
            _AGE,
        ),
    ),
    KindSpec(
        BlueprintRevision,
        "blueprintrevisions",
        ("bprev",),
        (
            PrinterColumn("Blueprint", ".spec.blueprint"),
            PrinterColumn("Version", ".spec.version"),
            PrinterColumn("Source", ".spec.source.kind"),
            PrinterColumn("Commit", ".spec.source.commit", priority=1),
            PrinterColumn("Hash", ".spec.contentHash", priority=1),
            _AGE,
        ),
    ),
    KindSpec(
        MemberCluster,
        "memberclusters",
        ("mc",),
        (
            PrinterColumn("Reachable", ".status.reachable", "boolean"),
            PrinterColumn("Blueprint", ".status.revisionSummary", description="Applied blueprint versions"),
            _READY,
            PrinterColumn("Drift", ".status.drift.open", "integer", description="Open drift"),
            PrinterColumn("Paused", ".spec.paused", "boolean", priority=1),
            PrinterColumn("Replica", ".status.shard.replica", description="Operator replica that owns it"),
            _AGE,
        ),
    ),
    KindSpec(
        GitSource,
        "gitsources",
        ("gitsrc",),
        (
            PrinterColumn("URL", ".spec.url"),
            PrinterColumn("Branch", ".spec.ref.branch"),
            PrinterColumn("Commit", ".status.lastAppliedCommit"),
            _READY,
            _AGE,
        ),
    ),
    KindSpec(
        DriftReport,
        "driftreports",
        ("drift",),
        (
            PrinterColumn("Cluster", ".spec.cluster"),
            PrinterColumn("Open", ".status.summary.open", "integer", description="Drift present now"),
            PrinterColumn("Remediated", ".status.summary.remediated", "integer"),
            PrinterColumn("Notified", ".status.summary.notified", "integer"),
            PrinterColumn("Protected", ".status.summary.protected", "integer", description="Objects under block"),
            PrinterColumn("Entries", ".status.summary.total", "integer", priority=1),
            _AGE,
        ),
    ),
)


class SchemaError(Exception):
    """The models cannot be expressed as a structural schema (a bug in a model)."""


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Inline a ``$ref`` (or ``allOf: [$ref]``), keeping sibling keys such as description."""
    ref = node.get("$ref")
    if ref is None and len(node.get("allOf", [])) == 1:
        ref = node["allOf"][0].get("$ref")
    if ref is None:
        return node
    target = defs[ref.rsplit("/", 1)[-1]]
    merged = dict(target)
    merged.update({k: v for k, v in node.items() if k not in ("$ref", "allOf")})
    return merged


def _preserve(description: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"x-kubernetes-preserve-unknown-fields": True}
    if description:
        out["description"] = description
    return out


def structural(node: dict[str, Any], defs: dict[str, Any], where: str = "") -> dict[str, Any]:
    """Convert one pydantic JSON-schema node to a structural OpenAPI v3 node."""
    node = _resolve(node, defs)
    description = node.get("description")
    if "anyOf" in node:
        variants = [v for v in node["anyOf"] if v.get("type") != "null"]
        outer = {k: v for k, v in node.items() if k != "anyOf"}
        if len(variants) == 1:
            inner = _resolve(variants[0], defs)
            merged = {**inner, **{k: v for k, v in outer.items() if k not in ("default", "title")}}
            return structural(merged, defs, where)
        types = sorted(_resolve(v, defs).get("type", "") for v in variants)
        if types == ["integer", "string"]:
            out: dict[str, Any] = {"x-kubernetes-int-or-string": True}
            if description:
                out["description"] = description
            return out
        return _preserve(description)
    if "const" in node:
        node = {**node, "enum": [node["const"]]}
    typ = node.get("type")
    if typ is None:
        # ``Any``: any JSON value.
        out = _preserve(description)
        out.update({k: v for k, v in node.items() if k.startswith("x-kubernetes-")})
        return out
    out = {k: v for k, v in node.items() if k in _KEEP or k.startswith("x-kubernetes-")}
    if typ == "object":
        props = node.get("properties")
        extra = node.get("additionalProperties")
        if props:
            out["properties"] = {}
            for name, sub in props.items():
                converted = structural(sub, defs, f"{where}.{name}")
                if not converted.get("description"):
                    raise SchemaError(f"{where}.{name}: every field needs a description (it is kubectl explain text)")
                out["properties"][name] = converted
        elif isinstance(extra, dict) and extra:
            out["additionalProperties"] = structural(extra, defs, f"{where}[*]")
        else:
            out["x-kubernetes-preserve-unknown-fields"] = True
        if not out.get("required"):
            out.pop("required", None)
    elif typ == "array":
        out["items"] = structural(node.get("items", {}), defs, f"{where}[]")
    return out


def crd_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The structural openAPIV3Schema of a top-level kind."""
    raw = model.model_json_schema(by_alias=True)
    defs = raw.get("$defs", {})
    schema = structural(raw, defs, model.__name__)
    props = schema["properties"]
    props["apiVersion"] = {"type": "string", "description": "API version: blueprintd.io/v1alpha1."}
    props["kind"] = {"type": "string", "description": f"Object kind: {model.__name__}."}
    props["metadata"] = {"type": "object"}  # the API server allows nothing else here
    schema["required"] = [r for r in schema.get("required", []) if r not in ("metadata", "apiVersion", "kind")]
    if not schema["required"]:
        del schema["required"]
    return schema


def build_crd(spec: KindSpec) -> dict[str, Any]:
    """The CustomResourceDefinition object of one kind."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": spec.crd_name},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": spec.kind,
                "listKind": f"{spec.kind}List",
                "plural": spec.plural,
                "singular": spec.kind.lower(),
                "shortNames": list(spec.short_names),
                "categories": list(spec.categories),
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": crd_schema(spec.model)},
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [c.to_crd() for c in spec.columns],
                }
            ],
        },
    }


_ORDER = {k: i for i, k in enumerate(("description", "type", "required", "enum", "format", "pattern"))}


def _tidy(node: Any) -> Any:
    """Copy with schema keys in a readable order (description and type first, properties last)
    and RST backticks removed from docstring-derived descriptions."""
    if isinstance(node, dict):
        keys = sorted(node, key=lambda k: (_ORDER.get(k, 50), k in ("properties", "items", "additionalProperties")))
        out = {}
        for k in keys:
            v = node[k]
            out[k] = _prose(v) if k == "description" and isinstance(v, str) else _tidy(v)
        return out
    if isinstance(node, list):
        return [_tidy(v) for v in node]
    return node


def _prose(text: str) -> str:
    """Docstring text as flowing prose: wrapped lines joined, paragraphs kept, no RST markup."""
    text = text.replace("``", "")
    return "\n\n".join(" ".join(p.split()) for p in text.split("\n\n"))


class _NoAliasDumper(yaml.SafeDumper):
    """Shared sub-schemas are written out in full: CRD readers do not expect YAML anchors."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def render_files() -> dict[str, str]:
    """File name → YAML text for every CRD (deterministic)."""
    header = "# Generated by `python -m blueprintd.api.crdgen` from blueprintd/api; do not edit.\n"
    files: dict[str, str] = {}
    for spec in KINDS:
        crd = _tidy(build_crd(spec))
        text = yaml.dump(crd, Dumper=_NoAliasDumper, sort_keys=False, width=100, allow_unicode=True)
        files[f"{spec.crd_name}.yaml"] = header + text
    # Not a CRD, but installed with them: the API server's check of Blueprint parameters.
    policy = yaml.dump_all(admission_policy(), Dumper=_NoAliasDumper, sort_keys=False, width=100)
    files[PARAMETERS_POLICY_FILE] = header + policy
    return files


def write(out_dir: Path) -> list[Path]:
    """Write every CRD into ``out_dir`` (created when missing); returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_files().items():
        path = out_dir / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def stale(out_dir: Path) -> list[str]:
    """Names of CRD files in ``out_dir`` that are missing or differ from the models."""
    bad = []
    for name, text in render_files().items():
        path = out_dir / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            bad.append(name)
    return bad


def default_dir() -> Path:
    """``crds/`` at the repository root (next to the ``blueprintd`` package)."""
    return Path(__file__).resolve().parents[2] / "crds"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m blueprintd.api.crdgen", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=default_dir(), help="output folder (default: crds/)")
    parser.add_argument("--check", action="store_true", help="exit 1 if the files are stale instead of writing")
    args = parser.parse_args(argv)
    if args.check:
        bad = stale(args.out)
        for name in bad:
            print(f"stale: {args.out / name} (run python -m blueprintd.api.crdgen)", file=sys.stderr)
        return 1 if bad else 0
    for path in write(args.out):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
