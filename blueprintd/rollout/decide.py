"""The rollout decision: which version each cluster should run now, as a pure function.

The operator calls :func:`decide` on every Blueprint resync and writes the result to the
Blueprint's ``status.rollout``. Nothing else carries rollout state, so any operator replica
can die at any point and another one continues from the object. Three rules make that work:

* **Pure and deterministic.** The result depends only on the arguments (the clock is the
  ``now`` argument), so every replica decides the same thing from the same objects.
* **A fixpoint per call.** ``decide`` applies every transition the inputs allow (advancing
  through several waves that are already Ready, for instance) before it returns. Calling it
  again with the same inputs and the returned status as ``previous`` therefore returns an
  equal status, and the operator skips the write.
* **Frozen waves.** The wave plan is computed once, when a target version first appears, and
  stored. Clusters added later (or losing their pin while in no wave) join the last wave;
  clusters removed later are dropped; nothing is reshuffled. A cluster joining a wave that has
  already started is assigned the target with it (rule 5) without being gated again, even if
  an earlier wave has turned unhealthy since: that holds the next wave back, it does not stop
  a started one. Joining while the rollout is paused or stopped, it moves as soon as the
  rollout resumes with its wave (rule 2): a pause only delays it.

Semantics, in the order ``decide`` applies them:

1. *New rollout.* A target different from ``previous.targetVersion`` (or no previous status)
   starts a rollout: ``previousVersion`` is the version most non-pinned clusters run (ties go
   to the previous target, then to the smallest name), falling back to the previous target
   when no cluster runs anything. Waves: the canary wave (clusters matching
   ``canary.selector``, or the first ``canary.count`` clusters by name; no canary wave when
   ``canary`` is omitted), then the remaining clusters by name in batches of
   ``maxUnavailable`` (a percentage is of the non-pinned selected clusters, rounded down,
   at least 1). Empty waves are not created.
2. *Resume.* ``paused`` going from true to false after a user pause, or a new
   ``resume_token``, resumes: the health clock of the current wave restarts and, when the
   rollout had failed (failure pause, ``Failed`` or ``RolledBack``), the failures are cleared
   and the rollout is retried from the earliest wave whose clusters are not all assigned the
   target (so a rolled-back rollout starts again with its first wave, and a paused one
   continues with its current wave).
3. *User pause.* ``paused=True`` freezes the assignments (nothing starts moving, clusters
   already updated stay) with phase ``Paused`` and ``pausedByUser``.
4. *Frozen phases.* After a failure the rollout stays ``Paused``, ``Failed`` or
   ``RolledBack`` with frozen assignments until a user resumes it or publishes a new
   version: a failure needs a human to look at it, even if the cluster recovers.
5. *Health gate.* Clusters of the current and earlier waves are assigned the target. A
   cluster is healthy when it is reachable and Ready at the target. It has failed when it
   reports Failed at the target (a failure reported before the current wave started or the
   rollout was resumed is stale: it gets a fresh ``healthTimeoutSeconds`` instead), or when it
   has not been healthy for longer than ``healthTimeoutSeconds`` counted from the later of
   when it became unhealthy (its Pending/Progressing state began, or its last contact when it
   is unreachable) and when the current wave started. An unreachable cluster thus blocks
   the wave without failing it until the timeout. When every gated cluster is healthy the
   next wave starts; after the last wave the rollout is ``Complete``. Once complete, the
   rollout no longer gates anything: clusters joining later get the target directly, and a
   cluster that breaks later is a MemberCluster problem, not a reason to roll the fleet back.
6. *Failure policy.* ``pause``: phase ``Paused``, assignments frozen. ``rollback``: the
   clusters of the failed and earlier waves are assigned ``previousVersion`` and the phase is
   ``RolledBack``; without a previous version different from the target (a first install)
   there is nothing to roll back to, so the rollout stops like a pause with phase ``Failed``.

Pinned clusters are assigned their pin in every phase and are never gated. Clusters not yet
in an active wave keep the version they were last assigned (or, if they were never assigned
one, the version they run); clusters running nothing are left out of ``assignments``.

**Rolling back to an earlier version is just a new target.** When the operator sets the
target to an earlier version (CLI rollback, git revert), ``decide`` sees a new target and runs
an ordinary rollout of it with the same canary and waves. Clusters that still run the earlier
version are already Ready at the target, so the waves made only of them pass within the same
call, and the rollout quickly reaches the clusters that need to go back.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from blueprintd.api.blueprint import Rollout
from blueprintd.api.rollout import (
    MAX_FAILURES,
    MAX_MESSAGE,
    ClusterView,
    FailureReason,
    RolloutFailure,
    RolloutPhase,
    RolloutStatus,
    as_utc,
)
from blueprintd.errors import ValidationError

FROZEN_PHASES: frozenset[RolloutPhase] = frozenset({"Paused", "Failed", "RolledBack"})
NAMES_SHOWN = 5
FAILURES_SHOWN = 3

Verdict = Literal["ready", "waiting", "unreachable", "failed"]


@dataclass
class _Rollout:
    """Mutable working copy of a ``RolloutStatus`` while one decision is being made."""

    target: str
    previous_version: str | None
    phase: RolloutPhase
    wave: int
    waves: list[list[str]]
    wave_started_at: datetime | None
    # Assignments of the last decision: what frozen phases keep and later waves hold.
    assignments: dict[str, str]
    failures: list[RolloutFailure] = field(default_factory=list)
    paused_by_user: bool = False
    resume_token: str | None = None

    @property
    def done(self) -> bool:
        return self.wave >= len(self.waves)


def decide(
    strategy: Rollout,
    target_version: str,
    clusters: list[ClusterView],
    previous: RolloutStatus | None,
    now: datetime,
    paused: bool = False,
    *,
    resume_token: str | None = None,
) -> RolloutStatus:
    """Decide the rollout of ``target_version`` over ``clusters``; see the module docstring.

    ``clusters`` are the member clusters the Blueprint selects, in any order. ``previous`` is
    the status the last call returned (read back from the Blueprint), or None. ``paused`` is
    the user's pause switch (``blueprintd rollout pause``). ``resume_token`` is an opaque value
    the user changes to resume a rollout that stopped on a failure (for instance an annotation
    holding the time of ``blueprintd rollout resume``); a value different from the one recorded
    in ``previous`` resumes once, the same value again does nothing.
    """
    if not target_version:
        raise ValidationError("the target version is empty", path="spec.version")
    now = as_utc(now)
    views = _index(clusters)

    if previous is not None and previous.target_version == target_version:
        st = _continue(previous, views)
    else:
        st = _start(strategy, target_version, views, previous, now, resume_token)

    token_changed = resume_token is not None and resume_token != st.resume_token
    st.resume_token = resume_token if resume_token is not None else st.resume_token
    if not paused and (st.paused_by_user or (token_changed and (st.phase in FROZEN_PHASES or st.failures))):
        _resume(st, views, now)

    if paused:
        st.phase = "Paused"
        st.paused_by_user = True
        return _finish(st, views, _frozen_assignments(st, views), [])

    if st.phase in FROZEN_PHASES:
        return _finish(st, views, _frozen_assignments(st, views), [])

    st.phase = "Progressing"  # Complete is re-derived by the gate (it stays complete once done)
    waiting = _gate(st, strategy, views, now)
    return _finish(st, views, _gated_assignments(st, views), waiting)


# --- starting and continuing ------------------------------------------------------------


def _index(clusters: list[ClusterView]) -> dict[str, ClusterView]:
    """Clusters by name, sorted, so that nothing depends on the order the operator listed them."""
    views: dict[str, ClusterView] = {}
    for view in clusters:
        if view.name in views:
            raise ValidationError(f"cluster {view.name!r} is listed twice", path="clusters")
        views[view.name] = view
    return dict(sorted(views.items()))


def _participants(views: dict[str, ClusterView]) -> list[str]:
    return [name for name, view in views.items() if view.pinned_version is None]


def _start(
    strategy: Rollout,
    target: str,
    views: dict[str, ClusterView],
    previous: RolloutStatus | None,
    now: datetime,
    resume_token: str | None,
) -> _Rollout:
    """A new rollout of ``target``: plan the waves once and remember what to roll back to.

    The previous rollout's assignments are kept as the starting point, so clusters whose
    wave has not come yet keep the version they were last told to run (even if they had not
    finished converging to it) instead of flapping with their applied version. A resume token
    present at the start is recorded, not acted on: it belonged to the earlier rollout.
    """
    names = _participants(views)
    baseline = {k: v for k, v in previous.assignments.items() if k in views} if previous else {}
    return _Rollout(
        target=target,
        previous_version=_fleet_version(views, names, previous),
        phase="Progressing",
        wave=0,
        waves=plan_waves(strategy, [views[n] for n in names]),
        wave_started_at=now,
        assignments=baseline,
        resume_token=resume_token,
    )


def _fleet_version(views: dict[str, ClusterView], names: list[str], previous: RolloutStatus | None) -> str | None:
    """The version most non-pinned clusters run: the fleet's version before this rollout."""
    counts = Counter(v for n in names if (v := views[n].applied_version) is not None)
    prior = previous.target_version if previous else None
    if not counts:
        return prior
    version, _ = min(counts.items(), key=lambda kv: (-kv[1], kv[0] != prior, kv[0]))
    return version


