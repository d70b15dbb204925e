"""``blueprintd validate --charts``: the real helm templates the pinned charts (the stand-ins,
served from a local chart repository on 127.0.0.1) with the values rendered for each cluster."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from blueprintd.cli.main import app
from blueprintd.devfleet.binaries import Binaries
from blueprintd.devfleet.chartrepo import ChartRepoServer, build_chart_repo
from blueprintd.devfleet.chartserve import chart_sources

REPO_ROOT = Path(__file__).resolve().parents[2]
BLUEPRINT = REPO_ROOT / "blueprints" / "gpu-platform" / "blueprint.yaml"
FACTS = sorted((REPO_ROOT / "examples" / "facts").glob("*.yaml"))
# Every chart repository the default blueprint pins.
UPSTREAMS = [
    "https://helm.ngc.nvidia.com/nvidia",
    "oci://ghcr.io/blueprintd/charts",
    "oci://ghcr.io/nvidia/kai-scheduler",
    "https://open-policy-agent.github.io/gatekeeper/charts",
    "oci://ghcr.io/kata-containers/kata-deploy-charts",
]
HELM_ADDONS = {"gpu-operator", "dra-driver", "kai-scheduler", "gatekeeper", "kata"}

runner = CliRunner()


@pytest.fixture(scope="module")
def repo_dir(kube_binaries: Binaries, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_chart_repo(chart_sources(), tmp_path_factory.mktemp("validate-charts"), kube_binaries.helm)


@pytest.fixture(scope="module")
def repo_url(repo_dir: Path) -> Iterator[str]:
    with ChartRepoServer(repo_dir) as server:
        yield server.url


def closed_port_url() -> str:
    """An address on 127.0.0.1 where nothing listens: the "no network" of these tests."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def args(
    helm: Path, url: str, cache: Path, *paths: Path, facts: list[Path] | None = None, json_out: bool = False
) -> list[str]:
    out = ["validate", "--charts", "--helm", str(helm), "--chart-cache", str(cache)]
    for f in facts if facts is not None else FACTS:
        out += ["--facts", str(f)]
    for upstream in UPSTREAMS:
        out += ["--chart-mirror", f"{upstream}={url}"]
    if json_out:
        out += ["-o", "json"]
    return out + [str(p) for p in paths]


def with_kata_values(tmp_path: Path, change: dict[str, Any]) -> Path:
    """The default blueprint with ``change`` merged into the kata add-on's values."""
    doc = yaml.safe_load(BLUEPRINT.read_text())
    kata = next(a for a in doc["spec"]["addons"] if a["name"] == "kata")
    for key, value in change.items():
        kata["helm"]["values"].setdefault(key, {}).update(value)
    path = tmp_path / "blueprint.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.fleet
def test_default_blueprint_passes_for_every_example_facts_file(
    kube_binaries: Binaries, repo_url: str, tmp_path: Path
) -> None:
    result = runner.invoke(app, args(kube_binaries.helm, repo_url, tmp_path / "cache", BLUEPRINT))
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert all(": ok (" in line for line in lines), lines
    # Every Helm add-on was checked for every example cluster.
    clusters = {yaml.safe_load(f.read_text())["cluster"] for f in FACTS}
    covered: dict[str, set[str]] = {}
    for line in lines:
        addon = line.split(" ", 1)[0]
        targets = line.split(" for ", 1)[1].split(": ok", 1)[0]
        covered.setdefault(addon, set()).update(t.strip() for t in targets.split(","))
    assert covered == {addon: clusters for addon in HELM_ADDONS}
    assert "charts ok" in result.stderr


@pytest.mark.fleet
def test_a_wrong_kata_key_is_reported_per_addon_and_cluster_with_helms_message(
    kube_binaries: Binaries, repo_url: str, tmp_path: Path
) -> None:
    path = with_kata_values(tmp_path, {"shims": {"disableAll": True}})
    result = runner.invoke(app, args(kube_binaries.helm, repo_url, tmp_path / "cache", path, facts=FACTS[:2]))
    assert result.exit_code == 1, result.output
    bad = [line for line in result.stdout.splitlines() if ": ok (" not in line]
    names = ", ".join(yaml.safe_load(f.read_text())["cluster"] for f in FACTS[:2])
    assert bad == [f"kata (kata-deploy 3.24.0) for {names}: schema: shims.disableAll: got boolean, want object"]
    assert "1 chart check failed" in result.stderr


