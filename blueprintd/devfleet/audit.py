"""Read an API server's audit log to count write calls per user.

The operator promises that a reconcile which finds nothing to change makes no write call.
Counting writes on the client side would only prove what the client thinks it did; the API
server's own audit log (policy: every create/update/patch/delete) is the ground truth, and
tests and benchmarks read it through this class.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})


@dataclass(frozen=True)
class AuditEvent:
    user: str
    verb: str
    resource: str
    namespace: str
    name: str
    subresource: str
    code: int
    uri: str
    user_agent: str = ""  # blueprintd puts its replica id here (sharded operators)
    time: str = ""  # stageTimestamp, RFC 3339 with microseconds

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> AuditEvent:
        ref = raw.get("objectRef") or {}
        return cls(
            user=raw.get("user", {}).get("username", ""),
            verb=raw.get("verb", ""),
            resource=ref.get("resource", ""),
            namespace=ref.get("namespace", ""),
            name=ref.get("name", ""),
            subresource=ref.get("subresource", ""),
            code=int((raw.get("responseStatus") or {}).get("code", 0)),
            uri=raw.get("requestURI", ""),
            user_agent=raw.get("userAgent", ""),
            time=raw.get("stageTimestamp", "") or raw.get("requestReceivedTimestamp", ""),
        )


class AuditLog:
    """An append-only JSON-lines audit log; ``mark()`` + ``writes(since=mark)`` bracket an action."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def mark(self) -> int:
        """A position in the log: events after it belong to what happens next."""
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def events(self, since: int = 0) -> list[AuditEvent]:
        try:
            with self.path.open("rb") as f:
                f.seek(since)
                data = f.read()
        except FileNotFoundError:
            return []
        out = []
        for line in data.splitlines():
            if not line.strip():
                continue
            try:
                out.append(AuditEvent.from_json(json.loads(line)))
            except (ValueError, TypeError):
                continue  # a line being written right now
        return out

    def writes(self, since: int = 0, user: str | None = None) -> list[AuditEvent]:
        """Write calls (create/update/patch/delete) after ``since``, optionally by one user."""
        return [e for e in self.events(since) if e.verb in WRITE_VERBS and (user is None or e.user == user)]
