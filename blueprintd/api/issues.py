"""Validation issues: one problem in one place, and the exception that carries all of them.

Users fix a file faster when they see every problem at once, each with the file, line and
field path, so validation collects ``Issue`` objects instead of stopping at the first one
and raises ``InvalidInput`` (a ``ValidationError``) at the end.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from blueprintd.errors import ValidationError

PathElem = str | int
Path = tuple[PathElem, ...]


def format_path(path: Sequence[PathElem]) -> str:
    """``("spec", "addons", 2, "helm")`` → ``spec.addons[2].helm``."""
    out = ""
    for elem in path:
        if isinstance(elem, int):
            out += f"[{elem}]"
        else:
            text = str(elem)
            if text and all(ch.isalnum() or ch in "_-" for ch in text):
                out += f".{text}" if out else text
            else:
                out += f"[{text!r}]"
    return out


_JSON_TYPE_WORDS = {
    "string": "a string",
    "boolean": "a boolean",
    "integer": "an integer",
    "number": "a number",
    "object": "an object",
    "array": "a list",
    "null": "null",
}


def json_type(value: Any) -> str:
    """The JSON type of ``value``: string, boolean, integer, number, object, array or null
    (booleans before numbers: ``True`` is an int); other Python types by their class name."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    return type(value).__name__


def json_type_words(kind: str) -> str:
    """A JSON type (see :func:`json_type`) as messages say it: ``an integer``, ``a list``."""
    return _JSON_TYPE_WORDS.get(kind, kind)


@dataclass(frozen=True)
class Issue:
    """One problem: where (source file, line, field path), what, and what would be accepted."""

    message: str
    path: Path = ()
    allowed: str = ""
    source: str = ""
    line: int | None = None

    @property
    def field(self) -> str:
        return format_path(self.path)

    def __str__(self) -> str:
        where = self.source or "<input>"
        if self.line is not None:
            where += f":{self.line}"
        text = f"{where}: {self.field or '(document)'}: {self.message}"
        if self.allowed:
            text += f" (allowed: {self.allowed})"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.source,
            "line": self.line,
            "field": self.field,
            "message": self.message,
            "allowed": self.allowed,
        }


class InvalidInput(ValidationError):
    """Input failed validation; ``issues`` lists every problem found (at least one)."""

    def __init__(self, issues: Sequence[Issue]) -> None:
        if not issues:
            raise ValueError("InvalidInput needs at least one issue")
        self.issues = list(issues)
        first = self.issues[0]
        count = len(self.issues)
        header = "1 problem found" if count == 1 else f"{count} problems found"
        body = "\n".join(f"  {issue}" for issue in self.issues)
        super().__init__(f"{header}:\n{body}", path=first.field, source=first.source, line=first.line)
        # ``str(exc)`` should read as the list, not as "file:line: path: <list>".
        self.args = (f"{header}:\n{body}",)

    def __str__(self) -> str:
        return str(self.args[0])
