"""Pure drift detection: DesiredState + live objects / releases / node labels → drift entries."""

from __future__ import annotations

import copy
from typing import Any

from blueprintd.api.ref import ObjectRef
from blueprintd.drift.detect import (
    REDACTED,
    DriftIndex,
    Target,
    check_node,
    detect,
    path_tokens,
    release_target,
    rendered_objects,
    restore_patch,
)
from blueprintd.drift.report import counts, update_target
from blueprintd.plan.inventory import object_key
from blueprintd.plan.live import LiveState, ReleaseState
from blueprintd.plan.planner import desired_objects
from blueprintd.render.desired import DesiredState

CM = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "cfg", "namespace": "ops", "labels": {"app.kubernetes.io/name": "cfg"}},
    "data": {"mode": "mig"},
}
NETPOL = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "NetworkPolicy",
    "metadata": {"name": "deny", "namespace": "ops"},
    "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
}
DEPLOY = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web", "namespace": "ops"},
    "spec": {
        "replicas": 2,
        "template": {"spec": {"containers": [{"name": "c", "image": "nginx:1", "args": ["--a"]}]}},
    },
}
SECRET = {
    "apiVersion": "v1",
    "kind": "Secret",
    "metadata": {"name": "creds", "namespace": "ops"},
    "stringData": {"password": "hunter2"},
}
VALUES = {"global": {"gpuSharing": True}, "scheduler": {"replicas": 1}}


def desired(mode: str = "remediate", **extra: Any) -> DesiredState:
    data: dict[str, Any] = {
        "blueprint": "bp",
        "version": "1.0.0",
        "revision": "sha256:x",
        "cluster": "c1",
        "steps": [
            {
                "addon": "kai",
                "namespace": "kai",
                "helm": {
                    "releaseName": "kai",
                    "namespace": "kai",
                    "repo": "http://mirror",
                    "chart": "kai-scheduler",
                    "version": "v0.10.2",
                    "values": VALUES,
                },
                "drift": {"mode": mode},
            },
            {
                "addon": "settings",
                "namespace": "ops",
                "manifests": [CM, NETPOL, DEPLOY, SECRET],
                "drift": {"mode": mode, "ignore": [{"kind": "Deployment", "paths": ["/spec/replicas"]}]},
            },
        ],
        "nodeLabels": [{"pool": "h100", "nodes": ["n1"], "labels": {"nvidia.com/mig.config": "all-1g.10gb"}}],
    }
    data.update(extra)
    return DesiredState.model_validate(data)


