"""Typed errors shared by every layer.

Every error a user can meet carries a message written for a human: what is wrong, where
(file, field path, cluster) and what to do about it. Layers raise subclasses so the CLI
and the operator can map them to exit codes and status conditions without parsing text.
"""

from __future__ import annotations


class BlueprintdError(Exception):
    """Base class: the message is shown to users as-is."""


class ValidationError(BlueprintdError):
    """Input (a Blueprint, facts, a fleet file) is invalid; nothing was applied."""

    def __init__(self, message: str, *, path: str = "", source: str = "", line: int | None = None) -> None:
        self.path = path
        self.source = source
        self.line = line
        where = source
        if line is not None:
            where = f"{where}:{line}" if where else f"line {line}"
        prefix = ": ".join(p for p in (where, path) if p)
        super().__init__(f"{prefix}: {message}" if prefix else message)
        self.detail = message


class RenderError(BlueprintdError):
    """A Blueprint is valid on its own but cannot be rendered for a cluster's facts."""


class ClusterError(BlueprintdError):
    """Talking to a (member or management) cluster failed."""


class DevFleetError(BlueprintdError):
    """The local test-bed fleet could not be started, found or stopped."""
