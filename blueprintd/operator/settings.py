"""Operator settings: flags and environment, one immutable object passed to the controller."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from blueprintd.api.cel import CelBudget
from blueprintd.api.limits import BlueprintLimits


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


@dataclass(frozen=True)
class OperatorSettings:
    namespace: str = "blueprintd-system"
    chart_mirrors: dict[str, str] = field(default_factory=dict)
    helm: Path = Path("helm")
    workdir: Path = Path("/tmp/blueprintd-operator")
    member_resync_seconds: float = 10.0
    rollout_resync_seconds: float = 2.0
    failure_retry_seconds: float = 30.0
    metrics_port: int = 0  # 0: no metrics endpoint
    webhook_port: int = 0  # 0: no GitSource push-webhook receiver
    peering: str | None = None  # kopf peering name for HA; None: standalone
    kubeconfig: str | None = None  # management cluster; None: in-cluster credentials
    # Untrusted Blueprint content (docs/blueprints.md, "Limits"): validate-time limits, and the
    # CEL budget every render runs under.
    blueprint_limits: BlueprintLimits = field(default_factory=BlueprintLimits)
    cel_budget: CelBudget = field(default_factory=CelBudget)

    @classmethod
    def from_env(cls, **overrides: object) -> OperatorSettings:
        env = os.environ
        base: dict[str, object] = {
            "namespace": env.get("BLUEPRINTD_NAMESPACE", cls.namespace),
            "chart_mirrors": parse_mirrors([env.get("BLUEPRINTD_CHART_MIRRORS", "")]),
            "member_resync_seconds": float(env.get("BLUEPRINTD_MEMBER_RESYNC", cls.member_resync_seconds)),
            "metrics_port": int(env.get("BLUEPRINTD_METRICS_PORT", cls.metrics_port)),
            **limits_from_env(env),
        }
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**base)  # type: ignore[arg-type]


def limits_from_env(env: Mapping[str, str]) -> dict[str, object]:
    """``BLUEPRINTD_CEL_COST_LIMIT`` (validate-time estimate), ``BLUEPRINTD_CEL_COST_BUDGET`` and
    ``BLUEPRINTD_RENDER_TIMEOUT`` (runtime) over their defaults."""
    limits, budget = BlueprintLimits(), CelBudget()
    if env.get("BLUEPRINTD_CEL_COST_LIMIT"):
        limits = replace(limits, cel_cost=int(env["BLUEPRINTD_CEL_COST_LIMIT"]))
    if env.get("BLUEPRINTD_CEL_COST_BUDGET"):
        budget = replace(budget, cost=int(env["BLUEPRINTD_CEL_COST_BUDGET"]))
    if env.get("BLUEPRINTD_RENDER_TIMEOUT"):
        budget = replace(budget, timeout_seconds=float(env["BLUEPRINTD_RENDER_TIMEOUT"]))
    return {"blueprint_limits": limits, "cel_budget": budget}
