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

Blueprints are untrusted input (anyone who can merge to the blueprint repository writes
them), so every evaluation runs metered: the operators and functions an expression calls
and every comprehension step are charged to a cost budget, and a wall-clock deadline is
checked at each charge. cel-python is pure Python and a thread cannot be killed, so the
checks have to happen inside evaluation. The static counterpart, a worst-case cost
estimate at validate time, lives in ``celcost``; both use the charges defined here.

Implementation notes (cel-python): programs are transpiled to Python once and cached by
text. We run the transpiled code ourselves, in a private copy of the globals it expects,
where ``operator.*`` and ``celpy.evaluation.*`` are metered wrappers; the meter of the
running evaluation is per thread, so evaluations in different threads do not interfere.
"""

from __future__ import annotations

import logging
import operator
import re
import threading
import time
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import celpy
import celpy.evaluation
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
MACROS = frozenset({"all", "exists", "exists_one", "map", "filter"})
_TYPE_NAMES = frozenset({"int", "uint", "double", "bool", "string", "bytes", "list", "map", "null_type", "type", "dyn"})

TEMPLATE_RE = re.compile(r"^\$\{(.*)\}$", re.DOTALL)


class CelError(Exception):
    """A CEL expression does not compile, names something unknown, or failed to evaluate."""


class CelBudgetExceeded(CelError):
    """An evaluation used up its cost budget or ran past its deadline; ``what`` says which."""

    def __init__(self, what: str, message: str) -> None:
        super().__init__(message)
        self.what = what  # "cost" or "deadline"


# --- runtime cost --------------------------------------------------------------------------
#
# The unit is one CEL operation (an operator or a function call; the static estimate also
# charges 1 per variable and field read, which runtime does not meter). Charges that
# grow with data use SIZE_UNIT: an operation touching n characters or list items costs
# 1 + n // SIZE_UNIT. A comprehension step (binding the loop variable, which cel-python does
# by cloning the activation) costs ITERATION_COST. ``celcost`` estimates with the same charges.

SIZE_UNIT = 64
ITERATION_COST = 1
DEFAULT_COST_BUDGET = 50_000  # per evaluation; the static limit has the same default
DEFAULT_RENDER_TIMEOUT = 5.0  # seconds, shared by every evaluation of one render


@dataclass(frozen=True)
class CelBudget:
    """Runtime limits of CEL evaluation (operator settings ``cel_budget``).

    ``cost``: cost units one evaluation may use. ``timeout_seconds``: wall-clock deadline of
    one render, shared by all the evaluations in it.
    """

    cost: int = DEFAULT_COST_BUDGET
    timeout_seconds: float = DEFAULT_RENDER_TIMEOUT


class Meter:
    """The budget of one evaluation: charged by the metered operators, checked at each charge."""

    __slots__ = ("deadline", "limit", "timeout", "used")

    def __init__(self, limit: int = DEFAULT_COST_BUDGET, deadline: float | None = None, timeout: float = 0.0) -> None:
        self.limit = limit
        self.deadline = deadline  # time.monotonic() value; None: no deadline
        self.timeout = timeout  # for the message
        self.used = 0

    def charge(self, units: int) -> None:
        self.used += units
        if self.used > self.limit:
            raise CelBudgetExceeded(
                "cost", f"CEL evaluation exceeded its cost budget of {self.limit} (stopped at {self.used})"
            )
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise CelBudgetExceeded("deadline", f"CEL evaluation ran past the render deadline of {self.timeout:g}s")


_STATE = threading.local()


def _meter() -> Meter:
    meter: Meter | None = getattr(_STATE, "meter", None)
    if meter is None:  # evaluation outside CelProgram.evaluate: not expected, but never unmetered
        meter = _STATE.meter = Meter()
    return meter


def _size(value: Any) -> int:
    return len(value) if isinstance(value, str | bytes | list | tuple | dict) else 0


def _metered(fn: Callable[..., Any], sized: bool = True) -> Callable[..., Any]:
    """``fn`` charged 1 plus the size of its operands (before running, so a big concatenation
    is refused before it allocates)."""
    if not sized:

        def plain(*args: Any) -> Any:
            _meter().charge(1)
            return fn(*args)

        return plain

    def wrapper(*args: Any) -> Any:
        _meter().charge(1 + sum(_size(a) for a in args) // SIZE_UNIT)
        return fn(*args)

    return wrapper


def _metered_macro(macro: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(activation: Any, bind: str, cel_expr: Callable[[Any], Any], cel_gen: Callable[[Any], Any]) -> Any:
        def step(act: Any) -> Any:
            _meter().charge(ITERATION_COST)
            return cel_expr(act)

        return macro(activation, bind, step, cel_gen)

    return wrapper


def _namespace(module: types.ModuleType, overrides: Mapping[str, Any]) -> types.SimpleNamespace:
    names = {k: v for k, v in vars(module).items() if not k.startswith("__")}
    return types.SimpleNamespace(**{**names, **overrides})


def _metered_globals() -> dict[str, Any]:
    """The globals transpiled CEL runs in: cel-python's own, with metered operators."""
    ev = celpy.evaluation
    evaluation = _namespace(
        ev,
        {
            **{name: _metered_macro(getattr(ev, name)) for name in dir(ev) if name.startswith("macro_")},
            **{
                name: _metered(getattr(ev, name))
                for name in dir(ev)
                if name.startswith(("function_", "bool_")) or name == "operator_in"
            },
            "function_size": _metered(ev.function_size, sized=False),  # O(1), whatever the size
        },
    )
    ops = _namespace(
        operator,
        {
            **{name: _metered(getattr(operator, name)) for name in ("add", "sub", "mul", "truediv", "mod")},
            **{name: _metered(getattr(operator, name), sized=False) for name in ("neg", "getitem", "not_")},
        },
    )
    # has() yields a Python bool, which cel-python's own ``?:`` refuses ("no such overload"):
    # hand it a CEL bool.
    condition = celtypes.logical_condition
    types_ns = _namespace(
        celtypes,
        {"logical_condition": lambda c, a, b: condition(celtypes.BoolType(c) if type(c) is bool else c, a, b)},
    )
    package = _namespace(celpy, {"evaluation": evaluation, "celtypes": types_ns})
    return {**vars(ev), "celpy": package, "operator": ops}


