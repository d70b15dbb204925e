"""When a member's periodic resync may skip its reconcile: nothing it would read has changed.

A member resync connects, collects facts, renders every selecting Blueprint, reads each
release's storage Secrets and every owned object, and plans. On a converged fleet the plan
is empty, so that is polling in disguise: the drift monitor already watches the same
objects, release Secrets and nodes. The controller therefore keeps a *mark* for each member
whose last full reconcile left it converged, and asks ``decide`` on every resync. The rules,
first match wins:

1. **No mark** → full reconcile. None ran since this replica took the member, or the last one
   did not leave it converged (``converged``: reachable, no error, no back-off, every
   Blueprint ``Ready`` with no step running, no ``drift restore`` request left to carry out).
2. **Inputs changed** → full. ``inputs_key`` hashes what the management cluster says the
   member should run: the MemberCluster's generation (spec: pins, parameters, paused),
   labels and annotations; per Blueprint its name, generation, published revision, whether it
   selects the member, the version the rollout or a pin assigns it and its ``onUnselect``.
   A Blueprint that cannot be read is in the key by name and generation. It also holds the
   part of the MemberCluster's status that the reconcile itself writes (``RECONCILED_STATUS``):
   when another writer changed it (a replica resumed after losing the member, a person), the
   status no longer says what the member runs, and only a full reconcile writes it again. (The
   drift summary and the shard owner have writers of their own and are not in it.)
3. **Member not observed** → full. The drift monitor does not watch the member with every
   stream listed and synced, or it has a restore, a held finding or a recheck in flight.
4. **Member changed** → full. The monitor's change count differs from the one taken when the
   marked reconcile began: any watch event on an owned kind or a release Secret (a status
   change of a rendered workload counts), a node's labels, capacity or allocatable, or a
   relist that found anything different. Counting from the *start* of the reconcile means its
   own writes make the next resync full too: that one finds an empty plan and marks again.
5. **Full resync due** → full, once the mark is ``full_resync_seconds`` old: what no watch
   covers (DRA ResourceSlices, objects named only in readiness checks, a rotated member
   kubeconfig) is read at least that often.
6. Otherwise → **skip**: no member I/O, no render, no helm, no status write.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from blueprintd.api.blueprint import Blueprint
from blueprintd.api.membercluster import RESTORE_ANNOTATION, MemberCluster, MemberClusterStatus
from blueprintd.operator.pipeline import assigned_version, selects

__all__ = ["RECONCILED_STATUS", "QuietMark", "converged", "decide", "inputs_key"]

# The MemberCluster status fields only a full reconcile writes (``operator.status`` MEMBER_KEYS
# and UNREACHABLE_KEYS, less conditions: their times follow these fields).
RECONCILED_STATUS = frozenset(
    {"reachable", "last_error", "backoff", "kubernetes_version", "applied_revisions", "addons", "blueprints"}
)


@dataclass(frozen=True)
class QuietMark:
    """A full reconcile that left the member converged: with what inputs, at what change count
    of the member's watches, and when (monotonic seconds)."""

    key: str
    changes: int | None  # None: the member was not watched yet when the reconcile began
    at: float


def inputs_key(mc: MemberCluster, blueprints: Iterable[Blueprint | tuple[str, int]]) -> str:
    """Rule 2's key. ``blueprints``: the parsed Blueprints, and ``(name, generation)`` of
    those that failed validation."""
    meta = mc.metadata
    reconciled = mc.status.model_dump(mode="json", include=set(RECONCILED_STATUS)) if mc.status else None
    parts: list[Any] = [meta.generation, meta.labels, meta.annotations, reconciled]
    for bp in blueprints:
        if isinstance(bp, tuple):
            parts.append(["unreadable", *bp])
            continue
        revision = bp.status.revision if bp.status is not None else ""
        parts.append(
            [
                bp.metadata.name,
                bp.metadata.generation,
                revision,
                selects(bp, mc),
                assigned_version(bp, mc).version,
                bp.spec.on_unselect,
            ]
        )
    text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def converged(mc: MemberCluster, st: MemberClusterStatus) -> bool:
    """Rule 1: the status a full reconcile just folded leaves nothing to retry or finish."""
    if not st.reachable or st.last_error or st.backoff is not None:
        return False
    request = mc.metadata.annotations.get(RESTORE_ANNOTATION, "").strip()
    if request and request != st.drift_restored:  # a `drift restore` not carried out yet
        return False
    return all(p.state == "Ready" and p.current is None and p.backoff is None for p in st.blueprints)


def decide(
    mark: QuietMark | None, key: str, changes: int | None, now: float, full_resync_seconds: float
) -> tuple[bool, str]:
    """Whether this resync may skip the reconcile (rules 1 to 6), and why not when it may not."""
    if mark is None:
        return False, "not converged at the last full reconcile"
    if key != mark.key:
        return False, "the member's or a Blueprint's inputs changed"
    if changes is None or mark.changes is None:
        return False, "the member's watches are not all synced"
    if changes != mark.changes:
        return False, "the member changed since the last full reconcile"
    if now - mark.at >= full_resync_seconds:
        return False, "full resync due"
    return True, "nothing changed"
