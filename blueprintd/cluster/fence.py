"""The last check before every write to a member cluster.

A sharded replica may lose a member between the start of a reconcile (where the shard fence
of ``blueprintd.shard.decide`` rule 3 is judged) and a write made seconds later: a paused
(SIGSTOP) or starved process resumes with work already queued — an apply of a long
reconcile, a drift restore. So every write path of a member (``ObjectClient`` writes,
``HelmClient`` installs, upgrades, rollbacks and uninstalls) calls the session's
``WriteCheck`` right before it sends the request; the check reads only this process's own
memory (its last Lease renewal and the members it holds), so it costs nothing and cannot be
delayed by the API server it guards.
"""

from __future__ import annotations

from collections.abc import Callable

from blueprintd.errors import ClusterError

WriteCheck = Callable[[], None]


class FencedOut(ClusterError):
    """This replica may no longer write to the member (it lost its Lease or the member);
    the write was not sent. The member's new owner carries on: nothing is reported as failed."""

    def __init__(self, member: str, reason: str) -> None:
        self.member = member
        self.reason = reason
        super().__init__(f"member {member}: write not sent, this replica no longer owns it ({reason})")


def unfenced() -> None:
    """The check of an operator that is not sharded: it owns every member."""
    return None
