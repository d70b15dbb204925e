"""``--selector`` text (kubectl's label selector syntax) as a ``LabelSelector``.

Pure. Accepted, comma-separated, as ``kubectl get -l`` accepts them: ``key=value``,
``key==value``, ``key!=value``, ``key``, ``!key``, ``key in (a, b)``, ``key notin (a, b)``.
``key!=value`` matches clusters without the label too (Kubernetes semantics, as ``NotIn``).
Anything else is a ``BlueprintdError`` naming the piece that could not be read.
"""

from __future__ import annotations

import re

from blueprintd.api.common import LabelSelector, LabelSelectorRequirement, SelectorOperator
from blueprintd.errors import BlueprintdError

_KEY = r"[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?"
_VALUE = r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_SET = re.compile(rf"^(?P<key>{_KEY})\s+(?P<op>in|notin)\s+\((?P<values>[^()]*)\)$")
_EQ = re.compile(rf"^(?P<key>{_KEY})\s*(?P<op>==|=|!=)\s*(?P<value>{_VALUE})$")
_EXISTS = re.compile(rf"^(?P<neg>!)?\s*(?P<key>{_KEY})$")


def _split(text: str) -> list[str]:
    """Split at commas outside parentheses."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p.strip() for p in parts]


def parse_selector(text: str) -> LabelSelector:
    """Parse kubectl's selector syntax (see the module docstring)."""
    labels: dict[str, str] = {}
    exprs: list[LabelSelectorRequirement] = []
    for part in _split(text):
        if m := _SET.match(part):
            values = [v.strip() for v in m["values"].split(",") if v.strip()]
            if not values:
                raise BlueprintdError(f"--selector {text!r}: {part!r} lists no values: write e.g. 'gpu in (h100, l4)'")
            op = SelectorOperator.IN if m["op"] == "in" else SelectorOperator.NOT_IN
            exprs.append(LabelSelectorRequirement(key=m["key"], operator=op, values=values))
        elif m := _EQ.match(part):
            if m["op"] == "!=":
                exprs.append(
                    LabelSelectorRequirement(key=m["key"], operator=SelectorOperator.NOT_IN, values=[m["value"]])
                )
            else:
                labels[m["key"]] = m["value"]
        elif m := _EXISTS.match(part):
            op = SelectorOperator.DOES_NOT_EXIST if m["neg"] else SelectorOperator.EXISTS
            exprs.append(LabelSelectorRequirement(key=m["key"], operator=op))
        else:
            raise BlueprintdError(
                f"--selector {text!r}: cannot read {part!r}: use key=value, key!=value, key, !key, "
                "key in (a,b) or key notin (a,b), separated by commas"
            )
    return LabelSelector(match_labels=labels, match_expressions=exprs)
