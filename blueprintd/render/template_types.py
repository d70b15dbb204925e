"""Does a ``${ … }`` template's result fit the place it lands in? Pure rules, no I/O.

A template keeps its CEL type (``"${ params.timeSlicingReplicas }"`` becomes the number 4),
so a wrong parameter or a wrong expression would otherwise write ``replicas: many`` into a
config that only takes integers, and nothing would notice until the consumer failed on a
node. Render checks every template result against what its target expects and refuses a
mismatch, naming the overlay, the pool, the template, the Blueprint path of the template and
the document path it was going to write.

What a target expects, in order:

1. Names are strings: the patch's ``addon``, ``target.kind/name/namespace/apiVersion`` and
   the ``op``, ``path`` and ``from`` of JSON patch operations (map keys are checked where
   they are resolved).
2. Kubernetes object metadata has fixed types: ``metadata.name``, ``metadata.namespace``
   and ``metadata.generateName`` are strings; every value of ``metadata.labels`` and
   ``metadata.annotations`` is a string.
3. A field the document already holds (the add-on's base values or manifest, as earlier
   overlays left it) keeps its JSON type: string, boolean, integer (whole numbers only),
   number (integers too), object or array. ``null`` on either side fits anything: in a
   merge patch ``null`` deletes, and a ``null`` default means "not set".
4. A node label value is text: a string, number or boolean is written as text; a list or a
   map is refused.

A field neither rule knows (a new key, an array position) takes any value.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from blueprintd.api.issues import PathElem, json_type, json_type_words
from blueprintd.api.params import show
from blueprintd.api.pointer import lookup

NAME_FIELDS = frozenset({"addon", "op", "path", "from"})
TARGET_FIELDS = frozenset({"kind", "name", "namespace", "apiVersion"})
_STRING_MAPS = frozenset({"labels", "annotations"})
_STRING_META = frozenset({"name", "namespace", "generateName"})
def fits(expected: str, value: Any) -> bool:
    """Whether ``value`` may stand where a value of JSON type ``expected`` is."""
    got = json_type(value)
    if expected == "null" or got == "null" or got == expected:
        return True
    return expected == "number" and got == "integer"


def patch_field_expectation(sub: Sequence[PathElem]) -> str:
    """Rule 1: the JSON type a patch's own field takes ('' when it is content, not a name)."""
    if len(sub) == 1 and sub[0] == "addon":
        return "string"
    if len(sub) == 2 and sub[0] == "target" and sub[1] in TARGET_FIELDS:
        return "string"
    if len(sub) == 3 and sub[0] in ("valuesJsonPatch", "jsonPatch") and sub[2] in NAME_FIELDS:
        return "string"
    return ""


def manifest_expectation(tokens: Sequence[str]) -> str:
    """Rule 2: the JSON type Kubernetes fixes for a manifest field ('' when not fixed)."""
    if len(tokens) == 2 and tokens[0] == "metadata" and tokens[1] in _STRING_META:
        return "string"
    if len(tokens) == 3 and tokens[0] == "metadata" and tokens[1] in _STRING_MAPS:
        return "string"
    return ""


def target_problem(doc: Any, tokens: Sequence[str], value: Any, *, manifest: bool) -> str:
    """Why ``value`` does not fit at ``tokens`` of ``doc`` (rules 2 and 3; '' when it fits)."""
    fixed = manifest_expectation(tokens) if manifest else ""
    if fixed and not fits(fixed, value):
        return f"Kubernetes takes {json_type_words(fixed)} there"
    found, current = lookup(doc, tokens)
    if found and not fits(json_type(current), value):
        shown = "" if isinstance(current, dict | list) else f" ({show(current)})"
        return f"the field holds {json_type_words(json_type(current))}{shown}"
    return ""


def label_value_problem(value: Any) -> str:
    """Rule 4 ('' when ``value`` can be written as a label value)."""
    if isinstance(value, dict | list | tuple):
        return f"a node label value is text (a string, number or boolean), not {json_type_words(json_type(value))}"
    return ""
