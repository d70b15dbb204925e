"""Operator settings: flags and environment, one immutable object passed to the controller."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


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

    @classmethod
    def from_env(cls, **overrides: object) -> OperatorSettings:
        env = os.environ
        base: dict[str, object] = {
            "namespace": env.get("BLUEPRINTD_NAMESPACE", cls.namespace),
            "chart_mirrors": parse_mirrors([env.get("BLUEPRINTD_CHART_MIRRORS", "")]),
            "member_resync_seconds": float(env.get("BLUEPRINTD_MEMBER_RESYNC", cls.member_resync_seconds)),
            "metrics_port": int(env.get("BLUEPRINTD_METRICS_PORT", cls.metrics_port)),
        }
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**base)  # type: ignore[arg-type]
