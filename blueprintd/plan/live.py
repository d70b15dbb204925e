"""The live side of a plan: what a member cluster has now, as plain data.

The cluster adapters fill these in (helm status, object reads, node list); planning and
drift detection read them without any I/O of their own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PENDING = frozenset({"pending-install", "pending-upgrade", "pending-rollback", "uninstalling"})

# The start of the ``helm --description`` of every revision blueprintd installs: it tells the
# operator's own upgrades apart from ``helm upgrade`` / ``helm rollback`` run by someone else.
OPERATOR_DESCRIPTION = "blueprintd"


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
    description: str = ""  # helm's log entry for the revision ("Rollback to 3", "blueprintd ...")

    @property
    def pending(self) -> bool:
        return self.status in PENDING

    @property
    def by_operator(self) -> bool:
        """The current revision was installed by blueprintd (not by a person's helm command)."""
        return self.description.startswith(OPERATOR_DESCRIPTION + " ")

    @property
    def rolled_back(self) -> bool:
        return self.description.startswith("Rollback to")


@dataclass
class LiveState:
    """What the cluster has for the objects a DesiredState and the inventory mention."""

    releases: dict[tuple[str, str], ReleaseState | None] = field(default_factory=dict)  # (ns, name)
    objects: dict[str, dict[str, Any] | None] = field(default_factory=dict)  # object_key -> live object
    node_labels: dict[str, dict[str, str]] = field(default_factory=dict)  # node -> labels
