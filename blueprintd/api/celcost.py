"""Worst-case cost of a CEL expression, estimated before it ever runs.

Kubernetes refuses a CRD validation rule whose estimated cost is too high; Blueprints get the
same treatment, because their CEL is written by whoever can merge to the blueprint repository
and runs inside the operator for every selected member. cel-python has no cost estimator, so
this module computes one over the parsed AST.

Rules (the unit and the charges are those the runtime meter in ``cel`` uses, so an
expression never costs more at runtime than estimated while the facts stay within the
bounds below):

* reading a variable or a field costs 1; a literal costs 0; building a list or map costs 1
  plus its items;
* an operator or function costs 1 plus ``n // SIZE_UNIT`` where n is the worst-case size of
  its operands (characters of strings, items of lists and maps); ``+`` of strings or lists
  produces the sum of the sizes; ``x in list`` scans the list;
* ``matches`` costs the text size times the pattern size on top (RE2 is linear in the text,
  with a factor that grows with the pattern); ``size()`` costs 1;
* a comprehension (``all``, ``exists``, ``exists_one``, ``map``, ``filter``) over a range of
  at most n items costs the range plus n times (``ITERATION_COST`` + the body); nesting
  therefore multiplies. ``map`` and ``filter`` yield lists of at most n items;
* ``a ? b : c`` costs the condition plus the dearer branch; ``&&`` and ``||`` cost both sides.

Sizes come from what an expression can see: literals (exact), parameters (their declared
value, at least ``PARAM_STRING_SIZE`` characters since a member may override it), and the fact
schema with the bounds below (``cluster.pools`` at most ``MAX_POOLS`` pools, ``pool.nodes`` at
most ``MAX_NODES`` names, label maps at most ``MAX_LABELS`` entries, ...). Anything whose
size cannot be known is assumed ``UNKNOWN_SIZE``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, get_origin

import lark

from blueprintd.api.cel import ITERATION_COST, MACROS, SIZE_UNIT, CelError, bare_ident, parse_cel
from blueprintd.api.facts import NodePool
from blueprintd.api.params import Parameter

MAX_POOLS = 32
MAX_NODES = 5000
MAX_LABELS = 256
NAME_SIZE = 253  # DNS subdomain: node and pool names, most strings in facts
LABEL_KEY_SIZE = 317
LABEL_VALUE_SIZE = 63
PARAM_STRING_SIZE = 1024
UNKNOWN_SIZE = 1024


@dataclass(frozen=True)
class Shape:
    """What an expression's value may look like: its kind and worst-case size.

    ``kind``: scalar, string, list, map or object (a value with known fields, such as
    ``pool``), or dyn (unknown). ``size``: characters, items or entries. ``elem``: the shape of
    list items or map values; ``key``: of map keys; ``fields``: of an object's fields.
    """

    kind: str
    size: int = 0
    elem: Shape | None = None
    key: Shape | None = None
    fields: Mapping[str, Shape] = field(default_factory=dict)

    def item(self) -> Shape:
        return self.elem if self.elem is not None else UNKNOWN

    def member(self, name: str) -> Shape:
        if self.kind == "object":
            return self.fields.get(name, UNKNOWN)
        if self.kind == "map":
            return self.item()
        return UNKNOWN


SCALAR = Shape("scalar")
UNKNOWN = Shape("dyn", UNKNOWN_SIZE)


def string(size: int) -> Shape:
    return Shape("string", size)


def list_of(size: int, elem: Shape) -> Shape:
    return Shape("list", size, elem)


def map_of(size: int, key: Shape, value: Shape) -> Shape:
    return Shape("map", size, value, key)


LABELS = map_of(MAX_LABELS, string(LABEL_KEY_SIZE), string(LABEL_VALUE_SIZE))


def _field_shape(annotation: Any) -> Shape:
    """The shape of a ``NodePool`` field from its type: strings are names, lists are node lists."""
    if isinstance(annotation, type) and issubclass(annotation, str):  # str and str enums
        return string(NAME_SIZE)
    origin = get_origin(annotation)
    if origin is list:
        return list_of(MAX_NODES, string(NAME_SIZE))
    if origin is dict:
        return LABELS
    return SCALAR  # int, float, bool


# Every NodePool fact (so new facts are costed as soon as they exist), then the ones whose
# size is known better, then the values derived from the GPU catalog (render/activation.py).
POOL = Shape(
    "object",
    fields={
        **{f.alias or name: _field_shape(f.annotation) for name, f in NodePool.model_fields.items()},
        "sources": map_of(64, string(64), string(32)),
        "product": string(32),
        "migProfile": string(32),
        "migProfiles": list_of(32, string(32)),
        "migProfileCount": SCALAR,
        "migDeviceFilter": list_of(64, string(16)),
        "nodeCount": SCALAR,
    },
)

CLUSTER = Shape(
    "object",
    fields={
        "name": string(NAME_SIZE),
        "labels": LABELS,
        "kubernetesVersion": string(64),
        "pools": list_of(MAX_POOLS, POOL),
    },
)


def parameter_shape(param: Parameter) -> Shape:
    """The shape of a parameter: sized by its declaration, not its default.

    A member may override a ``string`` with any text (so at least ``PARAM_STRING_SIZE``
    characters), unless an ``enum`` names the only values it can take. Numbers and booleans
    are scalars."""
    if param.type != "string":
        return SCALAR
    if param.enum:
        return string(max(len(str(v)) for v in param.enum))
    return string(max(len(str(param.default)), PARAM_STRING_SIZE))


def variable_shapes(scope: str, params: Mapping[str, Parameter]) -> dict[str, Shape]:
    """What an overlay of ``scope`` can see, at its largest."""
    shapes = {"cluster": CLUSTER, "params": Shape("object", fields={k: parameter_shape(v) for k, v in params.items()})}
    if scope == "nodePool":
        shapes["pool"] = POOL
    return shapes


def _join(a: Shape, b: Shape) -> Shape:
    """A shape covering both (the branches of ``?:``, the items of a list literal)."""
    if a == b:
        return a
    kind = a.kind if a.kind == b.kind else "dyn"
    elem = None if a.elem is None and b.elem is None else _join(a.item(), b.item())
    fields = {**a.fields, **b.fields} if kind == "object" else {}
    return Shape(kind, max(a.size, b.size), elem, None, fields)


def _join_all(shapes: list[Shape]) -> Shape:
    if not shapes:
        return SCALAR
    out = shapes[0]
    for s in shapes[1:]:
        out = _join(out, s)
    return out


def _sized(*shapes: Shape) -> int:
    return sum(s.size for s in shapes if s.kind in ("string", "list", "map", "dyn")) // SIZE_UNIT


class CostEstimateError(CelError):
    """The expression does something that can never work (reported at validate time)."""


class _Estimator:
    def __init__(self, variables: Mapping[str, Shape]) -> None:
        self.scopes: list[dict[str, Shape]] = [dict(variables)]

    def lookup(self, name: str) -> Shape:
        for scope in reversed(self.scopes):
            if name in scope:
                return scope[name]
        return UNKNOWN

    def visit(self, node: Any) -> tuple[int, Shape]:
        # Walk down single-child chains (expr → conditionalor → … → primary) without
        # recursing: it keeps the recursion depth close to the expression's real nesting.
        while (
            isinstance(node, lark.Tree)
            and len(node.children) == 1
            and isinstance(node.children[0], lark.Tree)
            and node.data not in ("list_lit", "map_lit")
        ):
            node = node.children[0]
        if isinstance(node, lark.Token):
            return 0, SCALAR
        handler = getattr(self, "n_" + node.data, None)
        if handler is not None:
            result: tuple[int, Shape] = handler(node)
            return result
        return self.generic(node)

    def generic(self, node: lark.Tree[Any]) -> tuple[int, Shape]:
        trees = [c for c in node.children if isinstance(c, lark.Tree)]
        total = 0
        shapes = []
        for child in trees:
            cost, shape = self.visit(child)
            total += cost
            shapes.append(shape)
        return total + 1 + _sized(*shapes), SCALAR

    # --- operators ------------------------------------------------------------------------

    # Handlers only see nodes with more than one child: ``visit`` walks past single-child chains.

    def n_expr(self, node: lark.Tree[Any]) -> tuple[int, Shape]:
        cond, yes, no = (self.visit(c) for c in node.children)
        return cond[0] + max(yes[0], no[0]) + 1, _join(yes[1], no[1])

    def _binary(self, node: lark.Tree[Any]) -> tuple[int, Shape]:
        left, right = self.visit(node.children[0]), self.visit(node.children[1])
        return left[0] + right[0] + 1, SCALAR

    n_conditionalor = _binary
    n_conditionaland = _binary

    def operands(self, node: lark.Tree[Any]) -> tuple[str, int, Shape, Shape]:
        """``relation``/``addition``/``multiplication``: the operator (``addition_add``...), the
        cost of both operands and their shapes (the left operand sits inside the operator node)."""
        op_node, right_node = node.children
        lcost, left = self.visit(op_node.children[0])
        rcost, right = self.visit(right_node)
        return op_node.data, lcost + rcost, left, right

    def n_relation(self, node: lark.Tree[Any]) -> tuple[int, Shape]:
        op, cost, left, right = self.operands(node)
        cost += 1 + _sized(left, right)
        if op == "relation_in" and right.kind in ("list", "dyn"):
            cost += right.size * (1 + left.size // SIZE_UNIT) // SIZE_UNIT
        return cost, SCALAR

    def n_addition(self, node: lark.Tree[Any]) -> tuple[int, Shape]:
        op, cost, left, right = self.operands(node)
        cost += 1 + _sized(left, right)
        if op == "addition_add" and (left.kind in ("string", "list") or right.kind in ("string", "list")):
            kind = left.kind if left.kind == right.kind else "dyn"
            elem = _join(left.item(), right.item()) if kind == "list" else None
            return cost, Shape(kind, left.size + right.size, elem)
        return cost, SCALAR

    def n_multiplication(self, node: lark.Tree[Any]) -> tuple[int, Shape]:
        op, cost, left, right = self.operands(node)
        for side in (left, right):
            if side.kind in ("string", "list", "map"):
                raise CostEstimateError(f"operator {_OPS.get(op, '*')} needs numbers, not a {side.kind}")
        return cost + 1, SCALAR

    def n_unary(self, node: lark.Tree[Any]) -> tuple[int, Shape]:
        cost, _ = self.visit(node.children[1])
        return cost + 1, SCALAR

    # --- members --------------------------------------------------------------------------

    def n_member_dot(self, node: lark.Tree[Any]) -> tuple[int, Shape]:
        cost, base = self.visit(node.children[0])
        return cost + 1, base.member(str(node.children[1]))

    def n_member_index(self, node: lark.Tree[Any]) -> tuple[int, Shape]:
        bcost, base = self.visit(node.children[0])
        icost, _ = self.visit(node.children[1])
        return bcost + icost + 1, base.item() if base.kind in ("list", "map") else UNKNOWN

    def n_member_dot_arg(self, node: lark.Tree[Any]) -> tuple[int, Shape]:
        target, name = node.children[0], str(node.children[1])
        args = list(node.children[2].children) if len(node.children) > 2 else []
        if name in MACROS and len(args) == 2:
            var = bare_ident(args[0])
            if var is not None:
                return self.comprehension(name, target, var, args[1])
        return self.call(name, [target, *args])

    def comprehension(self, name: str, target: Any, var: str, body: Any) -> tuple[int, Shape]:
        rcost, rng = self.visit(target)
        count = rng.size if rng.kind in ("list", "map", "dyn") else UNKNOWN_SIZE
        elem = rng.key if rng.kind == "map" and rng.key is not None else rng.item()
        self.scopes.append({var: elem})
        try:
            bcost, bshape = self.visit(body)
        finally:
            self.scopes.pop()
        cost = rcost + count * (ITERATION_COST + bcost)
        if name == "map":
            return cost, list_of(count, bshape)
        if name == "filter":
            return cost, list_of(count, elem)
        return cost, SCALAR

    def n_ident_arg(self, node: lark.Tree[Any]) -> tuple[int, Shape]:
        name = str(node.children[0])
        args = list(node.children[1].children) if len(node.children) > 1 else []
        if name == "dyn" and len(args) == 1:
            return self.visit(args[0])
        return self.call(name, args)

    n_dot_ident_arg = n_ident_arg

    def call(self, name: str, args: list[Any]) -> tuple[int, Shape]:
        results = [self.visit(a) for a in args]
        cost = sum(c for c, _ in results) + 1
        shapes = [s for _, s in results]
        if name == "matches" and len(shapes) == 2:
            text, pattern = shapes
            cost += _sized(text, pattern) + math.ceil(text.size / SIZE_UNIT) * max(1, math.ceil(pattern.size / 4))
            return cost, SCALAR
        if name in ("has", "size", "type", "bool", "int", "uint", "double", "duration", "timestamp"):
            return cost, SCALAR
        cost += _sized(*shapes)
        if name == "string" and shapes:
            return cost, string(max(shapes[0].size, 32))
        if name in ("list",) and shapes:
            return cost, shapes[0]
        return cost, SCALAR if name in ("contains", "startsWith", "endsWith") else UNKNOWN

    # --- primaries ------------------------------------------------------------------------

    def n_ident(self, node: lark.Tree[Any]) -> tuple[int, Shape]:
        return 1, self.lookup(str(node.children[0]))

    n_dot_ident = n_ident

    def n_literal(self, node: lark.Tree[Any]) -> tuple[int, Shape]:
        token = node.children[0]
        if isinstance(token, lark.Token) and token.type in ("STRING_LIT", "MLSTRING_LIT", "BYTES_LIT"):
            return 0, string(len(token))
        return 0, SCALAR

    def n_list_lit(self, node: lark.Tree[Any]) -> tuple[int, Shape]:
        items = list(node.children[0].children) if node.children else []
        results = [self.visit(i) for i in items]
        return 1 + sum(c for c, _ in results), list_of(len(items), _join_all([s for _, s in results]))

    def n_map_lit(self, node: lark.Tree[Any]) -> tuple[int, Shape]:
        items = list(node.children[0].children) if node.children else []
        results = [self.visit(i) for i in items]
        keys = [s for _, s in results[0::2]]
        values = [s for _, s in results[1::2]]
        return 1 + sum(c for c, _ in results), map_of(len(keys), _join_all(keys), _join_all(values))


_OPS = {"multiplication_mul": "*", "multiplication_div": "/", "multiplication_mod": "%"}


def estimate(text: str, variables: Mapping[str, Shape]) -> tuple[int, Shape]:
    """Worst-case cost and result shape of CEL ``text`` given the ``variables`` it can see.

    Raises ``CelError`` when the text does not parse, ``CostEstimateError`` when it does
    something that can never work (``'a' * 3``).
    """
    ast = parse_cel(text)
    try:
        return _Estimator(variables).visit(ast)
    except RecursionError:
        # Never "no estimate, so no limit": an expression too deep to estimate is refused.
        raise CostEstimateError("CEL expression is nested too deeply to estimate its cost") from None
