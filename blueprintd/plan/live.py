"""The live side of a plan: what a member cluster has now, as plain data.

The cluster adapters fill these in (helm status, object reads, node list); planning and
drift detection read them without any I/O of their own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PENDING = frozenset({"pending-install", "pending-upgrade", "pending-rollback", "uninstalling"})


@dataclass(frozen=True)
class ReleaseState:
    """What is installed under one Helm release name."""

    name: str
    namespace: str
    chart: str
    version: str
    status: str
    revision: int
    values: dict[str, Any]

    @property
    def pending(self) -> bool:
        return self.status in PENDING


@dataclass
class LiveState:
    """What the cluster has for the objects a DesiredState and the inventory mention."""

    releases: dict[tuple[str, str], ReleaseState | None] = field(default_factory=dict)  # (ns, name)
    objects: dict[str, dict[str, Any] | None] = field(default_factory=dict)  # object_key -> live object
    node_labels: dict[str, dict[str, str]] = field(default_factory=dict)  # node -> labels