def server_copy(obj: dict[str, Any], managed: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    out["metadata"].update({"uid": "u", "resourceVersion": "7", "managedFields": managed or []})
    out["status"] = {"observedGeneration": 1}
    if out["kind"] == "Secret":
        out["data"] = {"password": "aHVudGVyMg=="}
    return out


def release(**kw: Any) -> ReleaseState:
    base: dict[str, Any] = {
        "name": "kai",
        "namespace": "kai",
        "chart": "kai-scheduler",
        "version": "v0.10.2",
        "status": "deployed",
        "revision": 1,
        "values": copy.deepcopy(VALUES),
        "description": "blueprintd kai-scheduler v0.10.2 values=abc",
    }
    base.update(kw)
    return ReleaseState(**base)


def converged(mode: str = "remediate") -> LiveState:
    """The cluster as blueprintd leaves it: manifests applied with their identity labels."""
    live = LiveState()
    live.releases[("kai", "kai")] = release()
    state = desired(mode)
    for obj in desired_objects(state, state.step("settings")):
        live.objects[object_key(obj)] = server_copy(obj)
    live.node_labels = {"n1": {"nvidia.com/mig.config": "all-1g.10gb", "kubernetes.io/os": "linux"}, "n2": {}}
    return live


def test_a_converged_cluster_has_no_drift() -> None:
    assert detect([desired()], converged()) == []


def test_a_changed_field_names_path_values_and_the_manager_that_changed_it() -> None:
    live = converged()
    dep = live.objects[object_key(DEPLOY)]
    assert dep is not None
    dep["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:evil"
    dep["metadata"]["managedFields"] = [
        {
            "manager": "blueprintd",
            "operation": "Apply",
            "time": "2026-01-01T00:00:00Z",
            "fieldsV1": {
                "f:spec": {
                    "f:replicas": {},
                    "f:template": {
                        "f:spec": {"f:containers": {'k:{"name":"c"}': {".": {}, "f:name": {}, "f:args": {}}}}
                    },
                }
            },
        },
        {
            "manager": "kubectl-edit",
            "operation": "Update",
            "time": "2026-01-02T00:00:00Z",
            "fieldsV1": {"f:spec": {"f:template": {"f:spec": {"f:containers": {'k:{"name":"c"}': {"f:image": {}}}}}}},
        },
    ]
    [d] = detect([desired()], live)
    assert (d.path, d.pointer, d.expected, d.actual) == (
        "spec.template.spec.containers[0].image",
        "/spec/template/spec/containers/0/image",
        "nginx:1",
        "nginx:evil",
    )
    assert (d.manager, d.own, d.reason, d.addon, d.mode) == ("kubectl-edit", False, "changed", "settings", "remediate")
    assert restore_patch(d) == [{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "nginx:1"}]


def test_a_field_blueprintd_owns_with_another_value_is_the_operators_own_change() -> None:
    live = converged()
    cm = live.objects[object_key(CM)]
    assert cm is not None
    cm["data"]["mode"] = "time-slicing"
    cm["metadata"]["managedFields"] = [
        {"manager": "blueprintd", "operation": "Apply", "fieldsV1": {"f:data": {"f:mode": {}}}}
    ]
    [d] = detect([desired()], live)
    assert d.own and d.manager == ""


def test_a_deleted_object_is_drift_of_the_whole_object() -> None:
    live = converged()
    live.objects[object_key(NETPOL)] = None
    [d] = detect([desired()], live)
    assert (d.path, d.reason, d.expected, d.actual) == (".", "deleted", "present", None)
    assert d.target == Target("object", d.target.ref) and str(d.target.ref) == "NetworkPolicy ops/deny"


def test_ignored_paths_and_server_defaults_are_not_drift() -> None:
    live = converged()
    dep = live.objects[object_key(DEPLOY)]
    assert dep is not None
    dep["spec"]["replicas"] = 7  # an autoscaler scaled it: ignored by a JSON-pointer rule
    dep["spec"]["strategy"] = {"type": "RollingUpdate"}  # a server default
    dep["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = "IfNotPresent"
    assert detect([desired()], live) == []


def test_list_length_changes_get_value_level_detail() -> None:
    live = converged()
    dep = live.objects[object_key(DEPLOY)]
    assert dep is not None
    dep["spec"]["template"]["spec"]["containers"][0]["args"] = ["--a", "--debug"]
    [d] = detect([desired()], live)
    assert d.path == "spec.template.spec.containers[0].args"
    assert "--debug" in d.detail and "added" in d.detail


def test_secret_values_are_redacted() -> None:
    live = converged()
    sec = live.objects[object_key(SECRET)]
    assert sec is not None
    sec["stringData"] = {"password": "changed"}
    [d] = detect([desired()], live)
    assert d.expected == REDACTED and d.actual == REDACTED


def test_a_release_uninstalled_out_of_band() -> None:
    live = converged()
    live.releases[("kai", "kai")] = None
    [d] = detect([desired()], live)
    assert (d.target, d.path, d.reason, d.actual) == (release_target("kai", "kai"), "release", "release-missing", None)
    live.releases[("kai", "kai")] = release(status="uninstalled", description="Uninstallation complete")
    [d] = detect([desired()], live)
    assert (d.reason, d.actual) == ("release-missing", "uninstalled")


def test_a_release_rolled_back_or_failed_out_of_band() -> None:
    live = converged()
    live.releases[("kai", "kai")] = release(
        revision=3, description="Rollback to 1", values={"global": {"gpuSharing": False}, "scheduler": {"replicas": 1}}
    )
    found = {(d.path, d.reason) for d in detect([desired()], live)}
    assert found == {("revision", "release-rollback"), ("values.global.gpuSharing", "values")}
    live.releases[("kai", "kai")] = release(status="failed", description="Upgrade failed")
    assert [(d.path, d.actual) for d in detect([desired()], live)] == [("status", "failed")]


def test_release_values_changed_or_added_out_of_band_and_chart_version() -> None:
    live = converged()
    live.releases[("kai", "kai")] = release(
        revision=2,
        version="v0.10.1",
        description="Upgrade complete",
        values={"global": {"gpuSharing": False}, "scheduler": {"replicas": 1}, "binder": {"apiToken": "s3cret"}},
    )
    found = {(d.path, d.reason, str(d.expected), str(d.actual)) for d in detect([desired()], live)}
    assert found == {
        ("chart", "chart", "kai-scheduler v0.10.2", "kai-scheduler v0.10.1"),
        ("values.global.gpuSharing", "values", "True", "False"),
        ("values.binder", "values", "None", str({"apiToken": REDACTED})),
    }


def test_a_release_being_upgraded_is_not_judged_and_blueprintd_revisions_are_its_own() -> None:
    live = converged()
    live.releases[("kai", "kai")] = release(status="pending-upgrade", values={})
    assert detect([desired()], live) == []
    # "not judged" is its own answer, not "no drift": the monitor must not resolve an open entry
    index = DriftIndex.build([desired()])
    assert index.check(release_target("kai", "kai"), live.releases[("kai", "kai")]) is None
    live.releases[("kai", "kai")] = release(revision=4, values={"global": {"gpuSharing": False}})
    assert all(d.own for d in detect([desired()], live))


def test_node_labels_removed_or_changed() -> None:
    live = converged()
    live.node_labels["n1"] = {"kubernetes.io/os": "linux"}
    [d] = detect([desired()], live)
    assert (str(d.target.ref), d.path, d.reason, d.expected, d.actual) == (
        "Node n1",
        "metadata.labels.nvidia.com/mig.config",
        "label-removed",
        "all-1g.10gb",
        None,
    )
    assert d.pointer == "/metadata/labels/nvidia.com~1mig.config"
    node = {
        "metadata": {
            "name": "n1",
            "labels": {"nvidia.com/mig.config": "all-disabled"},
            "managedFields": [
                {"manager": "blueprintd", "operation": "Update", "fieldsV1": {"f:metadata": {"f:labels": {}}}},
                {
                    "manager": "kubectl-label",
                    "operation": "Update",
                    "time": "2026-01-02T00:00:00Z",
                    "fieldsV1": {"f:metadata": {"f:labels": {"f:nvidia.com/mig.config": {}}}},
                },
            ],
        }
    }
    index = DriftIndex.build([desired()])
    [d] = check_node("n1", index.nodes["n1"], node)
    assert (d.reason, d.actual, d.manager) == ("label-changed", "all-disabled", "kubectl-label")


def test_modes_and_rendered_objects_of_a_release() -> None:
    state = desired(mode="notify")
    step = state.step("kai")
    docs = [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "kai-scheduler"},
            "spec": {"template": {"spec": {"containers": [{"name": "s", "image": "kai:1"}]}}},
        },
    ]
    [obj] = rendered_objects(step, docs, lambda _v, _k: True)
    assert obj["metadata"]["namespace"] == "kai"
    assert obj["metadata"]["annotations"]["meta.helm.sh/release-name"] == "kai"
    live = converged("notify")
    changed = copy.deepcopy(obj)
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = "kai:hacked"
    live.objects[object_key(obj)] = changed
    [d] = detect([state], live, rendered={("kai", "kai"): [obj]})
    assert (d.target.kind, d.mode, d.addon, d.actual) == ("rendered", "notify", "kai", "kai:hacked")


def test_path_tokens_resolve_keys_with_dots() -> None:
    doc = {"metadata": {"labels": {"app.kubernetes.io/name": "x"}}, "spec": {"a": [{"b": 1}]}}
    tokens = path_tokens(doc, "metadata.labels.app.kubernetes.io/name")
    assert tokens == ["metadata", "labels", "app.kubernetes.io/name"]
    assert path_tokens(doc, "spec.a[0].b") == ["spec", "a", 0, "b"]
    assert path_tokens(doc, ".") == []


def test_report_entries_keep_first_seen_and_resolve() -> None:
    from datetime import UTC, datetime, timedelta

    live = converged("notify")
    cm = live.objects[object_key(CM)]
    assert cm is not None
    cm["data"]["mode"] = "x"
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    [d] = detect([desired(mode="notify")], live)
    entries: dict[Any, Any] = {}
    new = update_target(entries, d.target.ref, [d], t0)
    assert [e.action for e in new] == ["notified"] and counts(entries.values(), 0).open == 1
    cm["data"]["mode"] = "y"
    [d2] = detect([desired(mode="notify")], live)
    assert update_target(entries, d.target.ref, [d2], t0 + timedelta(seconds=5)) == []
    [e] = entries.values()
    assert (e.first_seen, e.last_seen, e.actual) == (t0, t0 + timedelta(seconds=5), "y")
    update_target(entries, d.target.ref, [], t0 + timedelta(seconds=9))
    assert e.resolved_at == t0 + timedelta(seconds=9)
    c = counts(entries.values(), 0)
    assert (c.total, c.open, c.notified) == (1, 0, 1)


def test_a_null_a_chart_renders_is_not_set_so_the_server_default_is_no_drift() -> None:
    """The real gpu-operator chart renders ``cdi.default: null`` (the CRD defaults it to false)
    and its NFD subchart ``revisionHistoryLimit: null`` (the server defaults it to 10)."""
    state = desired()
    docs = [
        {
            "apiVersion": "nvidia.com/v1",
            "kind": "ClusterPolicy",
            "metadata": {"name": "cluster-policy"},
            "spec": {
                "cdi": {"enabled": True, "default": None},
                "devicePlugin": {"config": {"name": "ts", "default": None}},
            },
        },
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": "nfd-worker", "namespace": "kai"},
            "spec": {
                "revisionHistoryLimit": None,
                "template": {"spec": {"containers": [{"name": "w", "image": "nfd"}]}},
            },
        },
    ]
    objs = rendered_objects(state.step("kai"), docs, lambda _v, kind: kind != "ClusterPolicy")
    assert objs[0]["spec"] == {"cdi": {"enabled": True}, "devicePlugin": {"config": {"name": "ts"}}}
    assert "revisionHistoryLimit" not in objs[1]["spec"]
    live = converged()
    cp = server_copy(objs[0])
    cp["spec"]["cdi"]["default"] = False
    ds = server_copy(objs[1])
    ds["spec"]["revisionHistoryLimit"] = 10
    live.objects[object_key(cp)] = cp
    live.objects[object_key(ds)] = ds
    assert detect([state], live, rendered={("kai", "kai"): objs}) == []
    # Even a raw null reaching the comparison (not passed through rendered_objects) sets nothing.
    index = DriftIndex.build([state])
    index.set_rendered(release_target("kai", "kai").id, [docs[0] | {"metadata": {"name": "cluster-policy"}}])
    assert index.check(Target("rendered", ObjectRef.of(cp)), cp) == []