def plan_waves(strategy: Rollout, clusters: list[ClusterView]) -> list[list[str]]:
    """Canary wave first, then the other clusters by name in batches of ``maxUnavailable``.

    Pinned clusters must already be left out; they take no part in waves.
    """
    names = sorted(c.name for c in clusters)
    labels = {c.name: c.labels for c in clusters}
    canary: list[str] = []
    if strategy.canary is not None:
        if strategy.canary.selector is not None:
            selector = strategy.canary.selector
            canary = [n for n in names if selector.matches(labels[n])]
        elif strategy.canary.count is not None:
            canary = names[: strategy.canary.count]
    chosen = set(canary)
    rest = [n for n in names if n not in chosen]
    size = batch_size(strategy.max_unavailable, len(names))
    waves = [canary] if canary else []
    waves.extend(rest[i : i + size] for i in range(0, len(rest), size))
    return waves


def batch_size(max_unavailable: int | str, total: int) -> int:
    """Clusters per wave after the canary: a count, or a percentage of ``total`` rounded down, at least 1."""
    if isinstance(max_unavailable, int):
        if max_unavailable < 1:
            raise ValidationError("maxUnavailable must be at least 1", path="spec.rollout.maxUnavailable")
        return max_unavailable
    text = max_unavailable.strip()
    if text.endswith("%") and text[:-1].isdigit() and 1 <= int(text[:-1]) <= 100:
        return max(1, total * int(text[:-1]) // 100)
    raise ValidationError(
        f"maxUnavailable {max_unavailable!r} must be an integer or a percentage from 1% to 100%",
        path="spec.rollout.maxUnavailable",
    )


def _continue(previous: RolloutStatus, views: dict[str, ClusterView]) -> _Rollout:
    """The same rollout as before, with its frozen waves brought up to date with the fleet.

    Deleted clusters leave their wave (which may become empty and is then passed); clusters
    that appeared (or lost their pin) and are in no wave join the last wave. Wave indices never
    shift, so ``wave`` keeps meaning what it meant.
    """
    waves = [[n for n in names if n in views] for names in previous.waves]
    placed = {n for names in waves for n in names}
    joining = [n for n in _participants(views) if n not in placed]
    was_done = previous.wave >= len(previous.waves)
    if joining:
        if waves:
            waves[-1] = sorted(waves[-1] + joining)
        else:
            waves.append(joining)
    return _Rollout(
        target=previous.target_version,
        previous_version=previous.previous_version,
        phase=previous.phase,
        # A completed rollout stays completed when clusters join it: they simply get the target.
        wave=len(waves) if was_done else min(previous.wave, len(waves)),
        waves=waves,
        wave_started_at=previous.wave_started_at,
        assignments={k: v for k, v in previous.assignments.items() if k in views},
        failures=list(previous.failures),
        paused_by_user=previous.paused_by_user,
        resume_token=previous.resume_token,
    )


def _resume(st: _Rollout, views: dict[str, ClusterView], now: datetime) -> None:
    """Continue after a user pause or a resume request; a rollout that had failed is retried.

    The health clock restarts (the user may have paused to fix something). A retry clears the
    failures and goes back to the earliest wave whose clusters are not all assigned the target:
    the current wave after a failure pause, the first wave after a rollback, because a retry
    must not start several waves at once.
    """
    retry = bool(st.failures) or st.phase in ("Failed", "RolledBack")
    if retry:
        for index, names in enumerate(st.waves[: st.wave]):
            if any(st.assignments.get(n) != st.target for n in names if views[n].pinned_version is None):
                st.wave = index
                break
        st.failures = []
    st.phase = "Progressing"
    st.paused_by_user = False
    st.wave_started_at = now


# --- the health gate --------------------------------------------------------------------


def _judge(
    view: ClusterView, target: str, wave_started_at: datetime | None, now: datetime, timeout: timedelta
) -> tuple[Verdict, RolloutFailure | None]:
    """Whether one gated cluster is healthy at ``target``, still has time, or has failed."""
    at_target = view.state_version == target
    if view.reachable and at_target and view.state == "Ready" and view.applied_version == target:
        return "ready", None
    fresh_from = wave_started_at or now
    if at_target and view.state == "Failed" and (view.since is None or view.since >= fresh_from):
        return "failed", _failure(view, target, "Failed", view.message)
    unhealthy_since = view.since if at_target and view.state in ("Pending", "Progressing") else None
    if not view.reachable and view.last_contact is not None:
        unhealthy_since = min(unhealthy_since or view.last_contact, view.last_contact)
    clock = max(unhealthy_since or fresh_from, fresh_from)
    seconds = int(timeout.total_seconds())
    if now - clock > timeout:
        if not view.reachable:
            return "failed", _failure(view, target, "Unreachable", f"unreachable for more than {seconds}s")
        state = view.state if at_target else f"not started on {target}"
        detail = f"{state}: {view.message}" if view.message else state
        return "failed", _failure(view, target, "Timeout", f"not Ready within {seconds}s ({detail})")
    return ("waiting" if view.reachable else "unreachable"), None


def _failure(view: ClusterView, target: str, reason: FailureReason, message: str) -> RolloutFailure:
    return RolloutFailure(
        cluster=view.name, version=target, addon=view.failed_addon, reason=reason, message=_clip(message)
    )


def _gate(
    st: _Rollout, strategy: Rollout, views: dict[str, ClusterView], now: datetime
) -> list[tuple[str, Verdict]]:
    """Advance through every wave whose clusters (and all earlier ones) are healthy; stop on failure.

    Returns the clusters still waiting in the wave where it stopped (for the status message).
    Verdicts of clusters already found Ready are kept when the loop moves on: Ready does not
    depend on the wave clock, so only the new wave's clusters need judging.
    """
    timeout = timedelta(seconds=strategy.health_timeout_seconds)
    pending: list[str] = [n for names in st.waves[: st.wave] for n in names]
    while not st.done:
        pending += st.waves[st.wave]
        verdicts: list[tuple[str, Verdict]] = []
        failures: list[RolloutFailure] = []
        for name in pending:
            view = views[name]
            if view.pinned_version is not None:
                continue
            verdict, failure = _judge(view, st.target, st.wave_started_at, now, timeout)
            if failure is not None:
                failures.append(failure)
            elif verdict != "ready":
                verdicts.append((name, verdict))
        if failures:
            _fail(st, strategy, sorted(failures, key=lambda f: f.cluster))
            return []
        if verdicts:
            return verdicts
        pending = []
        st.wave += 1
        st.wave_started_at = now
    st.phase = "Complete"
    return []


def _fail(st: _Rollout, strategy: Rollout, failures: list[RolloutFailure]) -> None:
    st.failures = failures[:MAX_FAILURES]
    if strategy.failure_policy == "pause":
        st.phase = "Paused"
    elif st.previous_version is not None and st.previous_version != st.target:
        st.phase = "RolledBack"
    else:
        st.phase = "Failed"


# --- assignments ------------------------------------------------------------------------


def _hold(st: _Rollout, view: ClusterView) -> str | None:
    """The version a cluster keeps while it is not (or no longer) moving."""
    return st.assignments.get(view.name, view.applied_version)


def _assign(st: _Rollout, views: dict[str, ClusterView], moving: set[str], version: str | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, view in views.items():
        if view.pinned_version is not None:
            chosen: str | None = view.pinned_version
        else:
            chosen = version if name in moving else _hold(st, view)
        if chosen is not None:
            out[name] = chosen
    return out


def _active(st: _Rollout) -> set[str]:
    return {n for names in st.waves[: st.wave + 1] for n in names}


def _progress_assignments(st: _Rollout, views: dict[str, ClusterView]) -> dict[str, str]:
    """Waves up to the current one run the target; later waves hold; pins win."""
    return _assign(st, views, _active(st), st.target)


def _rollback_assignments(st: _Rollout, views: dict[str, ClusterView]) -> dict[str, str]:
    """The failed wave and every earlier one go back to ``previousVersion``; pins win."""
    return _assign(st, views, _active(st), st.previous_version)


def _gated_assignments(st: _Rollout, views: dict[str, ClusterView]) -> dict[str, str]:
    """Assignments right after the gate: rolled back, or the target up to the current wave."""
    if st.phase == "RolledBack":
        return _rollback_assignments(st, views)
    return _progress_assignments(st, views)


def _frozen_assignments(st: _Rollout, views: dict[str, ClusterView]) -> dict[str, str]:
    """Nothing moves: every cluster keeps its last assignment; only pins (always honoured) change."""
    return _assign(st, views, set(), None)


# --- the result -------------------------------------------------------------------------


def _finish(
    st: _Rollout,
    views: dict[str, ClusterView],
    assignments: dict[str, str],
    waiting: list[tuple[str, Verdict]],
) -> RolloutStatus:
    return RolloutStatus(
        target_version=st.target,
        previous_version=st.previous_version,
        phase=st.phase,
        wave=st.wave,
        waves=st.waves,
        wave_started_at=st.wave_started_at,
        assignments=assignments,
        failures=st.failures,
        paused_by_user=st.paused_by_user,
        resume_token=st.resume_token,
        message=_clip(_message(st, views, waiting)),
    )


def _message(st: _Rollout, views: dict[str, ClusterView], waiting: list[tuple[str, Verdict]]) -> str:
    """One sentence for ``kubectl get`` and the CLI: where the rollout is and what it waits for."""
    total = len(st.waves)
    where = f"wave {min(st.wave + 1, total)}/{total}"
    failed = _describe_failures(st.failures)
    if st.paused_by_user:
        text = (
            f"paused by user at {where} of {st.target}"
            if not st.done
            else f"paused by user; {st.target} is on every wave"
        )
        return f"{text} ({failed})" if failed else text
    if st.phase == "Paused":
        return f"paused at {where}: {failed}; resume to retry"
    if st.phase == "RolledBack":
        return f"rolled back to {st.previous_version} at {where}: {failed}"
    if st.phase == "Failed":
        return f"failed at {where}, no earlier version to roll back to: {failed}"
    if st.phase == "Complete":
        running = len(_participants(views))
        pinned = len(views) - running
        text = f"complete: {st.target} on {running} cluster{'s' if running != 1 else ''}"
        return f"{text}, {pinned} pinned" if pinned else text
    parts = []
    for label, verdict in (("converging", "waiting"), ("unreachable", "unreachable")):
        names = [n for n, v in waiting if v == verdict]
        if names:
            parts.append(f"{_names(names)} {label}")
    return f"{where}: {'; '.join(parts)}" if parts else where


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:NAMES_SHOWN])
    more = len(names) - NAMES_SHOWN
    return f"{shown} and {more} more" if more > 0 else shown


def _describe_failures(failures: list[RolloutFailure]) -> str:
    text = "; ".join(f.describe() for f in failures[:FAILURES_SHOWN])
    more = len(failures) - FAILURES_SHOWN
    return f"{text}; and {more} more" if more > 0 else text


def _clip(text: str) -> str:
    """Status fields stay small: Helm errors can be pages long."""
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"
