"""What a running add-on step waits for, without an API server: the pure derivation
(observed objects → waitingFor) and the watch's publishing contract (start, changes only, end)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from blueprintd.api.membercluster import AddonProgress, WaitItem
from blueprintd.cluster.progress import StepWatch, step_kind, waiting_for
from blueprintd.render.desired import HelmRelease, Step

REL, NS = "gatekeeper", "gatekeeper-system"
OWNED = {"meta.helm.sh/release-name": REL, "meta.helm.sh/release-namespace": NS}


def obj(kind: str, name: str, ns: str | None = NS, *, annotations: dict[str, str] | None = None,
        labels: dict[str, str] | None = None, status: dict[str, Any] | None = None,
        spec: dict[str, Any] | None = None, generation: int | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "annotations": annotations or {}, "labels": labels or {}}
    if ns:
        meta["namespace"] = ns
    if generation is not None:
        meta["generation"] = generation
    return {"kind": kind, "metadata": meta, "status": status or {}, "spec": spec or {}}


def hook_job(name: str, hook: str = "pre-install", *, complete: bool = False, failed: bool = False,
             **kw: Any) -> dict[str, Any]:
    conds = []
    if complete:
        conds.append({"type": "Complete", "status": "True"})
    if failed:
        conds.append({"type": "Failed", "status": "True"})
    return obj("Job", name, annotations={"helm.sh/hook": hook}, status={"conditions": conds}, **kw)


def deployment(name: str, want: int, have: int, annotations: dict[str, str] | None = OWNED) -> dict[str, Any]:
    return obj("Deployment", name, annotations=annotations, spec={"replicas": want}, generation=1,
               status={"observedGeneration": 1, "availableReplicas": have, "updatedReplicas": have})


def crd(name: str, established: bool, annotations: dict[str, str] | None = OWNED) -> dict[str, Any]:
    conds = [{"type": "Established", "status": "True" if established else "False"}]
    return obj("CustomResourceDefinition", name, None, annotations=annotations, status={"conditions": conds})


def test_a_running_hook_job_is_named_with_its_hook() -> None:
    items = waiting_for([hook_job("gatekeeper-update-crds-hook")], release=REL, namespace=NS)
    assert items == [
        WaitItem(kind="Job", name=f"{NS}/gatekeeper-update-crds-hook", reason="pre-install hook Job running")
    ]


def test_complete_hook_jobs_are_not_waited_for_and_failed_ones_say_so() -> None:
    items = waiting_for(
        [hook_job("done", complete=True), hook_job("broken", "post-install", failed=True)], release=REL, namespace=NS
    )
    assert [(i.name, i.reason) for i in items] == [(f"{NS}/broken", "post-install hook Job failed")]


def test_hook_jobs_of_another_release_or_namespace_are_ignored() -> None:
    other = hook_job("other-hook", labels={"app.kubernetes.io/instance": "kai"})
    elsewhere = hook_job("far-hook", ns="kube-system")
    elsewhere["metadata"]["namespace"] = "kube-system"
    mine = hook_job("mine", labels={"app.kubernetes.io/instance": REL})
    items = waiting_for([other, elsewhere, mine], release=REL, namespace=NS)
    assert [i.name for i in items] == [f"{NS}/mine"]


def test_unready_workloads_and_unestablished_crds_of_the_release_in_order() -> None:
    objects = [
        deployment("gatekeeper-controller-manager", 2, 1),
        deployment("gatekeeper-audit", 1, 1),  # ready: not listed
        deployment("someone-elses", 3, 0, annotations={}),  # not the release's
        crd("constrainttemplates.templates.gatekeeper.sh", established=False),
        crd("assign.mutations.gatekeeper.sh", established=True),
        hook_job("gatekeeper-update-crds-hook"),
    ]
    items = waiting_for(objects, release=REL, namespace=NS)
    assert [(i.kind, i.name, i.reason) for i in items] == [
        ("Job", f"{NS}/gatekeeper-update-crds-hook", "pre-install hook Job running"),
        ("CustomResourceDefinition", "constrainttemplates.templates.gatekeeper.sh", "not Established"),
        ("Deployment", f"{NS}/gatekeeper-controller-manager", "1/2 available"),
    ]


def test_nothing_observed_for_a_helm_step_names_the_release() -> None:
    items = waiting_for([deployment("gatekeeper-audit", 1, 1)], release=REL, namespace=NS)
    assert items == [WaitItem(kind="HelmRelease", name=f"{NS}/{REL}", reason="helm is applying the release")]


def test_manifest_addons_wait_for_their_gated_objects() -> None:
    ds_ref = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "plugin", "namespace": "gpu"}}
    cm_ref = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": "gpu"}}
    job_ref = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "setup", "namespace": "gpu"}}
    live_job = obj("Job", "setup", "gpu", status={"conditions": []})
    items = waiting_for([], expected=[(ds_ref, None), (cm_ref, None), (job_ref, live_job)])
    assert [(i.kind, i.name, i.reason) for i in items] == [
        ("DaemonSet", "gpu/plugin", "not created yet"),
        ("Job", "gpu/setup", "running"),
    ]
    assert waiting_for([], expected=[]) == []  # a manifest add-on with nothing pending: an empty list


def test_the_list_is_bounded() -> None:
    jobs = [hook_job(f"hook-{i:03d}") for i in range(100)]
    assert len(waiting_for(jobs, release=REL, namespace=NS)) == 64


@pytest.mark.parametrize(
    ("actions", "kind"),
    [(["helm-install"], "install"), (["helm-upgrade"], "upgrade"), (["apply", "apply"], "apply"), ([], "wait")],
)
def test_step_kind(actions: list[str], kind: str) -> None:
    assert step_kind(actions) == kind


# --- the watch ----------------------------------------------------------------------------------

STEP = Step(addon="gatekeeper", helm=HelmRelease(release_name=REL, namespace=NS, repo="r", chart="c", version="1"))


def run_watch(observations: list[list[WaitItem]], work_ticks: int) -> list[AddonProgress | None]:
    """Run a step under a watch whose observer returns ``observations`` in turn (the last one
    repeated); the step lasts ``work_ticks`` observer intervals. Returns what was published."""
    published: list[AddonProgress | None] = []
    seen = {"n": 0}

    async def observe(_session: Any, _step: Step) -> list[WaitItem]:
        i = min(seen["n"], len(observations) - 1)
        seen["n"] += 1
        if observations[i] is None:
            raise RuntimeError("member went away")
        return observations[i]

    async def publish(current: AddonProgress | None) -> None:
        published.append(current)

    async def main() -> None:
        watch = StepWatch(None, "1.0.0", publish, 0.5, observe_fn=observe)  # type: ignore[arg-type]
        watch.interval = 0.01
        async with watch.step(STEP, "install"):
            while seen["n"] < work_ticks:
                await asyncio.sleep(0.005)

    asyncio.run(main())
    return published


HOOK = WaitItem(kind="Job", name=f"{NS}/hook", reason="pre-install hook Job running")
DEPLOY = WaitItem(kind="Deployment", name=f"{NS}/cm", reason="0/1 available")


def test_the_watch_publishes_at_start_on_change_only_and_clears_at_the_end() -> None:
    published = run_watch([[HOOK], [HOOK], [HOOK], [DEPLOY], [DEPLOY], [DEPLOY]], work_ticks=8)
    assert published[-1] is None
    steps = [p for p in published if p is not None]
    assert [p.waiting_for for p in steps] == [[HOOK], [DEPLOY]]  # no write for an unchanged list
    assert {(p.addon, p.step, p.version) for p in steps} == {("gatekeeper", "install", "1.0.0")}
    assert steps[0].since is not None and steps[0].since == steps[1].since


def test_an_observation_error_keeps_the_last_list_and_never_fails_the_step() -> None:
    published = run_watch([[HOOK], None, None, [HOOK]], work_ticks=6)  # type: ignore[list-item]
    assert [p.waiting_for if p else None for p in published] == [[HOOK], None]


def test_a_failing_status_write_does_not_fail_the_step() -> None:
    async def publish(_current: AddonProgress | None) -> None:
        raise ConnectionError("management cluster away")

    async def observe(_session: Any, _step: Step) -> list[WaitItem]:
        return [HOOK]

    async def main() -> str:
        watch = StepWatch(None, "1.0.0", publish, 0.5, observe_fn=observe)  # type: ignore[arg-type]
        async with watch.step(STEP, "upgrade"):
            return "step done"

    assert asyncio.run(main()) == "step done"
