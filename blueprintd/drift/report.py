"""DriftReport bookkeeping (pure): findings of one check → report entries with a history.

A check looks at one target (object, release or node), so updating the report is per target
too: its current findings are merged into the entries of that target, entries the check no
longer finds are marked resolved, and everything else is left alone. An entry keeps its
``firstSeen`` while the drift persists; ``lastSeen`` moves when the drifted value changes or a
full resync confirms it, so an idle cluster with a standing drift causes no report writes.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from blueprintd.api.driftreport import DriftAction, DriftCounts, DriftEntry
from blueprintd.api.membercluster import DriftSummary
from blueprintd.api.ref import ObjectRef
from blueprintd.drift.detect import Drift

Key = tuple[str, ObjectRef, str]  # (blueprint, object, path)
MAX_ENTRIES = 2000
RETENTION = timedelta(hours=24)  # resolved entries are dropped after this


def entry_key(entry: DriftEntry) -> Key:
    return (entry.blueprint, entry.object, entry.path)


def drift_key(d: Drift) -> Key:
    return (d.blueprint, d.target.ref, d.path)


def initial_action(d: Drift) -> DriftAction:
    """notify → notified; remediate → open until a remediation is under way; block → open:
    the change got past the admission policy (an exempt or uncovered identity made it)."""
    return "notified" if d.mode == "notify" else "open"


def load(entries: Iterable[dict[str, Any]]) -> dict[Key, DriftEntry]:
    """Entries of a stored report (unknown or malformed entries are dropped, not fatal)."""
    out: dict[Key, DriftEntry] = {}
    for raw in entries:
        try:
            e = DriftEntry.model_validate(raw)
        except ValueError:
            continue
        out[entry_key(e)] = e
    return out


def update_target(
    entries: dict[Key, DriftEntry], ref: ObjectRef, drifts: list[Drift], now: datetime
) -> list[DriftEntry]:
    """Merge one check of ``ref`` into ``entries`` (in place); returns the entries that are new
    (first seen, or seen again after they had been resolved)."""
    found = {drift_key(d): d for d in drifts}
    new: list[DriftEntry] = []
    for key, d in found.items():
        e = entries.get(key)
        if e is None or e.resolved_at is not None:
            e = DriftEntry(
                blueprint=d.blueprint,
                addon=d.addon,
                mode=d.mode,
                object=d.target.ref,
                path=d.path,
                pointer=d.pointer,
                reason=d.reason,
                expected=d.expected,
                actual=d.actual,
                first_seen=now,
                last_seen=now,
                manager=d.manager,
                action=initial_action(d),
                message=d.detail[:4096],
            )
            entries[key] = e
            new.append(e)
            continue
        if e.actual != d.actual or e.expected != d.expected:
            e.last_seen = now
        e.expected, e.actual, e.reason, e.mode = d.expected, d.actual, d.reason, d.mode
        e.manager = d.manager or e.manager
        if d.detail:
            e.message = d.detail[:4096] if e.action in ("open", "notified") else e.message
    for key, e in entries.items():
        if key[1] == ref and key not in found and e.resolved_at is None:
            e.resolved_at = now
    return new


def mark(entries: dict[Key, DriftEntry], ref: ObjectRef, action: DriftAction, message: str, since: datetime) -> bool:
    """Record what was done about ``ref``'s drift: its open entries, and those resolved since
    the action started (the restore's own watch event may resolve them first). True if changed."""
    changed = False
    for key, e in entries.items():
        if key[1] != ref or (e.resolved_at is not None and e.resolved_at < since):
            continue
        if e.action != action or e.message != message:
            e.action, e.message = action, message[:4096]
            changed = True
    return changed


def touch(entries: dict[Key, DriftEntry], now: datetime) -> None:
    """A full resync confirmed every open entry."""
    for e in entries.values():
        if e.resolved_at is None:
            e.last_seen = now


def forget_except(
    entries: dict[Key, DriftEntry], refs: set[ObjectRef], blueprints: set[str], helm_addons: set[tuple[str, str]]
) -> bool:
    """Drop entries of tracked Blueprints whose object is no longer tracked (the Blueprint
    stopped setting it, so its drift is no longer anyone's business). Objects a Helm add-on
    rendered are only known once its release was read, so their entries stay while the
    add-on does."""
    gone = [
        k
        for k, e in entries.items()
        if k[0] in blueprints and k[1] not in refs and (e.blueprint, e.addon) not in helm_addons
    ]
    for k in gone:
        del entries[k]
    return bool(gone)


def prune(entries: dict[Key, DriftEntry], now: datetime) -> None:
    """Bound the report: resolved entries expire after ``RETENTION``; beyond ``MAX_ENTRIES``
    the oldest resolved go first."""
    for k in [k for k, e in entries.items() if e.resolved_at is not None and now - e.resolved_at > RETENTION]:
        del entries[k]
    if len(entries) > MAX_ENTRIES:
        order = sorted(
            entries,
            key=lambda k: (entries[k].resolved_at is None, entries[k].resolved_at or now, entries[k].first_seen or now),
        )
        for k in order[: len(entries) - MAX_ENTRIES]:
            del entries[k]


def counts(entries: Iterable[DriftEntry], protected: int) -> DriftCounts:
    es = list(entries)
    return DriftCounts(
        total=len(es),
        open=sum(1 for e in es if e.resolved_at is None),
        remediated=sum(1 for e in es if e.action == "remediated"),
        notified=sum(1 for e in es if e.action == "notified"),
        blocked=sum(1 for e in es if e.action == "blocked"),
        protected=protected,
    )


def summary(c: DriftCounts) -> DriftSummary:
    """The MemberCluster's ``status.drift``."""
    return DriftSummary(
        open=c.open, remediated=c.remediated, notified=c.notified, blocked=c.blocked, protected=c.protected
    )


def status(entries: dict[Key, DriftEntry], protected: Iterable[ObjectRef], now: datetime) -> dict[str, Any]:
    """The DriftReport status as stored (entries in a stable order: open first, then by object)."""
    ordered = sorted(entries.values(), key=lambda e: (e.resolved_at is not None, str(e.object), e.path))
    prot = sorted(set(protected))
    return {
        "entries": [e.to_wire() for e in ordered],
        "summary": counts(ordered, len(prot)).to_wire(),
        "protected": [r.to_wire() for r in prot],
        "lastUpdated": now.isoformat().replace("+00:00", "Z"),
    }


def same_content(a: dict[str, Any] | None, b: dict[str, Any]) -> bool:
    """Equal apart from ``lastUpdated``: decides whether a report write is needed at all."""
    if a is None:
        return False
    strip = ("lastUpdated",)
    return {k: v for k, v in a.items() if k not in strip} == {k: v for k, v in b.items() if k not in strip}
