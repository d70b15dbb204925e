"""Run the chart pre-flight over rendered states: plan (pure), pull + template (helm), read.

Used by ``blueprintd validate --charts`` and by the operator before a version rolls out;
both get the same ``PreflightReport``. A chart that cannot be pulled is reported as
``unavailable`` for its add-on only: every other add-on is still checked.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from blueprintd.api.blueprint import Blueprint
from blueprintd.api.cel import CelBudget
from blueprintd.api.common import matches
from blueprintd.api.facts import ClusterFacts
from blueprintd.api.limits import DEFAULT_LIMITS, BlueprintLimits
from blueprintd.preflight.check import (
    ChartCheck,
    PreflightReport,
    Problem,
    plan_checks,
    template_problems,
    unknown_key_problems,
)
from blueprintd.preflight.helm import CachedChart, ChartUnavailable, HelmPreflight
from blueprintd.render import RenderOptions, compile_blueprint, render
from blueprintd.render.desired import DesiredState, HelmRelease

# (repo, chart, version, release, namespace, values hash) -> (problems, objects rendered)
Memo = dict[tuple[str, ...], tuple[list[Problem], int]]


def run_preflight(
    states: Iterable[DesiredState], helm: HelmPreflight, memo: Memo | None = None, workers: int = 4
) -> PreflightReport:
    """Template every distinct (add-on, values) of ``states`` with its pinned chart.

    Checks run ``workers`` at a time (each is a helm process). ``memo`` (the operator keeps
    one) remembers each verdict by chart and values, so a version is templated once however
    often it is published or resumed, and a chart only remembered verdicts need is not even
    read from the cache; a chart that could not be pulled is not remembered (the next attempt
    may get it)."""
    planned = plan_checks(states)
    todo: list[tuple[ChartCheck, HelmRelease, tuple[str, ...]]] = []
    for check, release in planned:
        key = (check.repo, check.chart, check.version, check.release, check.namespace, check.values_hash)
        if memo is not None and key in memo:
            problems, check.objects = memo[key]
            check.problems.extend(p.model_copy() for p in problems)
        else:
            todo.append((check, release, key))

    def one(item: tuple[ChartCheck, HelmRelease, tuple[str, ...]]) -> None:
        check, release, key = item
        cached = charts[(release.repo, release.chart, release.version)]
        if isinstance(cached, str):
            check.problems.append(Problem(kind="unavailable", message=cached))
            return
        result = helm.template(cached, release.release_name, release.namespace, release.values)
        if not result.ok:
            check.problems.extend(template_problems(result.stderr))
        else:
            check.objects = result.objects
        if not cached.has_schema:
            check.problems.extend(unknown_key_problems(release.values, cached.defaults, release.chart))
        if memo is not None:
            memo[key] = ([p.model_copy() for p in check.problems], check.objects)

    # Charts first, one pull (or cache read) each, in parallel across charts; then the
    # templates in parallel. A chart that cannot be pulled is tried once per run.
    wanted = sorted({(r.repo, r.chart, r.version) for _c, r, _k in todo})
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        charts = dict(zip(wanted, pool.map(lambda key: _chart(helm, *key), wanted), strict=True))
        list(pool.map(one, todo))
    return PreflightReport(checks=[check for check, _r in planned])


def _chart(helm: HelmPreflight, repo: str, chart: str, version: str) -> CachedChart | str:
    """The cached chart (pulled when missing), or why it cannot be had."""
    try:
        return helm.chart(repo, chart, version)
    except ChartUnavailable as exc:
        return str(exc)


def refusal(report: PreflightReport) -> str:
    """Why a version must not roll out, or "" when it may (``PreflightReport.refusal``)."""
    return report.refusal()


def render_states(
    blueprint: Blueprint,
    clusters: Sequence[tuple[ClusterFacts, Mapping[str, Any]]],
    mirrors: Mapping[str, str],
    limits: BlueprintLimits = DEFAULT_LIMITS,
    cel_budget: CelBudget | None = None,
) -> list[DesiredState]:
    """``blueprint`` rendered for each (facts, per-cluster parameters), as the operator would
    (same limits and CEL budget); clusters the Blueprint does not select are skipped."""
    compiled = compile_blueprint(blueprint, limits)
    budget = cel_budget or CelBudget()
    return [
        render(
            compiled,
            facts,
            RenderOptions(chart_mirrors=dict(mirrors), parameters=dict(params), cel_budget=budget),
        )
        for facts, params in clusters
        if matches(blueprint.spec.cluster_selector, facts.cluster_labels)
    ]
