"""The local chart repository and the upstream stand-in charts it serves.

Everything runs the real ``helm`` binary: the repository is built with ``helm package`` /
``helm repo index``, served over HTTP and read back with ``helm show`` / ``helm search`` /
``helm template --repo``; the chart tests render with ``helm template`` and look at the objects a
member cluster would receive.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from blueprintd.api.load import load_blueprints
from blueprintd.devfleet.binaries import Binaries
from blueprintd.devfleet.chartrepo import ChartRepoServer, build_chart_repo
from blueprintd.devfleet.nodes import FleetFile, MemberSpec
from blueprintd.devfleet.standins import StandIns
from blueprintd.devfleet.testing import running_fleet, wait_for
from blueprintd.errors import DevFleetError

REPO_ROOT = Path(__file__).resolve().parents[2]
STANDINS = REPO_ROOT / "charts" / "standins"
BROKEN = REPO_ROOT / "charts" / "standins-broken" / "gpu-operator"

# Chart name -> version every stand-in is published at.
EXPECTED = {
    "gpu-operator": "v25.10.0",
    "kai-scheduler": "v0.10.2",
    "dcgm-exporter": "4.6.0",
    "gatekeeper": "3.21.0",
    "kata-deploy": "3.24.0",
}
BROKEN_VERSION = "99.0.0-broken"

MIG_CONFIGS: dict[str, Any] = {
    "all-disabled": [{"devices": "all", "mig-enabled": False}],
    "all-1g.10gb": [
        {
            "device-filter": ["0x233010DE"],
            "devices": "all",
            "mig-enabled": True,
            "mig-devices": {"1g.10gb": 7},
        }
    ],
    "all-balanced": [
        {
            "devices": "all",
            "mig-enabled": True,
            "mig-devices": {"1g.10gb": 2, "2g.20gb": 1, "3g.40gb": 1},
        }
    ],
}

# Upstream's shape: ConfigMap data, the mig-parted document as a string.
MIG_VALUES: dict[str, Any] = {
    "mig": {"strategy": "mixed"},
    "migManager": {
        "config": {
            "create": True,
            "default": "all-1g.10gb",
            "data": {"config.yaml": yaml.safe_dump({"version": "v1", "mig-configs": MIG_CONFIGS})},
        }
    },
}

TIME_SLICING = {
    "version": "v1",
    "flags": {"migStrategy": "none"},
    "sharing": {
        "timeSlicing": {
            "renameByDefault": False,
            "failRequestsGreaterThanOne": False,
            "resources": [{"name": "nvidia.com/gpu", "replicas": 4}],
        }
    },
}


@pytest.fixture(scope="module")
def helm(kube_binaries: Binaries) -> Path:
    """The pinned helm the fleet uses (found or built by the shared fixture)."""
    return kube_binaries.helm


@pytest.fixture(scope="module")
def helm_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Keep helm's repositories and caches out of the user's home."""
    home = tmp_path_factory.mktemp("helm-home")
    return {
        **os.environ,
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_DATA_HOME": str(home / "data"),
    }


def run_helm(helm: Path, env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(helm), *args], env=env, capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def repo_dir(helm: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_chart_repo([STANDINS, BROKEN], tmp_path_factory.mktemp("chart-repo"), helm)


@pytest.fixture(scope="module")
def repo_url(repo_dir: Path) -> Iterator[str]:
    with ChartRepoServer(repo_dir) as server:
        yield server.url


def render(
    helm: Path,
    env: dict[str, str],
    chart: str | Path,
    tmp_path: Path,
    values: dict[str, Any] | None = None,
    *extra: str,
) -> list[dict[str, Any]]:
    """``helm template`` -> the list of objects (``--include-crds``)."""
    args = ["template", "rel", str(chart), "--namespace", "ns", "--include-crds", *extra]
    if values is not None:
        values_file = tmp_path / "values.yaml"
        values_file.write_text(yaml.safe_dump(values))
        args += ["-f", str(values_file)]
    out = run_helm(helm, env, *args).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def find(objs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)} in {names(objs)}"
    return matches[0]


def names(objs: list[dict[str, Any]], kind: str | None = None) -> set[str]:
    return {o["metadata"]["name"] for o in objs if kind is None or o["kind"] == kind}


