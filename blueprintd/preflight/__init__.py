"""Chart pre-flight: template every Helm add-on's pinned chart with the values blueprintd
rendered, before anything reaches a cluster (``blueprintd validate --charts``, and the operator
at publish time). ``check`` is pure, ``helm`` is the adapter, ``run`` joins them."""

from blueprintd.preflight.check import ChartCheck, PreflightReport, Problem, plan_checks, values_hash
from blueprintd.preflight.helm import ChartUnavailable, HelmPreflight, default_cache_dir
from blueprintd.preflight.run import run_preflight

__all__ = [
    "ChartCheck",
    "ChartUnavailable",
    "HelmPreflight",
    "PreflightReport",
    "Problem",
    "default_cache_dir",
    "plan_checks",
    "run_preflight",
    "values_hash",
]
