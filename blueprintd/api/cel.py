"""CEL for overlay conditions and templated values: compile once, check names, evaluate.

CEL is what Kubernetes already uses for DRA device selectors and CRD validation, so platform
teams read ``pool.migCapable && !pool.sandbox`` without learning a new language. The
variables are part of the Blueprint API:

* ``cluster``: ``name``, ``labels``, ``kubernetesVersion``, ``pools`` (list of pools);
* ``pool`` (nodePool-scope overlays only): every ``NodePool`` fact in camelCase plus the
  catalog-derived ``product``, ``migProfile``, ``migProfiles``, ``migProfileCount``,
  ``migDeviceFilter`` and ``nodeCount``;
* ``params``: the Blueprint's ``spec.parameters`` (with per-cluster overrides).

Validation compiles every expression and rejects unknown variables and unknown fields of
``cluster``/``pool``/``params`` up front, so a typo fails ``blueprintd validate`` instead of
silently never matching in production.

Implementation notes (cel-python): programs are transpiled to Python once and cached by
text. The transpiled runner stores its activation in module globals while it runs, so
evaluation is serialised with a lock; a single evaluation takes microseconds.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import celpy
import lark
from celpy import celtypes
from celpy.celparser import CELParseError, CELParser
from celpy.evaluation import CELEvalError, TranspilerTree

from blueprintd.api.facts import NodePool

# cel-python logs evaluation errors at ERROR level before raising them; we report them
# ourselves, with the overlay and pool they belong to.
logging.getLogger("celpy").setLevel(logging.CRITICAL)

DERIVED_POOL_FIELDS = frozenset(
    {"product", "migProfile", "migProfiles", "migProfileCount", "migDeviceFilter", "nodeCount"}
)
POOL_FIELDS = frozenset(f.alias or name for name, f in NodePool.model_fields.items()) | DERIVED_POOL_FIELDS
CLUSTER_FIELDS = frozenset({"name", "labels", "kubernetesVersion", "pools"})
_MACROS = frozenset({"all", "exists", "exists_one", "map", "filter"})
_TYPE_NAMES = frozenset({"int", "uint", "double", "bool", "string", "bytes", "list", "map", "null_type", "type", "dyn"})

TEMPLATE_RE = re.compile(r"^\$\{(.*)\}$", re.DOTALL)

_LOCK = threading.Lock()


class CelError(Exception):
    """A CEL expression does not compile, names something unknown, or failed to evaluate."""


def _environment() -> celpy.Environment:
    # The lark parser is a process-wide singleton whose tree class is fixed by whoever
    # creates it first. The transpiling runner (about 4x faster) needs its own tree class;
    # if another component created the parser first, fall back to the interpreter.
    parser = CELParser.CEL_PARSER
    if parser is None or issubclass(parser.options.tree_class, TranspilerTree):
        return celpy.Environment(runner_class=celpy.CompiledRunner)
    return celpy.Environment()


_ENV = _environment()


def template_expression(value: str) -> str | None:
    """The CEL text of a templated string ``${ <CEL> }``, or ``None`` for a plain string."""
    match = TEMPLATE_RE.fullmatch(value.strip()) if "${" in value else None
    return match.group(1).strip() if match else None


def _bare_ident(tree: Any) -> str | None:
    """The identifier if ``tree`` is just a (parenthesis-free) name such as ``pool``."""
    while isinstance(tree, lark.Tree):
        if tree.data in ("ident", "dot_ident"):
            token = tree.children[0]
            return str(token)
        if len(tree.children) != 1:
            return None
        tree = tree.children[0]
    return None


def _analyse(ast: lark.Tree[Any]) -> tuple[set[str], list[tuple[str, str]], bool]:
    """Free variables, ``(root, field)`` pairs such as ``("pool", "migCapable")``, and whether
    every use of a variable is such a field access (then the result depends only on those
    fields, which makes memoising results safe)."""
    bound: set[str] = set()
    for node in ast.iter_subtrees():
        if node.data == "member_dot_arg" and str(node.children[1]) in _MACROS and len(node.children) > 2:
            exprlist = node.children[2]
            if isinstance(exprlist, lark.Tree) and exprlist.children:
                var = _bare_ident(exprlist.children[0])
                if var:
                    bound.add(var)
    free: set[str] = set()
    refs: list[tuple[str, str]] = []
    uses = 0
    field_uses = 0
    for node in ast.iter_subtrees_topdown():  # type: ignore[no-untyped-call]
        if node.data in ("ident", "dot_ident"):
            name = str(node.children[0])
            if name not in bound and name not in _TYPE_NAMES:
                free.add(name)
                uses += 1
        elif node.data == "member_dot":
            root = _bare_ident(node.children[0])
            if root is not None and root not in bound:
                field_uses += 1
                pair = (root, str(node.children[1]))
                if pair not in refs:
                    refs.append(pair)
    pure = uses == field_uses and not (bound & free)
    return free, refs, pure


def _freeze(value: Any) -> Any:
    """A hashable, type-exact key for JSON-like data (``1`` and ``true`` differ)."""
    if isinstance(value, dict):
        return ("d", tuple(sorted((str(k), _freeze(v)) for k, v in value.items())))
    if isinstance(value, list | tuple):
        return ("l", tuple(_freeze(v) for v in value))
    return (type(value).__name__, value)


_MEMO_LIMIT = 4096


@dataclass(frozen=True)
class CelProgram:
    """A compiled expression; ``refs`` lists the ``root.field`` it reads (for explanations)."""

    text: str
    runner: Any
    refs: tuple[tuple[str, str], ...]
    pure: bool = False
    memo: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)

    def evaluate_memo(self, plain: Mapping[str, Mapping[str, Any]], activation: Callable[[], Mapping[str, Any]]) -> Any:
        """Evaluate with results memoised by the values of the fields the expression reads.

        ``plain`` holds the variables as plain data (to build the key); ``activation``
        builds the CEL values only on a miss. Rendering thousands of clusters with similar
        pools then evaluates each distinct case once. Results are JSON data: callers that
        mutate them must copy.
        """
        if not self.pure:
            return self.evaluate(activation())
        key = tuple(_freeze(plain.get(root, {}).get(name)) for root, name in self.refs)
        try:
            return self.memo[key]
        except KeyError:
            pass
        result = self.evaluate(activation())
        if len(self.memo) >= _MEMO_LIMIT:
            self.memo.clear()
        self.memo[key] = result
        return result

    def evaluate(self, activation: Mapping[str, Any]) -> Any:
        """Evaluate against CEL values (see ``to_cel``); returns plain Python/JSON values."""
        try:
            with _LOCK:
                result = self.runner.evaluate(activation)
        except CELEvalError as exc:
            raise CelError(describe_eval_error(exc)) from None
        except (RecursionError, TypeError, ValueError, KeyError, ZeroDivisionError) as exc:
            raise CelError(f"evaluation failed: {exc}") from None
        if isinstance(result, CELEvalError):
            raise CelError(describe_eval_error(result))
        return from_cel(result)


def describe_eval_error(exc: BaseException) -> str:
    """cel-python nests (message, type, args) tuples; turn them into one readable line."""
    parts: list[str] = []

    def walk(obj: Any) -> None:
        if isinstance(obj, BaseException):
            walk(obj.args)
        elif isinstance(obj, tuple):
            for item in obj:
                walk(item)
        elif isinstance(obj, str) and obj not in ("evaluation error",) and obj not in parts:
            parts.append(obj)

    walk(exc.args)
    text = "; ".join(parts) or "evaluation error"
    text = text.replace("no such member in mapping", "no such field or key")
    # "IntType(3) <class 'celpy.celtypes.IntType'>" -> "3 (int)"
    text = re.sub(r"(\w+?)Type\(([^)]*)\)(?: <class '[^']*'>)?", lambda m: f"{m.group(2)} ({m.group(1).lower()})", text)
    return text


@lru_cache(maxsize=4096)
def _compile_text(text: str) -> tuple[Any, tuple[str, ...], tuple[tuple[str, str], ...], bool]:
    try:
        ast = _ENV.compile(text)
    except CELParseError as exc:
        column = getattr(exc, "column", None)
        where = f" at column {column}" if column else ""
        raise CelError(f"CEL syntax error{where} in {text!r}") from None
    except RecursionError:
        raise CelError("CEL expression is nested too deeply") from None
    free, refs, pure = _analyse(ast)
    runner = _ENV.program(ast)
    return runner, tuple(sorted(free)), tuple(refs), pure


def compile_cel(text: str, variables: Mapping[str, frozenset[str] | None]) -> CelProgram:
    """Compile ``text`` and check that it only uses ``variables``.

    ``variables`` maps each allowed root name to its allowed fields (``None``: any field).
    Raises ``CelError`` with a message naming the unknown variable or field and what exists.
    """
    if not text.strip():
        raise CelError("empty CEL expression")
    runner, free, refs, pure = _compile_text(text)
    unknown = [name for name in free if name not in variables]
    if unknown:
        allowed = ", ".join(sorted(variables)) or "none"
        raise CelError(f"unknown variable {unknown[0]!r} in CEL expression (variables here: {allowed})")
    for root, fld in refs:
        fields = variables.get(root)
        if fields is not None and fld not in fields:
            known = ", ".join(sorted(fields)) or "none defined"
            raise CelError(f"{root} has no field {fld!r} (known: {known})")
    return CelProgram(text, runner, refs, pure)


def to_cel(value: Any) -> Any:
    """Plain JSON-like Python data → CEL values.

    Same result as ``celpy.json_to_cel`` for JSON data, several times faster (exact type
    dispatch instead of ``isinstance`` against ``typing`` generics); it runs per pool per render.
    """
    kind = type(value)
    if kind is str:
        return celtypes.StringType(value)
    if kind is bool:
        return celtypes.BoolType(value)
    if kind is int:
        return celtypes.IntType(value)
    if kind is float:
        return celtypes.DoubleType(value)
    if value is None:
        return None
    if kind is dict:
        return celtypes.MapType({to_cel(k): to_cel(v) for k, v in value.items()})
    if kind is list or kind is tuple:
        return celtypes.ListType([to_cel(v) for v in value])
    return celpy.json_to_cel(value)


def from_cel(value: Any) -> Any:
    """CEL values → plain JSON-like Python data (bool before int: CEL booleans are ints)."""
    if value is None or isinstance(value, celtypes.NullType):
        return None
    if isinstance(value, bool | celtypes.BoolType):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, Mapping):
        return {str(from_cel(k)): from_cel(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [from_cel(v) for v in value]
    return str(value)


def iter_templates(value: Any, path: tuple[str | int, ...] = ()) -> list[tuple[tuple[str | int, ...], str]]:
    """Every templated string (``${ ... }``) in ``value``, map keys included, with its path.

    Returns ``(path, cel_text)`` pairs; for a templated key the path ends at that key.
    """
    found: list[tuple[tuple[str | int, ...], str]] = []

    def walk(node: Any, at: tuple[str | int, ...]) -> None:
        if isinstance(node, str):
            expr = template_expression(node)
            if expr is not None:
                found.append((at, expr))
        elif isinstance(node, dict):
            for key, child in node.items():
                if isinstance(key, str):
                    expr = template_expression(key)
                    if expr is not None:
                        found.append(((*at, key), expr))
                walk(child, (*at, key))
        elif isinstance(node, list):
            for i, child in enumerate(node):
                walk(child, (*at, i))

    walk(value, path)
    return found
