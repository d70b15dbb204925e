"""Status folding: the previous typed status and this reconcile's typed results → the new status.

Every status the operator writes is computed here, as pure functions over the api/ models
(``MemberClusterStatus``, ``BlueprintStatus``) with the clock as an argument; the controller
only reads, calls these, and hands :func:`status_patch`'s result to the API server. Rules:

**MemberCluster, member unreachable** (:func:`fold_unreachable`). ``reachable`` goes false,
``lastError`` and the ``Reachable`` condition say why, and ``backoff`` counts the failed
connection attempt and sets ``nextAttempt`` (``operator/backoff.py``); everything else is kept as
it was. The per-Blueprint inventories in particular must survive: the next reconcile prunes from
them. A reachable member has no ``backoff``.

**MemberCluster, member reachable** (:func:`fold_member`). One outcome per Blueprint that
selects the cluster or still has progress recorded on it, in Blueprint name order:

* ``Applied``: the reconcile ran. The Blueprint's progress entry becomes Ready, Drifted (not
  ready only because of drift its mode leaves alone; the message lists it) or Failed (the
  failing add-on and the error). ``since`` is kept while version and state stay the same;
  ``lastAttempt`` is set on every failure and otherwise kept only while nothing changed. The
  inventory is the one the run applied, else the previous one. A Ready run at a new version
  records it in ``appliedRevisions``. Its add-on states are listed. A Failed entry carries
  ``backoff``: the consecutive failures of the same attempt and ``nextAttempt``
  (``operator/backoff.py``); any other state clears it.
* ``NotApplied``: nothing could be rendered (no revision, render error): Failed with the error,
  and ``backoff`` as for a failed ``Applied``.
* ``Backoff``: the Blueprint failed and its ``nextAttempt`` has not come yet: its entry and
  add-on states stay exactly as they were, so waiting writes nothing.
* ``Unselected``: the Blueprint stopped selecting the cluster (or was deleted). Done: its
  progress and applied revision are dropped. Not done (the prune failed): the entry stays,
  Failed, so the next reconcile tries again from the same inventory.

Blueprints that select the cluster but assign it no version yet are not outcomes: their
entries (if any) are kept. ``lastError`` is the last failure in that order; ``Ready`` is true
when every recorded Blueprint is Ready. A restore request is recorded as carried out
(``driftRestored``) only when the run had no error.

**MemberCluster, a step in progress** (:func:`fold_in_progress`). While an add-on step runs
(install, upgrade, apply, wait for readiness), its Blueprint's entry carries it as ``current``
(add-on, step, since, what it waits for); nothing else changes. A Blueprint with no entry yet
(its first install) gets one, Progressing at the version being applied. ``None`` clears it; and
:func:`fold_member` clears every ``current``, since it folds a reconcile whose steps all ended.

**Blueprint** (:func:`fold_published`, :func:`fold_invalid`, :func:`fold_rollout`): the
``Valid`` condition and revision when publishing; the rollout decision, cluster counts and the
``RollingOut``/``Ready`` conditions on every rollout resync.

**Conditions** keep ``lastTransitionTime`` while their status does not flip, and are kept
sorted by type, so an unchanged situation folds to an equal status.

**Patches** (:func:`status_patch`): a JSON merge patch (RFC 7386) over the keys one writer owns,
None when nothing changed, so a quiet fleet makes no write call. Keys that disappeared (a deleted
member's rollout assignment) are written as null: a merge patch that only sends the new map
would leave the old key in place forever, and the next resync would write again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from blueprintd.api.base import ApiModel
from blueprintd.api.blueprint import BlueprintStatus, UnselectAction
from blueprintd.api.common import Condition, ConditionStatus
from blueprintd.api.membercluster import (
    AddonProgress,
    AddonState,
    AppliedRevision,
    BlueprintProgress,
    MemberClusterStatus,
    PoolSummary,
)
from blueprintd.api.mergepatch import merge_patch
from blueprintd.api.revision import revision_name
from blueprintd.api.rollout import ClusterView, RolloutStatus
from blueprintd.cluster.reconcile import ReconcileResult
from blueprintd.operator.backoff import BackoffPolicy, after_failure
from blueprintd.plan.inventory import Inventory

MAX_MESSAGE = 4096
DEFAULT_BACKOFF = BackoffPolicy()
MAX_CONDITION_MESSAGE = 2048

# Who writes which top-level status keys: a patch never touches another writer's keys (the
# drift monitor owns MemberCluster status.drift, for instance).
MEMBER_KEYS = (
    "reachable",
    "lastError",
    "conditions",
    "kubernetesVersion",
    "factsSummary",
    "blueprints",
    "appliedRevisions",
    "revisionSummary",
    "addons",
    "driftRestored",
    "backoff",
)
UNREACHABLE_KEYS = ("reachable", "lastError", "conditions", "backoff")
PROGRESS_KEYS = ("blueprints",)
PUBLISH_KEYS = ("observedGeneration", "revision", "contentHash", "conditions")
INVALID_KEYS = ("observedGeneration", "conditions")
ROLLOUT_KEYS = ("rollout", "matchedClusters", "readyClusters", "conditions")


# --- this reconcile's results, per Blueprint ----------------------------------------------


@dataclass(frozen=True)
class Applied:
    """The reconcile of ``blueprint`` at ``version`` ran; ``result`` says how it went."""

    blueprint: str
    version: str
    result: ReconcileResult
    on_unselect: UnselectAction = "Orphan"
    content_hash: str = ""
    attempt: str = ""  # what was attempted (backoff.attempt_key): a new one restarts the backoff


@dataclass(frozen=True)
class NotApplied:
    """Nothing could be applied: the revision is missing or does not render."""

    blueprint: str
    version: str
    error: str
    on_unselect: UnselectAction = "Orphan"
    attempt: str = ""


@dataclass(frozen=True)
class Backoff:
    """Failed, and its ``nextAttempt`` has not come: left exactly as it is."""

    blueprint: str


@dataclass(frozen=True)
class Unselected:
    """No longer selected (or deleted): ``error`` empty when its add-ons were released/pruned."""

    blueprint: str
    error: str = ""


Outcome = Applied | NotApplied | Backoff | Unselected


@dataclass(frozen=True)
class MemberObservation:
    """Everything one successful member reconcile learned, for :func:`fold_member`."""

    kubernetes_version: str
    pools: Sequence[PoolSummary] = ()
    outcomes: Sequence[Outcome] = ()
    restore_request: str = ""  # the blueprintd.io/restore-drift annotation value, "" when none
    restore: bool = False  # the request was not carried out yet, and this run carried it


# --- conditions -------------------------------------------------------------------------------


def set_condition(
    conditions: Iterable[Condition], type_: str, ok: bool, reason: str, message: str, now: datetime
) -> list[Condition]:
    """``conditions`` with ``type_`` set; its lastTransitionTime is kept when the status did not flip."""
    status = ConditionStatus.TRUE if ok else ConditionStatus.FALSE
    previous = list(conditions)
    old = next((c for c in previous if c.type == type_), None)
    since = old.last_transition_time if old is not None and old.status == status else now
    new = Condition(
        type=type_, status=status, reason=reason, message=message[:MAX_CONDITION_MESSAGE], last_transition_time=since
    )
    return sorted([c for c in previous if c.type != type_] + [new], key=lambda c: c.type)


def condition_of(conditions: Iterable[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)


# --- MemberCluster ------------------------------------------------------------------------------


def fold_unreachable(
    previous: MemberClusterStatus,
    reason: str,
    message: str,
    now: datetime,
    *,
    attempt: str = "",
    policy: BackoffPolicy = DEFAULT_BACKOFF,
    cluster: str = "",
) -> MemberClusterStatus:
    """The member could not be reached (or its kubeconfig was refused): say so, back off, keep
    the rest. ``attempt`` names what was tried (the kubeconfig reference); ``cluster`` seeds
    the jitter."""
    return previous.model_copy(
        update={
            "reachable": False,
            "last_error": message[:MAX_MESSAGE],
            "conditions": set_condition(previous.conditions, "Reachable", False, reason, message, now),
            "backoff": after_failure(previous.backoff, attempt, now, policy, cluster),
        }
    )


def fold_member(
    previous: MemberClusterStatus,
    observed: MemberObservation,
    now: datetime,
    *,
    policy: BackoffPolicy = DEFAULT_BACKOFF,
    cluster: str = "",
) -> MemberClusterStatus:
    """The new status of a reachable member after one reconcile; see the module docstring.
    ``policy`` and ``cluster`` (the jitter's seed) set failed entries' ``nextAttempt``."""
    progress = {p.blueprint: p for p in previous.blueprints}
    applied = {a.blueprint: a for a in previous.applied_revisions}
    addons: list[AddonState] = []
    last_error = ""
    for outcome in observed.outcomes:
        name = outcome.blueprint
        if isinstance(outcome, Backoff):
            addons += [a for a in previous.addons if a.blueprint == name]
            last_error = progress[name].message if name in progress else ""
            continue
        if isinstance(outcome, Unselected):
            if outcome.error:
                entry = progress.get(name) or BlueprintProgress(blueprint=name, version="", state="Failed")
                progress[name] = entry.model_copy(
                    update={
                        "state": "Failed",
                        "message": outcome.error[:MAX_MESSAGE],
                        "last_attempt": now,
                        "backoff": None,  # a prune is retried on every resync, from its inventory
                    }
                )
                last_error = outcome.error
            else:
                progress.pop(name, None)
                applied.pop(name, None)
            continue
        entry = _progress(outcome, progress.get(name), now, policy, f"{cluster}/{name}")
        progress[name] = entry
        if isinstance(outcome, Applied):
            addons += [
                AddonState(
                    name=a.name,
                    blueprint=name,
                    state=a.state,
                    message=a.message[:MAX_MESSAGE],
                    revision=outcome.version,
                )
                for a in outcome.result.addons
            ]
            old = applied.get(name)
            if outcome.result.ready and (old is None or old.version != outcome.version):
                applied[name] = AppliedRevision(
                    blueprint=name,
                    version=outcome.version,
                    revision=revision_name(name, outcome.version),
                    content_hash=outcome.content_hash,
                    applied_at=now,
                )
        if entry.state == "Failed":
            last_error = entry.message
    entries = sorted((p.model_copy(update={"current": None}) for p in progress.values()), key=lambda p: p.blueprint)
    revisions = sorted(applied.values(), key=lambda a: a.blueprint)
    all_ready = bool(entries) and all(p.state == "Ready" for p in entries)
    drifted = "; ".join(p.message for p in entries if p.state == "Drifted")
    if all_ready:
        reason = "Converged"
    elif drifted and not last_error:
        reason = "DriftHeld"
    else:
        reason = "NotConverged"
    ready_message = last_error or drifted or ("all blueprints applied" if all_ready else "converging")
    conditions = set_condition(
        previous.conditions, "Reachable", True, "Connected", f"Kubernetes {observed.kubernetes_version}", now
    )
    conditions = set_condition(conditions, "Ready", all_ready, reason, ready_message, now)
    restored = observed.restore_request if observed.restore and not last_error else previous.drift_restored
    return previous.model_copy(
        update={
            "reachable": True,
            "kubernetes_version": observed.kubernetes_version,
            "facts_summary": list(observed.pools),
            "blueprints": entries,
            "applied_revisions": revisions,
            "revision_summary": ", ".join(f"{a.blueprint}@{a.version}" for a in revisions),
            "addons": addons,
            "last_error": last_error[:MAX_MESSAGE],
            "drift_restored": restored,
            "conditions": conditions,
            "backoff": None,
        }
    )


def fold_in_progress(
    previous: MemberClusterStatus,
    blueprint: str,
    version: str,
    current: AddonProgress | None,
    now: datetime,
) -> MemberClusterStatus:
    """``blueprint``'s entry with the step in progress set (or cleared with None); see the module docstring."""
    entries = list(previous.blueprints)
    index = next((i for i, p in enumerate(entries) if p.blueprint == blueprint), None)
    if index is not None:
        entries[index] = entries[index].model_copy(update={"current": current})
    elif current is not None:
        entries.append(
            BlueprintProgress(blueprint=blueprint, version=version, state="Progressing", since=now, current=current)
        )
        entries.sort(key=lambda p: p.blueprint)
    else:
        return previous
    return previous.model_copy(update={"blueprints": entries})


def _progress(
    outcome: Applied | NotApplied, prev: BlueprintProgress | None, now: datetime, policy: BackoffPolicy, seed: str
) -> BlueprintProgress:
    """One Blueprint's progress entry after it was (or could not be) applied."""
    result = outcome.result if isinstance(outcome, Applied) else None
    message = outcome.error if isinstance(outcome, NotApplied) else (result.error if result else "")
    addon = ""
    if result is None:
        state = "Failed"
    elif result.ready:
        state = "Ready"
    elif result.drifted and not result.failed_addon:
        state = "Drifted"
        message = "; ".join(f"{a.name}: {a.message}" for a in result.addons if a.state == "Drifted")
    else:
        state, addon = "Failed", result.failed_addon
    same = prev is not None and prev.version == outcome.version and prev.state == state
    if result is not None and result.inventory is not None:
        inventory = result.inventory
    elif prev is not None:
        inventory = prev.inventory
    else:
        inventory = Inventory(blueprint=outcome.blueprint)
    return BlueprintProgress(
        blueprint=outcome.blueprint,
        version=outcome.version,
        state=state,
        failed_addon=addon,
        message=message[:MAX_MESSAGE],
        since=prev.since if same and prev is not None else now,
        last_attempt=now if state == "Failed" else (prev.last_attempt if same and prev is not None else None),
        backoff=(
            after_failure(prev.backoff if prev is not None else None, outcome.attempt, now, policy, seed)
            if state == "Failed"
            else None
        ),
        inventory=inventory,
        on_unselect=outcome.on_unselect,
    )


def pool_summaries(pools: Iterable[Any]) -> list[PoolSummary]:
    """The facts collector's pools as the status summarises them."""
    return [
        PoolSummary(
            pool=p.name,
            product=p.gpu_product,
            nodes=len(p.nodes),
            gpus=p.gpu_total,
            mig=p.mig_enabled,
            sandbox=p.sandbox,
        )
        for p in pools
    ]


# --- Blueprint --------------------------------------------------------------------------------


def fold_published(
    previous: BlueprintStatus, generation: int | None, revision: str, content_hash: str, version: str, now: datetime
) -> BlueprintStatus:
    """The Blueprint validated and its version is captured as ``revision``."""
    return previous.model_copy(
        update={
            "observed_generation": generation,
            "revision": revision,
            "content_hash": content_hash,
            "conditions": set_condition(
                previous.conditions, "Valid", True, "Published", f"version {version} is {revision}", now
            ),
        }
    )


def fold_invalid(
    previous: BlueprintStatus, generation: int | None, reason: str, message: str, now: datetime
) -> BlueprintStatus:
    """The Blueprint cannot be published (or rolled out): ``Valid`` false with the reason."""
    return previous.model_copy(
        update={
            "observed_generation": generation,
            "conditions": set_condition(previous.conditions, "Valid", False, reason, message, now),
        }
    )


def fold_rollout(
    previous: BlueprintStatus, decision: RolloutStatus, views: Sequence[ClusterView], target: str, now: datetime
) -> BlueprintStatus:
    """The rollout decision of this resync, with how many selected clusters are Ready at ``target``."""
    ready = sum(1 for v in views if v.applied_version == target and v.state == "Ready")
    complete = decision.phase == "Complete"
    conditions = set_condition(previous.conditions, "RollingOut", not complete, decision.phase, decision.message, now)
    conditions = set_condition(
        conditions,
        "Ready",
        complete and ready == len(views),
        decision.phase,
        f"{ready}/{len(views)} clusters ready at {target}",
        now,
    )
    return previous.model_copy(
        update={"rollout": decision, "matched_clusters": len(views), "ready_clusters": ready, "conditions": conditions}
    )


# --- patches ----------------------------------------------------------------------------------


def status_patch(current: Mapping[str, Any] | None, new: ApiModel, keys: Iterable[str]) -> dict[str, Any] | None:
    """The merge patch from the stored status (wire form) to ``new`` over the writer's ``keys``;
    None when nothing changed, so the caller makes no write call."""
    return merge_patch(current, new.to_wire(), keys) or None
