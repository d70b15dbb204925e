"""Operator settings: flags and environment, one immutable object passed to the controller.

This is the only place the operator reads its environment. Everything below it (controller,
drift monitor, GitSource runner, logging setup, the management client) gets its values from
an ``OperatorSettings`` handed down, so a test builds one and the code under test cannot see
a stray variable of the machine it runs on.

Environment variables (flags of ``blueprintd operator`` win over them):

* ``BLUEPRINTD_NAMESPACE``, ``BLUEPRINTD_CHART_MIRRORS``, ``BLUEPRINTD_METRICS_PORT``,
  ``BLUEPRINTD_WEBHOOK_PORT``, ``BLUEPRINTD_MEMBER_RESYNC``: as the flags.
* ``KUBECONFIG``: the management cluster when ``--kubeconfig`` is not given.
* ``BLUEPRINTD_OPERATOR_USER``: the operator's user name on members (block-mode admission
  policies exempt it); empty: asked from each member (SelfSubjectReview).
* ``BLUEPRINTD_DRIFT_RESYNC``: seconds between full drift re-reads of each member.
* ``BLUEPRINTD_PROGRESS_INTERVAL``: seconds between looks at what a running add-on step waits
  for (MemberCluster ``status.blueprints[].current``).
* ``BLUEPRINTD_GIT_ALLOW_FILE_URLS``: ``1`` allows file:// GitSources (development, tests).
* ``BLUEPRINTD_DEBUG``: debug logging.
* ``BLUEPRINTD_REPLICA_ID`` (else ``POD_NAME``, else host name plus a random suffix): this
  replica's id in its heartbeat Lease, in MemberCluster ``status.shard`` and in the
  User-Agent of its calls to members.
* ``BLUEPRINTD_SHARDS``: ``1`` shards members over replicas by Leases (docs/ha.md), as ``--shards``.
* ``BLUEPRINTD_BACKOFF_BASE``, ``BLUEPRINTD_BACKOFF_CAP``: seconds; the retry backoff after a
  failed install or an unreachable member (``operator/backoff.py``; flags ``--backoff-base``,
  ``--backoff-cap``).
* ``BLUEPRINTD_CEL_COST_LIMIT``, ``BLUEPRINTD_CEL_COST_BUDGET``, ``BLUEPRINTD_RENDER_TIMEOUT``:
  the limits on untrusted Blueprint content (docs/blueprints.md, "Limits").
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from blueprintd.api.cel import CelBudget
from blueprintd.api.limits import BlueprintLimits
from blueprintd.operator.backoff import BackoffPolicy

DEFAULT_DRIFT_RESYNC_SECONDS = 300.0  # the drift monitor's full relist; watches carry changes between
DEFAULT_SHARD_LEASE_SECONDS = 15
MIN_SHARD_LEASE_SECONDS = 3  # renewed every third of it: below 1 s per renewal, a busy API server lags


def random_replica_id() -> str:
    """Host name plus a random suffix: several replicas on one host must differ."""
    return f"{socket.gethostname().split('.')[0]}-{uuid.uuid4().hex[:6]}"


def parse_mirrors(items: list[str]) -> dict[str, str]:
    """``UPSTREAM=MIRROR`` pairs (flags or the comma-separated env var) → mapping."""
    out: dict[str, str] = {}
    for item in items:
        for part in item.split(","):
            part = part.strip()
            if not part:
                continue
            if "=" not in part:
                raise ValueError(f"chart mirror {part!r}: expected UPSTREAM_URL=MIRROR_URL")
            upstream, mirror = part.split("=", 1)
            out[upstream.strip()] = mirror.strip()
    return out


def _flag(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes")


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r}: expected a number of seconds") from None


def _integer(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r}: expected a whole number") from None


@dataclass(frozen=True)
class OperatorSettings:
    namespace: str = "blueprintd-system"
    chart_mirrors: dict[str, str] = field(default_factory=dict)
    helm: Path = Path("helm")
    workdir: Path = Path("/tmp/blueprintd-operator")
    member_resync_seconds: float = 10.0
    # A converged member whose watches saw no change skips its resync (operator/quiet.py), but
    # is reconciled in full at least this often (what no watch covers: ResourceSlices …).
    member_full_resync_seconds: float = 300.0
    rollout_resync_seconds: float = 2.0
    # Failed installs and unreachable members are retried after base * 2^(n-1) seconds, capped.
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    chart_preflight: bool = True  # template each new version's charts before it rolls out
    metrics_port: int = 0  # 0: no metrics endpoint
    webhook_port: int = 0  # 0: no GitSource push-webhook receiver
    peering: str | None = None  # kopf peering name for HA; None: standalone
    kubeconfig: str | None = None  # management cluster; None: in-cluster credentials
    operator_user: str = ""  # the operator's user on members; "": ask each member
    drift_resync_seconds: float = DEFAULT_DRIFT_RESYNC_SECONDS
    progress_interval_seconds: float = 5.0  # how often a running add-on step's waits are observed
    git_allow_file_urls: bool = False
    debug: bool = False
    # Sharding (docs/ha.md): members spread over the live replicas by their heartbeat Leases.
    sharding: bool = False
    replica_id: str = ""  # "": unsharded and unnamed; from_env names every sharded replica
    shard_lease_seconds: int = DEFAULT_SHARD_LEASE_SECONDS
    # Untrusted Blueprint content (docs/blueprints.md, "Limits"): validate-time limits, and the
    # CEL budget every render runs under.
    blueprint_limits: BlueprintLimits = field(default_factory=BlueprintLimits)
    cel_budget: CelBudget = field(default_factory=CelBudget)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> OperatorSettings:
        """Settings from the environment (``os.environ`` unless given), then ``overrides``
        (the command-line flags; None means "not given"). ``backoff_base_seconds`` and
        ``backoff_cap_seconds`` override the backoff policy's numbers."""
        env = os.environ if env is None else env
        default = BackoffPolicy()
        base_s = overrides.pop("backoff_base_seconds", None)
        cap_s = overrides.pop("backoff_cap_seconds", None)
        backoff = BackoffPolicy(
            base_seconds=float(base_s) if isinstance(base_s, int | float) else _number(
                env, "BLUEPRINTD_BACKOFF_BASE", default.base_seconds
            ),
            cap_seconds=float(cap_s) if isinstance(cap_s, int | float) else _number(
                env, "BLUEPRINTD_BACKOFF_CAP", default.cap_seconds
            ),
        )
        base: dict[str, object] = {
            "namespace": env.get("BLUEPRINTD_NAMESPACE") or cls.namespace,
            "chart_mirrors": parse_mirrors([env.get("BLUEPRINTD_CHART_MIRRORS", "")]),
            "member_resync_seconds": _number(env, "BLUEPRINTD_MEMBER_RESYNC", cls.member_resync_seconds),
            "member_full_resync_seconds": _number(
                env, "BLUEPRINTD_MEMBER_FULL_RESYNC", cls.member_full_resync_seconds
            ),
            "metrics_port": int(_number(env, "BLUEPRINTD_METRICS_PORT", cls.metrics_port)),
            "webhook_port": int(_number(env, "BLUEPRINTD_WEBHOOK_PORT", cls.webhook_port)),
            "kubeconfig": env.get("KUBECONFIG") or None,
            "operator_user": env.get("BLUEPRINTD_OPERATOR_USER", ""),
            "drift_resync_seconds": _number(env, "BLUEPRINTD_DRIFT_RESYNC", DEFAULT_DRIFT_RESYNC_SECONDS),
            "progress_interval_seconds": _number(env, "BLUEPRINTD_PROGRESS_INTERVAL", cls.progress_interval_seconds),
            "git_allow_file_urls": _flag(env.get("BLUEPRINTD_GIT_ALLOW_FILE_URLS", "")),
            "debug": bool(env.get("BLUEPRINTD_DEBUG")),
            "sharding": _flag(env.get("BLUEPRINTD_SHARDS", "")),
            "replica_id": env.get("BLUEPRINTD_REPLICA_ID") or env.get("POD_NAME") or "",
            "backoff": backoff,
            **limits_from_env(env),
        }
        base.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**base)  # type: ignore[arg-type]
        if settings.sharding and not settings.replica_id:
            settings = replace(settings, replica_id=random_replica_id())
        settings.check_sharding()
        return settings

    def check_sharding(self) -> None:
        """Refuse combinations that cannot work, naming the flag to change."""
        if not self.sharding:
            return
        if self.peering:
            raise ValueError(
                "--shards and --peering exclude each other: kopf peering keeps all but one replica idle, "
                "sharding keeps every replica busy; drop --peering"
            )
        if self.shard_lease_seconds < MIN_SHARD_LEASE_SECONDS:
            raise ValueError(
                f"--shard-lease-seconds {self.shard_lease_seconds}: must be at least {MIN_SHARD_LEASE_SECONDS}"
            )
        if not self.replica_id:
            raise ValueError("the replica id is empty: give each replica a distinct --replica-id")


def limits_from_env(env: Mapping[str, str]) -> dict[str, object]:
    """``BLUEPRINTD_CEL_COST_LIMIT`` (validate-time estimate), ``BLUEPRINTD_CEL_COST_BUDGET`` and
    ``BLUEPRINTD_RENDER_TIMEOUT`` (runtime) over their defaults."""
    limits, budget = BlueprintLimits(), CelBudget()
    limits = replace(limits, cel_cost=_integer(env, "BLUEPRINTD_CEL_COST_LIMIT", limits.cel_cost))
    budget = replace(
        budget,
        cost=_integer(env, "BLUEPRINTD_CEL_COST_BUDGET", budget.cost),
        timeout_seconds=_number(env, "BLUEPRINTD_RENDER_TIMEOUT", budget.timeout_seconds),
    )
    return {"blueprint_limits": limits, "cel_budget": budget}