def env_of(workload: dict[str, Any]) -> dict[str, str]:
    container = workload["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


# --------------------------------------------------------------------------------------------
# The repository
# --------------------------------------------------------------------------------------------


def test_index_lists_every_standin_with_relative_urls(repo_dir: Path) -> None:
    index = yaml.safe_load((repo_dir / "index.yaml").read_text())
    published = {(name, entry["version"]): entry for name, entries in index["entries"].items() for entry in entries}
    for name, version in [*EXPECTED.items(), ("gpu-operator", BROKEN_VERSION)]:
        entry = published[(name, version)]
        assert entry["urls"] == [f"{name}-{version}.tgz"], "urls must be relative so the repo can move"
        assert (repo_dir / entry["urls"][0]).is_file()
        assert "stand-in" in entry["description"] and "NOT the upstream" in entry["description"]
    assert len(published) == len(EXPECTED) + 1


def test_helm_search_finds_every_standin_at_its_version(
    helm: Path, helm_env: dict[str, str], repo_url: str, tmp_path: Path
) -> None:
    repo_config = ["--repository-config", str(tmp_path / "repos.yaml")]
    repo_config += ["--repository-cache", str(tmp_path / "cache")]
    run_helm(helm, helm_env, "repo", "add", "local", repo_url, *repo_config)
    out = run_helm(helm, helm_env, "search", "repo", "local/", "--versions", "--devel", "-o", "json", *repo_config)
    found = {(r["name"], r["version"]) for r in yaml.safe_load(out.stdout)}
    expected = {(f"local/{name}", version) for name, version in EXPECTED.items()}
    assert found == expected | {("local/gpu-operator", BROKEN_VERSION)}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_helm_show_chart_by_name_and_version(helm: Path, helm_env: dict[str, str], repo_url: str, name: str) -> None:
    out = run_helm(helm, helm_env, "show", "chart", "--repo", repo_url, name, "--version", EXPECTED[name])
    chart = yaml.safe_load(out.stdout)
    assert chart["name"] == name
    assert chart["version"] == EXPECTED[name]
    assert chart["annotations"]["blueprintd.io/standin"] == "true"


def test_broken_prerelease_is_never_picked_by_default(helm: Path, helm_env: dict[str, str], repo_url: str) -> None:
    latest = yaml.safe_load(run_helm(helm, helm_env, "show", "chart", "--repo", repo_url, "gpu-operator").stdout)
    assert latest["version"] == EXPECTED["gpu-operator"]
    broken = yaml.safe_load(
        run_helm(
            helm, helm_env, "show", "chart", "--repo", repo_url, "gpu-operator", "--version", BROKEN_VERSION
        ).stdout
    )
    assert broken["version"] == BROKEN_VERSION


def test_helm_template_from_the_repo_renders_mig_config_from_values(
    helm: Path, helm_env: dict[str, str], repo_url: str, tmp_path: Path
) -> None:
    extra = ("--repo", repo_url, "--version", EXPECTED["gpu-operator"])
    objs = render(helm, helm_env, "gpu-operator", tmp_path, MIG_VALUES, *extra)

    mig_cm = find(objs, "ConfigMap", "default-mig-parted-config")
    config = yaml.safe_load(mig_cm["data"]["config.yaml"])
    assert config["version"] == "v1"
    assert config["mig-configs"] == MIG_CONFIGS

    policy = find(objs, "ClusterPolicy", "cluster-policy")
    assert policy["spec"]["mig"] == {"strategy": "mixed"}
    assert policy["spec"]["migManager"]["config"] == {
        "name": "default-mig-parted-config",
        "default": "all-1g.10gb",
    }
    manager = find(objs, "DaemonSet", "nvidia-mig-manager")
    assert env_of(manager)["DEFAULT_MIG_CONFIG"] == "all-1g.10gb"


def test_repo_can_be_served_after_moving(helm: Path, helm_env: dict[str, str], repo_dir: Path, tmp_path: Path) -> None:
    moved = tmp_path / "elsewhere"
    shutil.copytree(repo_dir, moved)
    with ChartRepoServer(moved) as server:
        run_helm(
            helm,
            helm_env,
            "pull",
            f"{server.url}/kata-deploy-{EXPECTED['kata-deploy']}.tgz",
            "--destination",
            str(tmp_path),
        )
        with urllib.request.urlopen(f"{server.url}/index.yaml", timeout=10) as resp:
            assert resp.status == 200
    assert (tmp_path / f"kata-deploy-{EXPECTED['kata-deploy']}.tgz").is_file()


def test_server_stops_and_releases_its_port(repo_dir: Path) -> None:
    server = ChartRepoServer(repo_dir).start()
    url = server.url
    assert url.startswith("http://127.0.0.1:")
    server.stop()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{url}/index.yaml", timeout=5)
    with pytest.raises(DevFleetError, match="not running"):
        _ = server.url
    server.stop()  # idempotent


def test_server_refuses_a_folder_that_is_not_a_repository(tmp_path: Path) -> None:
    with pytest.raises(DevFleetError, match=r"no index\.yaml"):
        ChartRepoServer(tmp_path).start()


def test_rebuild_reuses_unchanged_packages_and_repackages_changed_charts(helm: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(STANDINS / "kata-deploy", src / "kata-deploy")
    shutil.copytree(STANDINS / "dcgm-exporter", src / "dcgm-exporter")
    out = tmp_path / "repo"

    build_chart_repo([src], out, helm)
    kata_tgz = out / f"kata-deploy-{EXPECTED['kata-deploy']}.tgz"
    dcgm_tgz = out / f"dcgm-exporter-{EXPECTED['dcgm-exporter']}.tgz"
    first = {p: p.stat().st_mtime_ns for p in (kata_tgz, dcgm_tgz, out / "index.yaml")}

    build_chart_repo([src], out, helm)
    assert {p: p.stat().st_mtime_ns for p in first} == first, "nothing changed: nothing is rewritten"

    values = src / "kata-deploy" / "values.yaml"
    values.write_text(values.read_text().replace("k8sDistribution: k8s", "k8sDistribution: k3s"))
    build_chart_repo([src], out, helm)
    assert kata_tgz.stat().st_mtime_ns != first[kata_tgz]
    assert dcgm_tgz.stat().st_mtime_ns == first[dcgm_tgz]
    packaged = subprocess.run(
        ["tar", "-xzOf", str(kata_tgz), "kata-deploy/values.yaml"], capture_output=True, text=True, check=True
    ).stdout
    assert "k8sDistribution: k3s" in packaged

    chart_yaml = src / "kata-deploy" / "Chart.yaml"
    chart_yaml.write_text(chart_yaml.read_text().replace("version: 3.24.0", "version: 3.25.0"))
    build_chart_repo([src], out, helm)
    index = yaml.safe_load((out / "index.yaml").read_text())
    assert [e["version"] for e in index["entries"]["kata-deploy"]] == ["3.25.0"]
    assert not kata_tgz.exists(), "the package of the old version is removed"

    build_chart_repo([src / "dcgm-exporter"], out, helm)
    index = yaml.safe_load((out / "index.yaml").read_text())
    assert set(index["entries"]) == {"dcgm-exporter"}
    assert sorted(p.name for p in out.glob("*.tgz")) == [dcgm_tgz.name]


def test_two_charts_with_the_same_name_and_version_are_refused(helm: Path, tmp_path: Path) -> None:
    shutil.copytree(STANDINS / "kata-deploy", tmp_path / "a" / "kata-deploy")
    shutil.copytree(STANDINS / "kata-deploy", tmp_path / "b" / "kata-deploy")
    (tmp_path / "b" / "kata-deploy" / "README.md").write_text("a different copy\n")
    with pytest.raises(DevFleetError, match=r"two charts package to kata-deploy-3\.24\.0\.tgz"):
        build_chart_repo([tmp_path / "a", tmp_path / "b"], tmp_path / "repo", helm)


def test_a_folder_without_charts_is_refused(helm: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DevFleetError, match="neither a Helm chart"):
        build_chart_repo([tmp_path / "empty"], tmp_path / "repo", helm)


def test_a_chart_helm_cannot_package_reports_helms_error(helm: Path, tmp_path: Path) -> None:
    chart = tmp_path / "bad"
    chart.mkdir()
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: bad\nversion: not-a-version\n")
    with pytest.raises(DevFleetError, match="helm package") as err:
        build_chart_repo([chart], tmp_path / "repo", helm)
    assert "not-a-version" in str(err.value)


# --------------------------------------------------------------------------------------------
# The charts
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("chart", [*sorted(EXPECTED), "broken"])
def test_every_chart_lints_clean(helm: Path, helm_env: dict[str, str], chart: str) -> None:
    path = BROKEN if chart == "broken" else STANDINS / chart
    out = run_helm(helm, helm_env, "lint", "--strict", str(path))
    assert "0 chart(s) failed" in out.stdout
    assert "[WARNING]" not in out.stdout and "[INFO]" not in out.stdout
    assert (path / "README.md").is_file()
    chart_meta = yaml.safe_load((path / "Chart.yaml").read_text())
    assert "blueprintd test stand-in" in chart_meta["description"]


def hooks(objs: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
    """Hook objects: (kind, name) -> helm.sh/hook."""
    return {
        (o["kind"], o["metadata"]["name"]): o["metadata"]["annotations"]["helm.sh/hook"]
        for o in objs
        if "helm.sh/hook" in (o["metadata"].get("annotations") or {})
    }


def template_error(helm: Path, env: dict[str, str], chart: str, tmp_path: Path, values: dict[str, Any]) -> str:
    """stderr of a ``helm template`` that must fail."""
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    proc = run_helm(helm, env, "template", "rel", str(STANDINS / chart), "-f", str(values_file), check=False)
    assert proc.returncode != 0, f"{chart} accepted {values}"
    return proc.stderr


def test_gpu_operator_defaults(helm: Path, helm_env: dict[str, str], tmp_path: Path) -> None:
    objs = render(helm, helm_env, STANDINS / "gpu-operator", tmp_path)

    crd = find(objs, "CustomResourceDefinition", "clusterpolicies.nvidia.com")
    assert crd["spec"]["scope"] == "Cluster"
    assert [(v["name"], v["storage"]) for v in crd["spec"]["versions"]] == [("v1", True)]
    spec_schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec_schema["x-kubernetes-preserve-unknown-fields"] is True

    operator = find(objs, "Deployment", "gpu-operator")
    assert operator["metadata"]["namespace"] == "ns"
    assert operator["spec"]["replicas"] == 1
    assert operator["spec"]["template"]["spec"]["containers"][0]["image"] == "nvcr.io/nvidia/gpu-operator:v25.10.0"

    assert names(objs, "DaemonSet") == {
        "nvidia-driver-daemonset",
        "nvidia-container-toolkit-daemonset",
        "nvidia-device-plugin-daemonset",
        "gpu-feature-discovery",
        "nvidia-dcgm-exporter",
        "nvidia-mig-manager",
    }
    for ds in (o for o in objs if o["kind"] == "DaemonSet"):
        selector = ds["spec"]["template"]["spec"]["nodeSelector"]
        assert list(selector.values()) == ["true"]
        assert next(iter(selector)).startswith("nvidia.com/gpu.deploy.")
        assert "privileged" not in ds["spec"]["template"]["spec"]["containers"][0]["securityContext"]

    service = find(objs, "Service", "nvidia-dcgm-exporter")
    assert service["spec"]["ports"][0]["port"] == 9400
    assert service["metadata"]["annotations"]["prometheus.io/path"] == "/metrics"

    policy = find(objs, "ClusterPolicy", "cluster-policy")
    assert "namespace" not in policy["metadata"]
    spec = policy["spec"]
    assert spec["mig"]["strategy"] == "single"
    assert spec["migManager"]["config"] == {"name": "default-mig-parted-config", "default": "all-disabled"}
    assert spec["devicePlugin"]["enabled"] is True and "config" not in spec["devicePlugin"]
    assert spec["cdi"]["enabled"] is True
    assert spec["sandboxWorkloads"] == {"enabled": False, "defaultWorkload": "container"}
    assert "ServiceMonitor" not in {o["kind"] for o in objs}
    # As upstream: no ConfigMap unless asked for (create + data); the operator has built-ins.
    assert names(objs, "ConfigMap") == set()
    # Upstream's hooks: the CRD upgrade before every upgrade; the CRD cleanup is off by default.
    assert hooks(objs) == {
        ("Job", "gpu-operator-upgrade-crd"): "pre-upgrade",
        ("ServiceAccount", "gpu-operator-upgrade-crd-hook-sa"): "pre-upgrade",
    }
    cleanup = render(helm, helm_env, STANDINS / "gpu-operator", tmp_path, {"operator": {"cleanupCRD": True}})
    assert hooks(cleanup)[("Job", "gpu-operator-cleanup-crd")] == "post-delete"


def test_gpu_operator_time_slicing_config(helm: Path, helm_env: dict[str, str], tmp_path: Path) -> None:
    values: dict[str, Any] = {
        "devicePlugin": {
            "config": {
                "create": True,
                "name": "time-slicing-config",
                "default": "any",
                "data": {
                    "any": yaml.safe_dump(TIME_SLICING),
                    "mps-2": (
                        "version: v1\nsharing:\n  mps:\n    resources:\n    - {name: nvidia.com/gpu, replicas: 2}\n"
                    ),
                },
            }
        }
    }
    objs = render(helm, helm_env, STANDINS / "gpu-operator", tmp_path, values)
    cm = find(objs, "ConfigMap", "time-slicing-config")
    assert set(cm["data"]) == {"any", "mps-2"}
    assert yaml.safe_load(cm["data"]["any"]) == TIME_SLICING
    assert yaml.safe_load(cm["data"]["mps-2"])["sharing"]["mps"]["resources"] == [
        {"name": "nvidia.com/gpu", "replicas": 2}
    ]

    plugin = find(objs, "DaemonSet", "nvidia-device-plugin-daemonset")
    env = env_of(plugin)
    assert env["DEFAULT_CONFIG"] == "any"
    assert env["NODE_LABEL"] == "nvidia.com/device-plugin.config"
    volumes = plugin["spec"]["template"]["spec"]["volumes"]
    assert volumes[0]["configMap"]["name"] == "time-slicing-config"
    policy = find(objs, "ClusterPolicy", "cluster-policy")
    assert policy["spec"]["devicePlugin"]["config"] == {"name": "time-slicing-config", "default": "any"}

    # A different sharing config changes the DaemonSet too (config hash), so drift is visible.
    other_config = {**TIME_SLICING, "flags": {"migStrategy": "single"}}
    values["devicePlugin"]["config"]["data"]["any"] = yaml.safe_dump(other_config)
    other = render(helm, helm_env, STANDINS / "gpu-operator", tmp_path, values)
    other_plugin = find(other, "DaemonSet", "nvidia-device-plugin-daemonset")
    key = "blueprintd.io/config-hash"
    assert (
        other_plugin["spec"]["template"]["metadata"]["annotations"][key]
        != plugin["spec"]["template"]["metadata"]["annotations"][key]
    )


def test_gpu_operator_dra_mode_and_sandbox_workloads(helm: Path, helm_env: dict[str, str], tmp_path: Path) -> None:
    values = {
        "devicePlugin": {"enabled": False},
        "sandboxWorkloads": {"enabled": True, "defaultWorkload": "vm-passthrough"},
    }
    objs = render(helm, helm_env, STANDINS / "gpu-operator", tmp_path, values)
    daemonsets = names(objs, "DaemonSet")
    assert "nvidia-device-plugin-daemonset" not in daemonsets
    assert {"nvidia-sandbox-device-plugin-daemonset", "nvidia-vfio-manager"} <= daemonsets
    sandbox = find(objs, "DaemonSet", "nvidia-sandbox-device-plugin-daemonset")
    assert sandbox["spec"]["template"]["spec"]["nodeSelector"] == {
        "nvidia.com/gpu.deploy.sandbox-device-plugin": "true"
    }
    assert env_of(sandbox)["DEFAULT_WORKLOAD"] == "vm-passthrough"
    spec = find(objs, "ClusterPolicy", "cluster-policy")["spec"]
    assert spec["devicePlugin"]["enabled"] is False
    assert spec["sandboxWorkloads"] == {"enabled": True, "defaultWorkload": "vm-passthrough"}


def test_gpu_operator_service_monitor_needs_the_prometheus_api(
    helm: Path, helm_env: dict[str, str], tmp_path: Path
) -> None:
    values = {"dcgmExporter": {"serviceMonitor": {"enabled": True}}}
    without = render(helm, helm_env, STANDINS / "gpu-operator", tmp_path, values)
    assert "ServiceMonitor" not in {o["kind"] for o in without}
    with_api = render(
        helm,
        helm_env,
        STANDINS / "gpu-operator",
        tmp_path,
        values,
        "--api-versions",
        "monitoring.coreos.com/v1",
    )
    monitor = find(with_api, "ServiceMonitor", "nvidia-dcgm-exporter")
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    disabled = render(
        helm,
        helm_env,
        STANDINS / "gpu-operator",
        tmp_path,
        {"dcgmExporter": {"enabled": False}},
        "--api-versions",
        "monitoring.coreos.com/v1",
    )
    assert "nvidia-dcgm-exporter" not in names(disabled)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        # Consistency checks of the templates (stricter than upstream, which renders these).
        (
            {"migManager": {"config": {**MIG_VALUES["migManager"]["config"], "default": "all-3g.40gb"}}},
            'migManager.config.default="all-3g.40gb" is not a MIG config',
        ),
        (
            {"devicePlugin": {"config": {"create": True, "data": {"any": "version: v1\n"}}}},
            "devicePlugin.config.name must name the ConfigMap",
        ),
        (
            {"devicePlugin": {"config": {"create": True, "name": "ts", "default": "x", "data": {"any": "v"}}}},
            'devicePlugin.config.default="x" is not a key',
        ),
        # The schema: closed sets, types, unknown keys.
        ({"mig": {"strategy": "singel"}}, "/mig/strategy"),
        ({"sandboxWorkloads": {"defaultWorkload": "vm"}}, "/sandboxWorkloads/defaultWorkload"),
        ({"driver": {"enabeld": False}}, "enabeld"),
        ({"migManager": {"config": {"migConfigs": {}}}}, "migConfigs"),
        # ConfigMap data is strings: a structured config must be encoded (helm.encodeAsYaml).
        ({"devicePlugin": {"config": {"data": {"any": TIME_SLICING}}}}, "/devicePlugin/config/data/any"),
    ],
)
def test_gpu_operator_refuses_inconsistent_values(
    helm: Path, helm_env: dict[str, str], tmp_path: Path, values: dict[str, Any], message: str
) -> None:
    assert message in template_error(helm, helm_env, "gpu-operator", tmp_path, values)


def test_kai_scheduler(helm: Path, helm_env: dict[str, str], tmp_path: Path) -> None:
    objs = render(helm, helm_env, STANDINS / "kai-scheduler", tmp_path)
    crd = find(objs, "CustomResourceDefinition", "queues.scheduling.run.ai")
    assert crd["spec"]["scope"] == "Cluster"
    assert crd["spec"]["names"]["kind"] == "Queue"
    (version,) = crd["spec"]["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v2", True, True)
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    assert spec["parentQueue"]["type"] == "string"
    assert spec["priority"]["type"] == "integer"
    for resource in ("gpu", "cpu", "memory"):
        fields = spec["resources"]["properties"][resource]["properties"]
        assert {k: v["type"] for k, v in fields.items()} == {
            "quota": "number",
            "limit": "number",
            "overQuotaWeight": "number",
        }
    shard = find(objs, "CustomResourceDefinition", "schedulingshards.kai.scheduler")
    assert (shard["spec"]["scope"], shard["spec"]["names"]["kind"]) == ("Cluster", "SchedulingShard")
    assert {"kai-operator", "kai-scheduler", "binder", "podgrouper"} <= names(objs, "Deployment")
    scheduler = find(objs, "Deployment", "kai-scheduler")
    assert "--gpu-sharing-enabled=false" in scheduler["spec"]["template"]["spec"]["containers"][0]["args"]
    assert not {"Queue", "SchedulingShard"} & {o["kind"] for o in objs}
    assert hooks(objs) == {
        ("ServiceAccount", "kai-scheduler-crd-manager"): "pre-install,pre-upgrade",
        ("Job", "crd-upgrader"): "pre-install,pre-upgrade",
        ("Job", "post-delete-cleanup"): "post-delete",
    }

    shared = render(
        helm,
        helm_env,
        STANDINS / "kai-scheduler",
        tmp_path,
        {
            "global": {"gpuSharing": True},
            "defaultQueue": {"createDefaultQueue": True},
            "defaultShard": {"enabled": True},
        },
    )
    scheduler = find(shared, "Deployment", "kai-scheduler")
    assert "--gpu-sharing-enabled=true" in scheduler["spec"]["template"]["spec"]["containers"][0]["args"]
    assert yaml.safe_load(find(shared, "ConfigMap", "kai-scheduler-config")["data"]["config.yaml"])["gpuSharing"]
    leaf = find(shared, "Queue", "default-queue")
    assert leaf["apiVersion"] == "scheduling.run.ai/v2"
    assert leaf["spec"]["parentQueue"] == "default-parent-queue"
    assert leaf["spec"]["resources"]["gpu"] == {"quota": 0, "limit": -1, "overQuotaWeight": 1}
    assert find(shared, "SchedulingShard", "default")["apiVersion"] == "kai.scheduler/v1"

    err = template_error(helm, helm_env, "kai-scheduler", tmp_path, {"defaultQueue": {"create": True}})
    assert "/defaultQueue" in err and "create" in err


def test_dcgm_exporter(helm: Path, helm_env: dict[str, str], tmp_path: Path) -> None:
    objs = render(helm, helm_env, STANDINS / "dcgm-exporter", tmp_path, {"serviceMonitor": {"enabled": True}})
    ds = find(objs, "DaemonSet", "rel-dcgm-exporter")
    assert ds["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] == 9400
    service = find(objs, "Service", "rel-dcgm-exporter")
    assert service["spec"]["ports"][0]["port"] == 9400
    assert service["spec"]["selector"] == ds["spec"]["selector"]["matchLabels"]
    assert "ServiceMonitor" not in {o["kind"] for o in objs}
    assert hooks(objs) == {}, "upstream has no hooks"

    with_api = render(
        helm,
        helm_env,
        STANDINS / "dcgm-exporter",
        tmp_path,
        {"serviceMonitor": {"enabled": True}},
        "--api-versions",
        "monitoring.coreos.com/v1",
    )
    monitor = find(with_api, "ServiceMonitor", "rel-dcgm-exporter")
    assert monitor["spec"]["endpoints"][0] == {
        "port": "metrics",
        "path": "/metrics",
        "interval": "15s",
        "honorLabels": False,
    }
    err = template_error(helm, helm_env, "dcgm-exporter", tmp_path, {"serviceMonitor": {"enable": True}})
    assert "/serviceMonitor" in err and "enable" in err


def test_gatekeeper_crds_webhooks_and_hooks(helm: Path, helm_env: dict[str, str], tmp_path: Path) -> None:
    objs = render(helm, helm_env, STANDINS / "gatekeeper", tmp_path, {"replicas": 2, "auditInterval": 60})
    template_crd = find(objs, "CustomResourceDefinition", "constrainttemplates.templates.gatekeeper.sh")
    assert template_crd["spec"]["names"]["kind"] == "ConstraintTemplate"
    assert {v["name"]: v["storage"] for v in template_crd["spec"]["versions"]} == {
        "v1": True,
        "v1beta1": False,
    }
    ct_spec = template_crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    assert ct_spec["targets"]["items"]["properties"]["rego"]["type"] == "string"
    assert {
        "configs.config.gatekeeper.sh",
        "assign.mutations.gatekeeper.sh",
        "providers.externaldata.gatekeeper.sh",
        "constraintpodstatuses.status.gatekeeper.sh",
    } <= names(objs, "CustomResourceDefinition")

    manager = find(objs, "Deployment", "gatekeeper-controller-manager")
    assert manager["spec"]["replicas"] == 2
    audit = find(objs, "Deployment", "gatekeeper-audit")
    assert "--audit-interval=60" in audit["spec"]["template"]["spec"]["containers"][0]["args"]

    validating = find(objs, "ValidatingWebhookConfiguration", "gatekeeper-validating-webhook-configuration")
    by_name = {w["name"]: w for w in validating["webhooks"]}
    assert set(by_name) == {"validation.gatekeeper.sh", "check-ignore-label.gatekeeper.sh"}
    assert by_name["validation.gatekeeper.sh"]["failurePolicy"] == "Ignore"
    assert by_name["check-ignore-label.gatekeeper.sh"]["failurePolicy"] == "Fail"
    assert by_name["validation.gatekeeper.sh"]["clientConfig"]["service"] == {
        "name": "gatekeeper-webhook-service",
        "namespace": "ns",
        "path": "/v1/admit",
    }
    mutating = find(objs, "MutatingWebhookConfiguration", "gatekeeper-mutating-webhook-configuration")
    # Live, as upstream renders them: no objectSelector unless the values set one.
    for hook in [*validating["webhooks"], *mutating["webhooks"]]:
        assert "objectSelector" not in hook, hook["name"]

    crd_hook = "pre-install,pre-upgrade"
    assert hooks(objs) == {
        ("ServiceAccount", "gatekeeper-admin-upgrade-crds"): crd_hook,
        ("ClusterRole", "gatekeeper-admin-upgrade-crds"): crd_hook,
        ("ClusterRoleBinding", "gatekeeper-admin-upgrade-crds"): crd_hook,
        ("Job", "gatekeeper-update-crds-hook"): crd_hook,
        ("Job", "gatekeeper-update-namespace-label"): "post-install",
        ("Job", "gatekeeper-probe-webhook-post-install"): "post-install",
    }

    no_mutation = render(helm, helm_env, STANDINS / "gatekeeper", tmp_path, {"disableMutation": True})
    assert "MutatingWebhookConfiguration" not in {o["kind"] for o in no_mutation}
    err = template_error(helm, helm_env, "gatekeeper", tmp_path, {"standin": {"constraintKinds": ["K"]}})
    assert "standin" in err


def test_kata_deploy_runtime_classes(helm: Path, helm_env: dict[str, str], tmp_path: Path) -> None:
    objs = render(helm, helm_env, STANDINS / "kata-deploy", tmp_path)
    classes = {o["metadata"]["name"]: o for o in objs if o["kind"] == "RuntimeClass"}
    # 3.24.0 enables every shim by default.
    assert {"kata-qemu", "kata-clh", "kata-qemu-nvidia-gpu", "kata-qemu-nvidia-gpu-snp"} <= set(classes)
    for name, rc in classes.items():
        assert rc["handler"] == name
        assert rc["scheduling"] == {"nodeSelector": {"katacontainers.io/kata-runtime": "true"}}
    assert classes["kata-qemu-nvidia-gpu"]["overhead"]["podFixed"] == {"memory": "4096Mi", "cpu": "1.0"}
    assert classes["kata-qemu-nvidia-gpu-snp"]["overhead"]["podFixed"] == {"memory": "16384Mi", "cpu": "1.0"}
    assert hooks(objs) == {("Job", "kata-deploy-cleanup"): "post-delete"}

    # The default blueprint's values: only the GPU shims, each switched on or off by name.
    (bp,) = load_blueprints([REPO_ROOT / "blueprints" / "gpu-platform"])
    kata_values = next(a for a in bp.spec.addons if a.name == "kata").helm.values  # type: ignore[union-attr]
    gpu_only = render(helm, helm_env, STANDINS / "kata-deploy", tmp_path, kata_values)
    assert names(gpu_only, "RuntimeClass") == {
        "kata-qemu-nvidia-gpu",
        "kata-qemu-nvidia-gpu-snp",
        "kata-qemu-nvidia-gpu-tdx",
    }
    ds = find(gpu_only, "DaemonSet", "kata-deploy")
    assert env_of(ds)["SHIMS"] == "qemu-nvidia-gpu qemu-nvidia-gpu-snp qemu-nvidia-gpu-tdx"
    assert env_of(ds)["DEFAULT_SHIM_AMD64"] == "qemu-nvidia-gpu"
    assert ds["spec"]["template"]["spec"]["nodeSelector"] == {"nvidia.com/gpu.workload.config": "vm-passthrough"}

    cc_selector = {"nvidia.com/cc.ready.state": "false"}
    with_selector = render(
        helm,
        helm_env,
        STANDINS / "kata-deploy",
        tmp_path,
        {
            "shims": {"qemu-nvidia-gpu": {"enabled": True, "runtimeClass": {"nodeSelector": cc_selector}}},
            "runtimeClasses": {"createDefault": True},
            "defaultShim": {"amd64": "qemu-nvidia-gpu"},
        },
    )
    assert find(with_selector, "RuntimeClass", "kata-qemu-nvidia-gpu")["scheduling"]["nodeSelector"] == {
        "katacontainers.io/kata-runtime": "true",
        "nvidia.com/cc.ready.state": "false",
    }
    assert find(with_selector, "RuntimeClass", "kata")["handler"] == "kata-qemu-nvidia-gpu"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        # What the real 3.24.0 chart dies on deep in a template: every key under shims is a shim.
        ({"shims": {"disableAll": True}}, "/shims/disableAll"),
        ({"shims": {"qemu-nvidia-gpu": {"enabeld": True}}}, "enabeld"),
        ({"shims": {"qemu-nvidia-gpu": {"enabled": "yes"}}}, "/shims/qemu-nvidia-gpu/enabled"),
        ({"runtimeClasses": {"createDefualt": True}}, "createDefualt"),
        ({"k8sDistribution": "openshift"}, "/k8sDistribution"),
    ],
)
def test_kata_deploy_refuses_what_3_24_0_does_not_read(
    helm: Path, helm_env: dict[str, str], tmp_path: Path, values: dict[str, Any], message: str
) -> None:
    assert message in template_error(helm, helm_env, "kata-deploy", tmp_path, values)