def test_namespaces_chart_secrets_and_chart_crds_are_guarded_but_never_compared() -> None:
    """Block mode must cover everything blueprintd creates: the namespaces it installs add-ons
    into (deleting one deletes all in it), a chart's Secrets and its crds/ CRDs. Their content
    is not blueprintd's to compare (generated values; CRDs helm never upgrades)."""
    state = desired("block")
    index = DriftIndex.build([state])
    guarded = {t.ref.name for t in index.targets() if t.kind == "guarded"}
    assert guarded == {"kai", "ops"}, "release and add-on namespaces; never kube-system or default"
    ns = index.objects["guarded:Namespace kai"]
    assert (ns.step.drift.mode, ns.compare) == ("block", False)
    assert index.check(ns.target, {"metadata": {"name": "kai", "labels": {"x": "y"}}}) == []
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "webhook-cert", "namespace": "kai"},
        "data": {"tls.key": "Z2VuZXJhdGVk"},
    }
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "queues.scheduling.run.ai"},
        "spec": {"group": "scheduling.run.ai"},
    }
    rid = release_target("kai", "kai").id
    ids = index.set_rendered(rid, [], [secret, crd])
    assert sorted(ids) == [
        "guarded:CustomResourceDefinition queues.scheduling.run.ai",
        "guarded:Secret kai/webhook-cert",
    ]
    live = server_copy(secret)
    live["data"] = {"tls.key": "b3RoZXI="}
    assert index.check(index.objects["guarded:Secret kai/webhook-cert"].target, live) == []
    assert index.check(index.objects[ids[0]].target, None) == []
    # A kube-system add-on leaves kube-system alone; a Namespace a manifest declares is that object.
    other = desired(
        "block",
        steps=[
            {"addon": "sys", "namespace": "kube-system", "manifests": [CM]},
            {"addon": "ns", "manifests": [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ops"}}]},
            {"addon": "cfg", "namespace": "ops", "manifests": [NETPOL]},
        ],
    )
    assert not [t for t in DriftIndex.build([other]).targets() if t.kind == "guarded"]
