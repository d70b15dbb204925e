"""Typed Blueprint parameters: the declaration, and the checks every path shares.

A parameter is a named setting that overlays read as ``params.<name>``. An untyped value
travels unchecked from a commit to every cluster (``timeSlicingReplicas: "many"`` became
``replicas: many`` in a device-plugin config), so parameters are declared like Helm's
``values.schema.json`` entries or Crossplane's composition inputs::

    parameters:
      timeSlicingReplicas: {type: integer, default: 4, minimum: 1, maximum: 64,
                            description: Time-slicing replicas per GPU}

Rules (each one a pure function below, tested without a server):

1. ``type`` is ``string``, ``integer``, ``number`` or ``boolean``. ``integer`` takes whole
   JSON numbers only (not ``4.5``, not ``true``); ``number`` takes any JSON number, not a
   boolean; ``string`` takes only strings (YAML ``4`` is not the string ``"4"``).
2. ``minimum``/``maximum`` (inclusive) only apply to ``integer`` and ``number``, and
   ``minimum <= maximum``. ``enum`` lists the only values allowed (not for ``boolean``),
   each of the declared type, without repeats.
3. ``default`` satisfies all of the above. Every value a cluster gets — the default, or a
   per-cluster override (``MemberCluster.spec.parameters``, ``blueprintd render -p``) — is
   checked against the same declaration; the message names the parameter, the value and
   what is allowed.
4. Migration from the untyped form (``timeSlicingReplicas: 4``): stored content keeps
   reading — a plain value is taken as ``{type: <inferred from the value>, default: value}``
   and serialised back exactly as written, so published revisions render unchanged and
   keep their content hash. New content is refused with the declaration to write instead:
   by ``blueprintd validate``, by the GitSource sync (both through
   :func:`shorthand_issues`) and by the API server (``params_admission.py``), which only
   checks parameters that are new or changed, so stored objects stay writable. Inferring
   the type would accept the very commit this exists to refuse: a plain ``"many"`` would
   simply be inferred to be a string.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any, Literal, get_args

from pydantic import (
    Field,
    PrivateAttr,
    SerializerFunctionWrapHandler,
    ValidatorFunctionWrapHandler,
    WithJsonSchema,
    model_serializer,
    model_validator,
)

from blueprintd.api.base import ApiModel
from blueprintd.api.issues import Issue, Path, json_type

ParamValue = str | int | float | bool
ParamType = Literal["string", "integer", "number", "boolean"]
PARAM_TYPES: tuple[str, ...] = get_args(ParamType)
MAX_ENUM = 64

# In the CRD a parameter is any JSON value: typing it as an object there would make the objects
# stored in the untyped form unwritable (CRD rules fail to convert them). The API server checks
# declarations with a ValidatingAdmissionPolicy instead (params_admission.py).
UNTYPED_IN_CRD = WithJsonSchema(
    {
        "x-kubernetes-preserve-unknown-fields": True,
        "description": (
            "A parameter declaration: {type: string|integer|number|boolean, default, minimum, maximum, enum, "
            "description}; checked by the ValidatingAdmissionPolicy blueprint-parameters.blueprintd.io."
        ),
    }
)

_TYPE_WORDS = {"string": "a string", "integer": "an integer", "number": "a number", "boolean": "true or false"}


class Parameter(ApiModel):
    """A typed Blueprint parameter: its type, default, bounds and meaning.

    Overlays read the value as params.<name>: the default, or the MemberCluster's override
    (spec.parameters), which must satisfy the same type, bounds and enum.
    """

    type: ParamType = Field(description="Value type: string, integer, number or boolean.")
    default: ParamValue = Field(
        description="Value used unless a MemberCluster overrides it; must satisfy type, minimum, maximum and enum."
    )
    description: str = Field(default="", description="What the parameter controls.", max_length=1024)
    minimum: int | float | None = Field(default=None, description="Smallest allowed value (inclusive; integer/number).")
    maximum: int | float | None = Field(default=None, description="Largest allowed value (inclusive; integer/number).")
    enum: list[ParamValue] | None = Field(
        default=None,
        description="The only values allowed, each of the declared type (not for boolean).",
        min_length=1,
        max_length=MAX_ENUM,
    )

    _shorthand: bool = PrivateAttr(default=False)

    @model_validator(mode="wrap")
    @classmethod
    def _from_plain_value(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        """Read the untyped form (a plain value) of content stored before types existed."""
        if isinstance(data, str | int | float | bool):
            param = handler({"type": json_type(data), "default": data})
            param._shorthand = True
            return param
        return handler(data)

    @model_serializer(mode="wrap")
    def _to_plain_value(self, handler: SerializerFunctionWrapHandler) -> Any:
        """Write the untyped form back as it was written: its content hash must not move."""
        if self._shorthand:
            return self.default
        return handler(self)

    @property
    def shorthand(self) -> bool:
        """True when read from a plain value (the untyped form), not declared."""
        return self._shorthand


def show(value: Any) -> str:
    """A value as the user wrote it, in JSON (strings quoted, so ``"4"`` differs from ``4``)."""
    text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def _num(value: int | float) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def allowed(param: Parameter) -> str:
    """What a value of ``param`` may be, in words: ``an integer from 1 to 64``."""
    if param.enum is not None:
        return f"{param.type}, one of {', '.join(show(v) for v in param.enum)}"
    text = _TYPE_WORDS[param.type]
    if param.type in ("integer", "number"):
        lo, hi = param.minimum, param.maximum
        if lo is not None and hi is not None:
            text += f" from {_num(lo)} to {_num(hi)}"
        elif lo is not None:
            text += f" of at least {_num(lo)}"
        elif hi is not None:
            text += f" of at most {_num(hi)}"
    return text


def type_problem(type_: str, value: Any) -> str:
    """Why ``value`` is not of parameter type ``type_`` ('' when it is)."""
    ok = {
        "string": isinstance(value, str),
        "boolean": isinstance(value, bool),
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "number": isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value),
    }.get(type_, False)
    if ok:
        return ""
    return f"{show(value)} is not {_TYPE_WORDS.get(type_, type_)}"


def value_problem(param: Parameter, value: Any) -> str:
    """Why ``value`` is not allowed for ``param`` ('' when it is): type, then enum, then bounds."""
    problem = type_problem(param.type, value)
    if problem:
        return problem
    if param.enum is not None and not any(_same(value, v) for v in param.enum):
        return f"{show(value)} is not one of the allowed values"
    if param.type in ("integer", "number"):
        if param.minimum is not None and value < param.minimum:
            return f"{show(value)} is below the minimum {_num(param.minimum)}"
        if param.maximum is not None and value > param.maximum:
            return f"{show(value)} is above the maximum {_num(param.maximum)}"
    return ""


def _same(a: Any, b: Any) -> bool:
    """JSON equality: ``1 == 1.0`` but ``True != 1``."""
    return isinstance(a, bool) == isinstance(b, bool) and isinstance(a, str) == isinstance(b, str) and a == b


def declaration_issues(name: str, param: Parameter, at: Path) -> list[Issue]:
    """Problems of one declaration (its type, bounds, enum and default); paths start at ``at``."""
    issues: list[Issue] = []
    who = f"parameter {name!r}"
    numeric = param.type in ("integer", "number")
    for bound in ("minimum", "maximum"):
        value = getattr(param, bound)
        if value is None:
            continue
        if not numeric:
            issues.append(
                Issue(
                    f"{who}: {bound} applies only to integer and number parameters",
                    (*at, bound),
                    "remove it, or declare type integer or number",
                )
            )
        elif problem := type_problem(param.type, value):
            issues.append(Issue(f"{who}: {bound} {problem}", (*at, bound), _TYPE_WORDS[param.type]))
    if numeric and param.minimum is not None and param.maximum is not None and param.minimum > param.maximum:
        issues.append(
            Issue(
                f"{who}: minimum {_num(param.minimum)} is greater than maximum {_num(param.maximum)}",
                (*at, "minimum"),
            )
        )
    if param.enum is not None:
        if param.type == "boolean":
            issues.append(Issue(f"{who}: enum does not apply to boolean parameters", (*at, "enum")))
        seen: list[Any] = []
        for i, value in enumerate(param.enum):
            if problem := type_problem(param.type, value):
                issues.append(Issue(f"{who}: enum value {problem}", (*at, "enum", i), _TYPE_WORDS[param.type]))
            elif any(_same(value, s) for s in seen):
                issues.append(Issue(f"{who}: enum value {show(value)} is listed twice", (*at, "enum", i)))
            seen.append(value)
    if issues:
        return issues  # the declaration itself is wrong: checking the default against it says nothing
    if problem := value_problem(param, param.default):
        issues.append(Issue(f"{who}: default {problem}", (*at, "default"), allowed(param)))
    return issues


def parameter_issues(parameters: Mapping[str, Parameter], root: Path) -> list[Issue]:
    """Problems of every declaration in ``parameters`` (``root`` is the path of the map)."""
    issues: list[Issue] = []
    for name, param in parameters.items():
        issues.extend(declaration_issues(name, param, (*root, name)))
    return issues


def declaration_for(param: Parameter) -> str:
    """The typed declaration to write for a plain value, as YAML flow text."""
    return f"{{type: {param.type}, default: {show(param.default)}}}"


def shorthand_issues(parameters: Mapping[str, Parameter], root: Path) -> list[Issue]:
    """The plain (untyped) values in ``parameters``: new content must declare types.

    Run where content is authored — ``blueprintd validate`` and the GitSource sync — not
    where stored revisions are rendered, which keep reading the old form.
    """
    return [
        Issue(
            f"parameter {name!r} has a plain value without a declared type; declare it as "
            f"{declaration_for(param)} and bound it with minimum/maximum or enum",
            (*root, name),
            "an object with type (string, integer, number, boolean) and default; "
            "optional minimum, maximum, enum, description",
        )
        for name, param in parameters.items()
        if param.shorthand
    ]


def override_issues(
    declared: Mapping[str, Parameter], overrides: Mapping[str, Any], root: Path, blueprint: str
) -> list[Issue]:
    """Per-cluster values (``overrides``, at ``root``) that ``blueprint``'s declarations refuse.

    ``blueprintd validate`` runs it for every MemberCluster and Blueprint that selects it,
    when both are among the files; render refuses the same values (see :func:`effective_values`).
    """
    issues: list[Issue] = []
    for name, value in overrides.items():
        param = declared.get(name)
        if param is None:
            issues.append(
                Issue(
                    f"parameter {name!r} is not declared by Blueprint {blueprint!r}, which selects this cluster",
                    (*root, name),
                    ", ".join(sorted(declared)) or "no parameters",
                )
            )
        elif problem := value_problem(param, value):
            message = f"parameter {name!r} of Blueprint {blueprint!r}: {problem}"
            issues.append(Issue(message, (*root, name), allowed(param)))
    return issues


class OverrideError(ValueError):
    """A per-cluster parameter value is unknown or not allowed by its declaration."""


def effective_values(
    declared: Mapping[str, Parameter], overrides: Mapping[str, Any], blueprint: str = ""
) -> dict[str, ParamValue]:
    """The values overlays see: each default, replaced by the cluster's override.

    Raises :class:`OverrideError` naming every override that is not declared or not
    allowed (parameter, value and what is allowed), so the cluster's status says exactly
    what to fix.
    """
    of = f" of Blueprint {blueprint!r}" if blueprint else ""
    problems: list[str] = []
    for name in sorted(overrides):
        value = overrides[name]
        param = declared.get(name)
        if param is None:
            names = ", ".join(sorted(declared)) or "none"
            by = f"Blueprint {blueprint!r}" if blueprint else "the Blueprint"
            problems.append(f"parameter {name!r} is not declared by {by} (declared: {names})")
        elif problem := value_problem(param, value):
            problems.append(f"parameter {name!r}{of}: cluster override {problem} (allowed: {allowed(param)})")
    if problems:
        raise OverrideError("; ".join(problems))
    values: dict[str, ParamValue] = {name: param.default for name, param in declared.items()}
    values.update(overrides)
    return values