def test_broken_chart_renders_the_value_the_api_server_rejects(
    helm: Path, helm_env: dict[str, str], tmp_path: Path
) -> None:
    objs = render(helm, helm_env, BROKEN, tmp_path, MIG_VALUES)
    assert find(objs, "Deployment", "gpu-operator")["spec"]["replicas"] == -1
    find(objs, "ConfigMap", "gpu-operator-broken-marker")
    assert yaml.safe_load((BROKEN / "Chart.yaml").read_text())["version"] == BROKEN_VERSION


# --------------------------------------------------------------------------------------------
# Installing on a bare kube-apiserver (a private one-member fleet: the charts create
# cluster-scoped objects that must not collide with other tests' releases)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BareCluster:
    kubeconfig: Path
    kubectl: Path
    standins: StandIns

    def admits_namespaces(self) -> bool:
        """A namespace create passes admission (server-side dry run: every webhook is called)."""
        proc = subprocess.run(
            [str(self.kubectl), "--kubeconfig", str(self.kubeconfig), "create", "namespace", "admission-probe",
             "--dry-run=server"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        return proc.returncode == 0

    def json(self, *args: str) -> Any:
        """``kubectl <args> -o json`` against this cluster."""
        out = subprocess.run(
            [str(self.kubectl), "--kubeconfig", str(self.kubeconfig), *args, "-o", "json"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return yaml.safe_load(out.stdout)


@pytest.fixture(scope="module")
def bare_cluster(kube_binaries: Binaries, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BareCluster]:
    """A fresh member API server with no kubelets and no controllers; the stand-ins complete hook
    Jobs (and play Gatekeeper's template controller), as a working cluster's controllers would."""
    spec = FleetFile(members=[MemberSpec(name="charts", control_plane="api-only")])
    with running_fleet(tmp_path_factory.mktemp("charts-fleet"), spec, kube_binaries) as fleet:
        simulator = StandIns(fleet)
        simulator.start()
        try:
            yield BareCluster(fleet.members[0].kubeconfig, kube_binaries.kubectl, simulator)
        finally:
            simulator.stop()


@pytest.mark.fleet
def test_every_standin_installs_on_a_bare_api_server(
    helm: Path, helm_env: dict[str, str], repo_url: str, bare_cluster: BareCluster, tmp_path: Path
) -> None:
    values = {
        "gpu-operator": {
            **MIG_VALUES,
            "migManager": {"config": {**MIG_VALUES["migManager"]["config"], "name": "default-mig-parted-config"}},
            "devicePlugin": {
                "config": {
                    "create": True,
                    "name": "time-slicing-config",
                    "default": "any",
                    "data": {"any": yaml.safe_dump(TIME_SLICING)},
                }
            },
            "sandboxWorkloads": {"enabled": True},
            "dcgmExporter": {"serviceMonitor": {"enabled": True}},
        },
        "kai-scheduler": {
            "global": {"gpuSharing": True},
            "defaultQueue": {"createDefaultQueue": True},
            "defaultShard": {"enabled": True},
        },
        "dcgm-exporter": {"serviceMonitor": {"enabled": True}},
        "gatekeeper": {"replicas": 2},
        "kata-deploy": {},
    }
    namespaces = {
        "gpu-operator": "gpu-operator",
        "kai-scheduler": "kai-scheduler",
        "dcgm-exporter": "monitoring",
        "gatekeeper": "gatekeeper-system",
        "kata-deploy": "kata-system",
    }
    for name, version in EXPECTED.items():
        values_file = tmp_path / f"{name}.yaml"
        values_file.write_text(yaml.safe_dump(values[name]))
        run_helm(
            helm,
            helm_env,
            "install",
            name,
            name,
            "--repo",
            repo_url,
            "--version",
            version,
            "--namespace",
            namespaces[name],
            "--create-namespace",
            "-f",
            str(values_file),
            "--kubeconfig",
            str(bare_cluster.kubeconfig),
            "--wait=false",
        )
        status = run_helm(
            helm,
            helm_env,
            "status",
            name,
            "-n",
            namespaces[name],
            "-o",
            "json",
            "--kubeconfig",
            str(bare_cluster.kubeconfig),
        )
        assert yaml.safe_load(status.stdout)["info"]["status"] == "deployed"
        # As `helm install --wait` would: Gatekeeper's webhooks fail closed on namespace
        # changes (check-ignore-label), so the next chart's namespace is admitted only once
        # its webhook server runs (here: the responder behind the running Deployment).
        wait_for(lambda: bare_cluster.admits_namespaces(), timeout=60, what=f"namespaces admitted after {name}")

    mig_cm = bare_cluster.json("get", "configmap", "default-mig-parted-config", "-n", "gpu-operator")
    assert "all-1g.10gb" in yaml.safe_load(mig_cm["data"]["config.yaml"])["mig-configs"]
    policy = bare_cluster.json("get", "clusterpolicies.nvidia.com", "cluster-policy")
    assert policy["spec"]["mig"]["strategy"] == "mixed"
    daemonsets = bare_cluster.json("get", "daemonsets", "-n", "gpu-operator")
    assert "nvidia-sandbox-device-plugin-daemonset" in {d["metadata"]["name"] for d in daemonsets["items"]}
    runtime_classes = bare_cluster.json("get", "runtimeclasses")
    assert {"kata-qemu-nvidia-gpu", "kata-qemu-nvidia-gpu-snp", "kata-qemu-nvidia-gpu-tdx"} <= {
        r["metadata"]["name"] for r in runtime_classes["items"]
    }
    # No Prometheus operator here: the ServiceMonitors were skipped instead of failing the install.
    assert (
        "servicemonitors"
        not in subprocess.run(
            [
                str(helm),
                "get",
                "manifest",
                "gpu-operator",
                "-n",
                "gpu-operator",
                "--kubeconfig",
                str(bare_cluster.kubeconfig),
            ],
            env=helm_env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.lower()
    )

    # The CRDs the charts bring accept the objects a blueprint applies next.
    objects = tmp_path / "objects.yaml"
    objects.write_text(
        yaml.safe_dump_all(
            [
                {
                    "apiVersion": "scheduling.run.ai/v2",
                    "kind": "Queue",
                    "metadata": {"name": "team-a"},
                    "spec": {
                        "parentQueue": "default-parent-queue",
                        "priority": 100,
                        "resources": {
                            r: {"quota": 2, "limit": -1, "overQuotaWeight": 1} for r in ("gpu", "cpu", "memory")
                        },
                    },
                },
                {
                    "apiVersion": "templates.gatekeeper.sh/v1",
                    "kind": "ConstraintTemplate",
                    "metadata": {"name": "k8sgpurequireskaiqueue"},
                    "spec": {
                        "crd": {"spec": {"names": {"kind": "K8sGpuRequiresKaiQueue"}}},
                        "targets": [
                            {
                                "target": "admission.k8s.gatekeeper.sh",
                                "rego": "package k8sgpurequireskaiqueue\n",
                            }
                        ],
                    },
                },
            ]
        )
    )
    applied = bare_cluster.json("apply", "-f", str(objects))
    assert len(applied["items"]) == 2
    # Gatekeeper's controller (played by the simulator) serves the template's constraint kind.
    constraint = tmp_path / "constraint.yaml"
    constraint.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "constraints.gatekeeper.sh/v1beta1",
                "kind": "K8sGpuRequiresKaiQueue",
                "metadata": {"name": "gpu-pods-need-a-queue"},
                "spec": {
                    "enforcementAction": "deny",
                    "match": {"kinds": [{"apiGroups": [""], "kinds": ["Pod"]}]},
                },
            }
        )
    )
    wait_for(
        lambda: (
            subprocess.run(
                [
                    str(bare_cluster.kubectl),
                    "--kubeconfig",
                    str(bare_cluster.kubeconfig),
                    "apply",
                    "-f",
                    str(constraint),
                ],
                capture_output=True,
                timeout=60,
            ).returncode
            == 0
        ),
        timeout=60,
        what="the constraint CRD to be served",
    )
    # Gatekeeper's webhooks are live: the member's API server calls gatekeeper-webhook-service on
    # its loopback ClusterIP, where the fleet's responder answers for the ready controller-manager
    # (and has patched the caBundle, as Gatekeeper's cert-controller does).
    webhook = bare_cluster.json("get", "validatingwebhookconfigurations", "gatekeeper-validating-webhook-configuration")
    assert all(h["clientConfig"].get("caBundle") for h in webhook["webhooks"])
    service_ip = bare_cluster.json("get", "service", "-n", namespaces["gatekeeper"], "gatekeeper-webhook-service")[
        "spec"
    ]["clusterIP"]
    assert service_ip.startswith("127.")
    bare_cluster.json("create", "namespace", "after-gatekeeper")
    answered = {(a.path, a.kind, a.name, a.target.ip) for a in bare_cluster.standins.webhooks["charts"].answers}
    assert ("/v1/admitlabel", "Namespace", "after-gatekeeper", service_ip) in answered
    assert ("/v1/admit", "Namespace", "after-gatekeeper", service_ip) in answered
    # Every hook Job ran to completion and was deleted (hook-succeeded): nothing is left over.
    for ns in namespaces.values():
        assert bare_cluster.json("get", "jobs", "-n", ns)["items"] == []
    queue = bare_cluster.json("get", "queues.scheduling.run.ai", "team-a")
    assert queue["spec"]["resources"]["gpu"]["quota"] == 2


@pytest.mark.fleet
def test_broken_chart_install_fails_at_the_api_server(
    helm: Path, helm_env: dict[str, str], repo_url: str, bare_cluster: BareCluster
) -> None:
    proc = run_helm(
        helm,
        helm_env,
        "install",
        "broken",
        "gpu-operator",
        "--repo",
        repo_url,
        "--version",
        BROKEN_VERSION,
        "--namespace",
        "broken",
        "--create-namespace",
        "--kubeconfig",
        str(bare_cluster.kubeconfig),
        check=False,
    )
    assert proc.returncode != 0
    assert "spec.replicas: Invalid value: -1" in proc.stderr
    status = run_helm(
        helm,
        helm_env,
        "status",
        "broken",
        "-n",
        "broken",
        "-o",
        "json",
        "--kubeconfig",
        str(bare_cluster.kubeconfig),
    )
    assert yaml.safe_load(status.stdout)["info"]["status"] == "failed"
    # The partial install left the object created before the failing one.
    bare_cluster.json("get", "configmap", "gpu-operator-broken-marker", "-n", "broken")