@pytest.mark.fleet
def test_json_report(kube_binaries: Binaries, repo_url: str, tmp_path: Path) -> None:
    path = with_kata_values(tmp_path, {"runtimeClasses": {"createDefualt": True}})
    result = runner.invoke(
        app, args(kube_binaries.helm, repo_url, tmp_path / "cache", path, facts=FACTS[:1], json_out=True)
    )
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report["valid"] is False and report["issues"] == []
    by_addon = {c["addon"]: c for c in report["charts"]}
    assert set(by_addon) == HELM_ADDONS
    kata = by_addon["kata"]
    assert kata["ok"] is False and kata["chart"] == "kata-deploy" and kata["version"] == "3.24.0"
    assert [p["kind"] for p in kata["problems"]] == ["schema"]
    assert "createDefualt" in kata["problems"][0]["message"]
    assert all(c["ok"] and c["objects"] > 0 for a, c in by_addon.items() if a != "kata")


@pytest.mark.fleet
def test_a_typo_in_a_chart_without_schema_is_an_unknown_key(
    kube_binaries: Binaries, repo_url: str, tmp_path: Path
) -> None:
    doc = yaml.safe_load(BLUEPRINT.read_text())
    dra = next(a for a in doc["spec"]["addons"] if a["name"] == "dra-driver")
    dra["helm"]["values"]["deviceClasess"] = {"create": True}
    path = tmp_path / "blueprint.yaml"
    path.write_text(yaml.safe_dump(doc))
    result = runner.invoke(app, args(kube_binaries.helm, repo_url, tmp_path / "cache", path, facts=FACTS[:1]))
    assert result.exit_code == 1, result.output
    (bad,) = [line for line in result.stdout.splitlines() if ": ok (" not in line]
    assert bad.startswith("dra-driver (blueprintd-dra-driver 0.1.0) for ")
    assert "unknown-key: deviceClasess: chart blueprintd-dra-driver does not define deviceClasess" in bad


@pytest.mark.fleet
def test_charts_come_from_the_cache_once_pulled(kube_binaries: Binaries, repo_dir: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with ChartRepoServer(repo_dir) as server:
        url = server.url
        first = runner.invoke(app, args(kube_binaries.helm, url, cache, BLUEPRINT, facts=FACTS[:1]))
        assert first.exit_code == 0, first.output
    # The repository is gone: the same pinned charts are read from the cache.
    again = runner.invoke(app, args(kube_binaries.helm, url, cache, BLUEPRINT, facts=FACTS[:1]))
    assert again.exit_code == 0, again.output
    # A damaged archive is not trusted (its digest no longer matches) and cannot be pulled again.
    (archive,) = cache.glob("*/kata-deploy/3.24.0/*.tgz")
    archive.write_bytes(archive.read_bytes()[:100])
    damaged = runner.invoke(app, args(kube_binaries.helm, url, cache, BLUEPRINT, facts=FACTS[:1]))
    assert damaged.exit_code == 1
    (bad,) = [line for line in damaged.stdout.splitlines() if ": ok (" not in line]
    assert bad.startswith("kata (kata-deploy 3.24.0) for ")
    assert f"unavailable: could not get chart kata-deploy 3.24.0 from {url}" in bad


@pytest.mark.fleet
def test_without_network_or_cache_it_names_each_chart_it_could_not_get(
    kube_binaries: Binaries, tmp_path: Path
) -> None:
    url = closed_port_url()
    result = runner.invoke(app, args(kube_binaries.helm, url, tmp_path / "empty", BLUEPRINT, facts=FACTS[:1]))
    assert result.exit_code == 1
    lines = result.stdout.strip().splitlines()
    assert len(lines) == len(HELM_ADDONS)
    for line in lines:
        assert ": unavailable: could not get chart " in line and f" from {url}: " in line
    assert {line.split(" ", 1)[0] for line in lines} == HELM_ADDONS
    assert "Traceback" not in result.output


def test_charts_needs_clusters_to_render_for() -> None:
    result = runner.invoke(app, ["validate", "--charts", str(BLUEPRINT)])
    assert result.exit_code == 2
    text = " ".join(result.output.replace("│", " ").split())
    assert "--charts needs clusters to render for: --facts FILE (repeatable) or --kubeconfig" in text
