"""One GitSource sync: fetch → validate → plan → apply Blueprints → status.

Guarantees, and where each one lives:

* **Atomic per commit.** Everything that can refuse a commit is checked before the first
  write: the content rules and schema validation (``content.py``), names owned by another
  GitSource or created outside git, content changed without a new ``spec.version``, and a
  version already published with other content. Any problem → nothing of that commit is
  applied, the previous commit's Blueprints stay in force, and the status names file, line
  and reason. (The API server has no multi-object transactions: if a write itself fails
  half-way, the commit is not recorded as applied and the next sync finishes the job.)
* **No write when nothing changed.** Desired Blueprints are compared with what is stored
  (spec, and the labels and annotations this field manager owns); only differences are
  applied, and the status is patched only when it differs. ``blueprintd.io/git-commit`` on a
  Blueprint is therefore the commit that last changed *that* Blueprint; a commit touching
  other files does not rewrite it.
* **Reverts reuse revisions.** The spec applied is exactly the set fields of the file in JSON
  types (normalised the way the API server stores numbers), so the same file content always
  produces the same stored spec, the same content hash, and — through the operator's
  publish — the existing ``<name>-v<version>`` BlueprintRevision.
* **Provenance.** Each Blueprint carries ``blueprintd.io/git-repo``, ``blueprintd.io/git-commit``
  and ``blueprintd.io/git-path`` (which the operator copies into the revision) and the label
  ``blueprintd.io/gitsource=<name>`` that marks ownership.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from blueprintd.api import GROUP, VERSION
from blueprintd.api.gitsource import GitSource, GitSourceSpec
from blueprintd.api.issues import Issue
from blueprintd.api.revision import revision_name
from blueprintd.cluster.management import ManagementStore
from blueprintd.errors import BlueprintdError, ClusterError
from blueprintd.gitsource import content
from blueprintd.gitsource.content import Evaluation, GitBlueprint, Limits
from blueprintd.gitsource.credentials import Credentials, GitSourceError, redact
from blueprintd.gitsource.fetch import GIT_TIMEOUT_S, FetchResult, GitFetcher

log = logging.getLogger("blueprintd.gitsource")

FIELD_MANAGER = "blueprintd-gitsource"
SOURCE_LABEL = "blueprintd.io/gitsource"
ANN_REPO = "blueprintd.io/git-repo"
ANN_COMMIT = "blueprintd.io/git-commit"
ANN_PATH = "blueprintd.io/git-path"
WEBHOOK_KEY = "token"
MAX_ERRORS = 20


@dataclass(frozen=True)
class SyncOptions:
    """Limits and transport rules for every sync of one operator."""

    limits: Limits = field(default_factory=Limits)
    allow_file_urls: bool = False
    git_timeout: float = GIT_TIMEOUT_S


@dataclass
class SyncOutcome:
    """What one sync did (for the caller's logs and tests; the truth is in the status)."""

    commit: str | None = None
    applied: bool = False
    written: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    error: str = ""


# --- pure planning ----------------------------------------------------------------------


@dataclass
class SyncPlan:
    """The writes that bring the namespace to one commit, or the issues that refuse it."""

    issues: list[Issue] = field(default_factory=list)
    apply: list[dict[str, Any]] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    orphaned: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)


