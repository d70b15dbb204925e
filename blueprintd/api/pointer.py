"""Field paths in documents: RFC 6901 JSON pointers and the dotted form users write.

Patches and encodeAsYaml use JSON pointers (``/migManager/config/default``); drift ignore
rules accept either a pointer or a dotted path (``spec.template.spec.containers[0].image``).
Both parse to the same list of tokens.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

_DOTTED_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+|\*)\]")


def parse_pointer(pointer: str) -> list[str]:
    """``/a/b~1c`` → ``["a", "b/c"]``; ``""`` is the whole document. Raises ``ValueError``."""
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise ValueError(f"JSON pointer {pointer!r} must start with '/' (e.g. /spec/replicas)")
    tokens = []
    for raw in pointer[1:].split("/"):
        if re.search(r"~(?![01])", raw):
            raise ValueError(f"JSON pointer {pointer!r} has an invalid escape: '~' must be written ~0 and '/' ~1")
        tokens.append(raw.replace("~1", "/").replace("~0", "~"))
    return tokens


def format_pointer(tokens: list[str] | tuple[str | int, ...]) -> str:
    return "".join("/" + str(t).replace("~", "~0").replace("/", "~1") for t in tokens)


def lookup(doc: Any, tokens: Sequence[str]) -> tuple[bool, Any]:
    """``(found, value)`` at ``tokens`` in ``doc``: map keys, list items by index."""
    node = doc
    for token in tokens:
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return False, None
    return True, node


def parse_path(path: str) -> list[str]:
    """A JSON pointer (leading ``/``) or a dotted path with ``[n]`` indexes, as tokens."""
    if path.startswith("/") or path == "":
        return parse_pointer(path)
    tokens: list[str] = []
    pos = 0
    for match in _DOTTED_TOKEN.finditer(path):
        gap = path[pos : match.start()]
        if gap not in ("", ".") or (gap == "." and not tokens):
            raise ValueError(f"field path {path!r} is not a dotted path such as spec.containers[0].image")
        tokens.append(match.group(1) or match.group(2))
        pos = match.end()
    if pos != len(path) or not tokens:
        raise ValueError(f"field path {path!r} is not a dotted path such as spec.containers[0].image")
    return tokens