_GLOBALS = _metered_globals()


def _environment() -> celpy.Environment:
    # The lark parser is a process-wide singleton whose tree class is fixed by whoever
    # creates it first. The transpiling runner needs TranspilerTree nodes (a lark.Tree
    # subclass, so any other user of the singleton still works): replace a parser built
    # with plain trees.
    parser = CELParser.CEL_PARSER
    if parser is not None and not issubclass(parser.options.tree_class, TranspilerTree):
        CELParser.CEL_PARSER = None
    return celpy.Environment(runner_class=celpy.CompiledRunner)


_ENV = _environment()


def template_expression(value: str) -> str | None:
    """The CEL text of a templated string ``${ <CEL> }``, or ``None`` for a plain string."""
    match = TEMPLATE_RE.fullmatch(value.strip()) if "${" in value else None
    return match.group(1).strip() if match else None


def bare_ident(tree: Any) -> str | None:
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
        if node.data == "member_dot_arg" and str(node.children[1]) in MACROS and len(node.children) > 2:
            exprlist = node.children[2]
            if isinstance(exprlist, lark.Tree) and exprlist.children:
                var = bare_ident(exprlist.children[0])
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
            root = bare_ident(node.children[0])
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

    def evaluate_memo(
        self,
        plain: Mapping[str, Mapping[str, Any]],
        activation: Callable[[], Mapping[str, Any]],
        meter: Callable[[], Meter] = Meter,
    ) -> Any:
        """Evaluate with results memoised by the values of the fields the expression reads.

        ``plain`` holds the variables as plain data (to build the key); ``activation``
        builds the CEL values only on a miss. Rendering thousands of clusters with similar
        pools then evaluates each distinct case once. Results are JSON data: callers that
        mutate them must copy. ``meter`` makes the budget of a fresh evaluation.
        """
        if not self.pure:
            return self.evaluate(activation(), meter())
        key = tuple(_freeze(plain.get(root, {}).get(name)) for root, name in self.refs)
        try:
            return self.memo[key]
        except KeyError:
            pass
        result = self.evaluate(activation(), meter())
        if len(self.memo) >= _MEMO_LIMIT:
            self.memo.clear()
        self.memo[key] = result
        return result

    def evaluate(self, activation: Mapping[str, Any], meter: Meter | None = None) -> Any:
        """Evaluate against CEL values (see ``to_cel``); returns plain Python/JSON values.

        Runs under ``meter`` (default: the default cost budget, no deadline); raises
        ``CelBudgetExceeded`` when it runs out, ``CelError`` when evaluation fails.
        """
        meter = meter if meter is not None else Meter()
        tp = self.runner.tp
        act = tp.base_activation.clone()
        act.identifiers.load_values(activation)
        env = dict(_GLOBALS)
        env["base_activation"] = act
        previous = getattr(_STATE, "meter", None)
        _STATE.meter = meter
        try:
            exec(tp.executable_code, env)  # code cel-python transpiled from the checked AST
        except CelBudgetExceeded as exc:
            raise CelBudgetExceeded(exc.what, str(exc)) from None
        except CELEvalError as exc:
            raise CelError(describe_eval_error(exc)) from None
        except RecursionError:
            raise CelError("evaluation failed: expression nested too deeply") from None
        except Exception as exc:  # cel-python raises Python errors for some type mismatches
            raise CelError(f"evaluation failed: {exc}") from None
        finally:
            _STATE.meter = previous
        result = env.get("CEL")
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
    try:
        runner = _ENV.program(ast)
    except (RecursionError, SyntaxError, MemoryError):
        # Python's own parser refuses the transpiled code of deeply nested expressions
        # ("too many nested parentheses", 200 levels).
        raise CelError("CEL expression is nested too deeply (split it, or use fewer nested operators)") from None
    return runner, tuple(sorted(free)), tuple(refs), pure


def parse_cel(text: str) -> lark.Tree[Any]:
    """The parsed AST of ``text`` (cached); raises ``CelError`` for syntax errors."""
    if not text.strip():
        raise CelError("empty CEL expression")
    ast: lark.Tree[Any] = _compile_text(text)[0].ast
    return ast


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