def as_stored(value: Any) -> Any:
    """``value`` as the API server stores it: JSON numbers without a fraction become integers.

    Applying the stored form makes "is it different?" an exact comparison, and keeps the hash
    the operator computes from the stored object identical for identical file content.
    """
    if isinstance(value, dict):
        return {k: as_stored(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_stored(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def desired_object(source: str, url: str, commit: str, namespace: str, bp: GitBlueprint) -> dict[str, Any]:
    """The Blueprint as this GitSource applies it (server-side apply body)."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Blueprint",
        "metadata": {
            "name": bp.name,
            "namespace": namespace,
            "labels": {**bp.labels, SOURCE_LABEL: source},
            "annotations": {**bp.annotations, ANN_REPO: url, ANN_COMMIT: commit, ANN_PATH: bp.file},
        },
        "spec": as_stored(bp.spec),
    }


def _owned_keys(live: dict[str, Any], section: str) -> set[str]:
    """Label or annotation keys that ``FIELD_MANAGER`` owns on ``live`` (from managedFields)."""
    keys: set[str] = set()
    for entry in (live.get("metadata") or {}).get("managedFields") or []:
        if entry.get("manager") != FIELD_MANAGER or entry.get("operation") != "Apply":
            continue
        fields = ((entry.get("fieldsV1") or {}).get("f:metadata") or {}).get(f"f:{section}") or {}
        keys |= {k[2:] for k in fields if k.startswith("f:")}
    return keys


def needs_apply(live: dict[str, Any], desired: dict[str, Any]) -> bool:
    """Whether applying ``desired`` would change ``live`` (the commit annotation alone does not count)."""
    if (live.get("spec") or {}) != desired["spec"]:
        return True
    meta = live.get("metadata") or {}
    for section in ("labels", "annotations"):
        want: dict[str, str] = dict(desired["metadata"][section])
        have: dict[str, str] = dict(meta.get(section) or {})
        owned = _owned_keys(live, section)
        if section == "annotations":
            if ANN_COMMIT not in have:
                return True
            want.pop(ANN_COMMIT)
            owned.discard(ANN_COMMIT)
        if owned != set(want) or any(have.get(k) != v for k, v in want.items()):
            return True
    return False


def plan_sync(
    source: str,
    spec: GitSourceSpec,
    commit: str,
    namespace: str,
    desired: list[GitBlueprint],
    live: list[dict[str, Any]],
    published: dict[str, str],
) -> SyncPlan:
    """Decide the writes for one commit (pure).

    ``published`` maps revision names to their content hashes, for the versions ``desired``
    uses. Returns issues (and no writes) when the commit cannot be applied as a whole.
    """
    plan = SyncPlan(names=sorted(b.name for b in desired))
    by_name = {obj["metadata"]["name"]: obj for obj in live}
    for bp in desired:
        obj = desired_object(source, spec.url, commit, namespace, bp)
        current = by_name.get(bp.name)

        def refuse(message: str, bp: GitBlueprint = bp) -> None:
            plan.issues.append(Issue(message, ("metadata", "name"), source=bp.file, line=bp.line))

        if current is not None:
            owner = ((current.get("metadata") or {}).get("labels") or {}).get(SOURCE_LABEL)
            if owner != source:
                if owner:
                    refuse(
                        f"Blueprint {bp.name!r} is managed by GitSource {owner!r}, not by GitSource {source!r}; "
                        "it is not taken over (rename it, or remove it from one of the two sources)"
                    )
                else:
                    refuse(
                        f"Blueprint {bp.name!r} already exists and was not created by a GitSource (kubectl?); "
                        f"GitSource {source!r} does not take it over: delete it, or label it "
                        f"{SOURCE_LABEL}={source} to hand it to this source"
                    )
                continue
            live_spec = current.get("spec") or {}
            if live_spec.get("version") == bp.blueprint.spec.version and live_spec != obj["spec"]:
                refuse(
                    f"Blueprint {bp.name!r}: the content changed but spec.version is still "
                    f"{bp.blueprint.spec.version}; bump spec.version (semver) to publish new content"
                )
                continue
        rev = revision_name(bp.name, bp.blueprint.spec.version)
        digest = published.get(rev)
        if digest is not None and digest != content_hash(obj["spec"], bp.name):
            refuse(
                f"Blueprint {bp.name!r}: version {bp.blueprint.spec.version} was already published with "
                f"different content ({rev}); bump spec.version, or restore the published content"
            )
            continue
        if current is None or needs_apply(current, obj):
            plan.apply.append(obj)
    wanted = set(plan.names)
    for obj in live:
        meta = obj.get("metadata") or {}
        if (meta.get("labels") or {}).get(SOURCE_LABEL) != source or meta["name"] in wanted:
            continue
        if meta.get("deletionTimestamp"):
            continue
        if spec.prune_policy == "delete":
            plan.delete.append(meta["name"])
        else:
            plan.orphaned.append(meta["name"])
    if plan.issues:
        plan.apply, plan.delete = [], []
    plan.delete.sort()
    plan.orphaned.sort()
    return plan


def content_hash(spec: dict[str, Any], name: str) -> str:
    """The hash the operator will compute for a Blueprint stored with ``spec``."""
    from blueprintd.api.blueprint import Blueprint

    model = Blueprint.model_validate(
        {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Blueprint", "metadata": {"name": name}, "spec": spec}
    )
    return model.content_hash()


# --- status ---------------------------------------------------------------------------------


def iso(t: datetime) -> str:
    return t.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _condition(
    type_: str, ok: bool, reason: str, message: str, previous: list[dict[str, Any]], now: datetime
) -> dict[str, Any]:
    """A condition that keeps lastTransitionTime while its status does not flip."""
    status = "True" if ok else "False"
    old = next((c for c in previous if c.get("type") == type_), None)
    since = old["lastTransitionTime"] if old and old.get("status") == status else iso(now)
    return {"type": type_, "status": status, "reason": reason, "message": message[:2048], "lastTransitionTime": since}


def _error_entries(issues: list[Issue]) -> list[dict[str, Any]]:
    out = []
    for issue in issues[:MAX_ERRORS]:
        message = issue.message if not issue.field else f"{issue.field}: {issue.message}"
        if issue.allowed:
            message += f" (allowed: {issue.allowed})"
        entry: dict[str, Any] = {"file": issue.source, "message": message[:4096]}
        if issue.line is not None:
            entry["line"] = issue.line
        out.append(entry)
    return out


def _where(entry: dict[str, Any]) -> str:
    where = entry.get("file") or ""
    if entry.get("line") is not None:
        where += f":{entry['line']}"
    return f"{where}: " if where else ""


async def _write_status(store: ManagementStore, source: dict[str, Any], status: dict[str, Any], now: datetime) -> bool:
    """Patch status when something other than the time changed; True when written."""
    current = source.get("status") or {}
    if all(_same(current.get(k), v) for k, v in status.items()):
        return False
    return await store.patch_status("GitSource", source, {**status, "lastSyncTime": iso(now)})


def _same(a: Any, b: Any) -> bool:
    import json

    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


# --- adapters -------------------------------------------------------------------------------


async def read_secret(store: ManagementStore, ref_name: str, ref_namespace: str | None) -> dict[str, str]:
    """Decoded data of a Secret in the GitSource's own namespace (others are refused)."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    if ref_namespace not in (None, "", store.namespace):
        raise GitSourceError(
            f"Secret {ref_namespace}/{ref_name}: a GitSource may only use Secrets of its own namespace "
            f"({store.namespace})"
        )
    core = client.CoreV1Api(store.api_client)
    try:
        secret = await asyncio.to_thread(core.read_namespaced_secret, ref_name, store.namespace)
    except ApiException as exc:
        raise ClusterError(f"Secret {store.namespace}/{ref_name}: {exc.reason}") from None
    out: dict[str, str] = {}
    for key, value in (secret.data or {}).items():
        try:
            out[key] = base64.b64decode(value).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            raise GitSourceError(f"Secret {store.namespace}/{ref_name}: key {key!r} is not UTF-8 text") from None
    return out


async def _apply(store: ManagementStore, obj: dict[str, Any]) -> None:
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    api = client.CustomObjectsApi(store.api_client)
    try:
        await asyncio.to_thread(
            api.patch_namespaced_custom_object,
            GROUP,
            VERSION,
            store.namespace,
            "blueprints",
            obj["metadata"]["name"],
            obj,
            field_manager=FIELD_MANAGER,
            force=True,
            _content_type="application/apply-patch+yaml",
        )
    except ApiException as exc:
        raise ClusterError(f"applying Blueprint {obj['metadata']['name']}: {_reason(exc)}") from None


async def _delete(store: ManagementStore, name: str) -> None:
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    api = client.CustomObjectsApi(store.api_client)
    try:
        await asyncio.to_thread(
            api.delete_namespaced_custom_object, GROUP, VERSION, store.namespace, "blueprints", name
        )
    except ApiException as exc:
        if exc.status != 404:
            raise ClusterError(f"deleting Blueprint {name}: {_reason(exc)}") from None


def _reason(exc: Any) -> str:
    import json

    try:
        return str(json.loads(exc.body).get("message") or exc.reason)
    except (TypeError, ValueError):
        return f"{exc.status} {exc.reason}"


def _evaluate(fetcher: GitFetcher, fetched: FetchResult, path: str, options: SyncOptions, ns: str) -> Evaluation:
    with fetcher.open(fetched) as snap:
        try:
            entries = snap.entries(path)
        except GitSourceError as exc:
            return Evaluation(issues=[Issue(str(exc))])
        return content.evaluate(entries, path, snap.read, snap.link_at, options.limits, ns)


# --- the sync ---------------------------------------------------------------------------------


async def sync_gitsource(
    store: ManagementStore,
    source: dict[str, Any],
    cache_dir: Path,
    now: datetime,
    options: SyncOptions | None = None,
) -> SyncOutcome:
    """Bring the namespace's Blueprints to the GitSource's current commit, or say why not."""
    options = options or SyncOptions()
    meta = source["metadata"]
    name = meta["name"]
    status = dict(source.get("status") or {})
    conds: list[dict[str, Any]] = list(status.get("conditions") or [])
    generation = meta.get("generation")
    out = SyncOutcome()

    async def refuse(
        reason: str, issues: list[Issue], fetched: str | None, fetch_ok: bool, summary: str
    ) -> SyncOutcome:
        errors = _error_entries(issues)
        first = errors[0] if errors else {"file": "", "message": summary}
        kept = status.get("lastAppliedCommit") or ""
        more = f" (+{len(issues) - 1} more)" if len(issues) > 1 else ""
        message = f"{summary}: {_where(first)}{first['message']}{more}"
        if kept:
            message += f"; commit {kept[:12]} stays applied"
        new = {
            "observedGeneration": generation,
            "lastFetchedCommit": fetched or status.get("lastFetchedCommit") or "",
            "lastError": first,
            "errors": errors,
            "conditions": sorted(
                [c for c in conds if c.get("type") not in ("Fetched", "Ready")]
                + [
                    _condition(
                        "Fetched",
                        fetch_ok,
                        "Fetched" if fetch_ok else reason,
                        f"fetched {fetched[:12]}" if fetch_ok and fetched else message,
                        conds,
                        now,
                    ),
                    _condition("Ready", False, reason, message, conds, now),
                ],
                key=lambda c: str(c["type"]),
            ),
        }
        if await _write_status(store, source, new, now):
            await store.event(source, reason, message, "Warning")
            log.warning("GitSource %s: %s", name, message)
        out.issues, out.error, out.commit = issues, message, fetched
        return out

    try:
        model = GitSource.model_validate(source)
    except ValidationError as exc:
        text = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])
        return await refuse("InvalidSpec", [Issue(text)], None, False, "invalid GitSource spec")
    spec = model.spec
    fetcher = GitFetcher(cache_dir, allow_file_urls=options.allow_file_urls, timeout=options.git_timeout)
    creds = Credentials()
    try:
        if spec.secret_ref is not None:
            data = await read_secret(store, spec.secret_ref.name, spec.secret_ref.namespace)
            creds = Credentials.from_secret_data(data)
        fetched = await asyncio.to_thread(fetcher.fetch, spec.url, spec.ref, creds)
    except BlueprintdError as exc:
        message = redact(str(exc), creds.secrets())
        return await refuse("FetchFailed", [Issue(message)], None, False, "fetch failed")
    commit = fetched.commit
    out.commit = commit
    if fetched.rewritten and fetched.previous:
        await store.event(
            source,
            "HistoryRewritten",
            f"{fetched.ref} moved from {fetched.previous[:12]} to {commit[:12]}, which does not contain it "
            "(force push); the new head is validated like any other commit",
            "Warning",
        )
    evaluation = await asyncio.to_thread(_evaluate, fetcher, fetched, spec.path, options, store.namespace)
    if not evaluation.ok:
        return await refuse("ValidationFailed", evaluation.issues, commit, True, f"commit {commit[:12]} refused")

    live = await store.list("Blueprint")
    published: dict[str, str] = {}
    for bp in evaluation.blueprints:
        rev_name = revision_name(bp.name, bp.blueprint.spec.version)
        rev = await store.get("BlueprintRevision", rev_name)
        if rev is not None:
            published[rev_name] = str((rev.get("spec") or {}).get("contentHash", ""))
    plan = plan_sync(name, spec, commit, store.namespace, evaluation.blueprints, live, published)
    if plan.issues:
        return await refuse("Conflict", plan.issues, commit, True, f"commit {commit[:12]} refused")

    try:
        for obj in plan.apply:
            await _apply(store, obj)
            out.written.append(obj["metadata"]["name"])
        for victim in plan.delete:
            await _delete(store, victim)
            out.deleted.append(victim)
    except ClusterError as exc:
        return await refuse("ApplyFailed", [Issue(str(exc))], commit, True, f"applying commit {commit[:12]} failed")

    count = len(plan.names)
    message = f"{count} Blueprint{'s' if count != 1 else ''} at {commit[:12]} ({fetched.ref})"
    if plan.orphaned:
        message += f"; kept (no longer in git): {', '.join(plan.orphaned)}"
    new = {
        "observedGeneration": generation,
        "lastFetchedCommit": commit,
        "lastAppliedCommit": commit,
        "lastError": None,
        "errors": [],
        "blueprints": plan.names,
        "orphanedBlueprints": plan.orphaned,
        "conditions": sorted(
            [c for c in conds if c.get("type") not in ("Fetched", "Ready")]
            + [
                _condition("Fetched", True, "Fetched", f"fetched {commit[:12]} ({fetched.ref})", conds, now),
                _condition("Ready", True, "Applied", message, conds, now),
            ],
            key=lambda c: str(c["type"]),
        ),
    }
    previous_commit = status.get("lastAppliedCommit")
    await _write_status(store, source, new, now)
    if previous_commit != commit and (out.written or out.deleted or not previous_commit):
        detail = f"applied {', '.join(out.written) or 'no changes'}"
        if out.deleted:
            detail += f"; deleted {', '.join(out.deleted)}"
        await store.event(source, "Synced", f"commit {commit[:12]}: {detail}")
        log.info("GitSource %s: commit %s: %s", name, commit[:12], detail)
    out.applied = True
    return out
