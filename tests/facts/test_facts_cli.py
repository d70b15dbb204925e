"""``blueprintd facts --local`` (and the command wiring) without a cluster."""

from __future__ import annotations

import json
from pathlib import Path

import pynvml
import pytest
import yaml
from typer.testing import CliRunner

from blueprintd.cli.facts import render_cluster
from blueprintd.cli.main import app
from blueprintd.facts.collect import build_cluster_facts

runner = CliRunner()


def test_local_fake_machine_json() -> None:
    args = ["facts", "--local", "--fake-nvml", "dgx-h100-mig", "--node-name", "n1", "-o", "json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["nodeName"] == "n1" and data["driverVersion"] == "550.54.15" and data["deviceCount"] == 8
    gpu = data["gpus"][0]
    assert gpu["productName"] == "NVIDIA H100 80GB HBM3" and gpu["architecture"] == "hopper"
    assert [m["placementStart"] for m in gpu["migDevices"]] == list(range(7))


def test_local_fake_machine_table_and_yaml() -> None:
    # --fake-nvml implies --local; a wide terminal so rich does not fold the product names
    table = runner.invoke(app, ["facts", "--fake-nvml", "dgx-a100-mig-mixed"], env={"COLUMNS": "200"})
    assert table.exit_code == 0, table.output
    assert "NVIDIA A100-SXM4-80GB" in table.stdout and "2x 1g.10gb" in table.stdout
    data = yaml.safe_load(
        runner.invoke(app, ["facts", "--local", "--fake-nvml", "t4-node", "-o", "yaml"]).stdout
    )
    assert data["gpus"][0]["productName"] == "Tesla T4"


def test_local_partial_discovery_prints_and_exits_1() -> None:
    result = runner.invoke(app, ["facts", "--local", "--fake-nvml", "dgx-h100-gpu-lost", "-o", "json"])
    assert result.exit_code == 1
    assert len(json.loads(result.stdout)["gpus"]) == 7
    assert "warning: GPU 5" in result.stderr and "GPU_IS_LOST" in result.stderr


@pytest.mark.parametrize("machine", ["no-driver", "driver-not-loaded"])
def test_no_driver_fake(machine: str) -> None:
    result = runner.invoke(app, ["facts", "--local", "--fake-nvml", machine])
    assert result.exit_code == 1
    assert "no NVIDIA driver found" in result.stderr and "Traceback" not in result.output


def test_no_driver_with_the_real_bindings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real pynvml code path when libnvidia-ml.so.1 cannot be opened (a CPU-only machine)."""

    def no_library(name: str, *args: object, **kwargs: object) -> object:
        raise OSError(f"{name}: cannot open shared object file: No such file or directory")

    monkeypatch.setattr(pynvml, "nvmlLib", None)
    monkeypatch.setattr(pynvml, "CDLL", no_library)
    monkeypatch.setattr(pynvml, "_nvmlGetFunctionPointer_cache", {})
    result = runner.invoke(app, ["facts", "--local"])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: no NVIDIA driver found")
    assert "NVML_ERROR_LIBRARY_NOT_FOUND" in result.stderr and "Traceback" not in result.output


def test_usage_errors() -> None:
    assert runner.invoke(app, ["facts"]).exit_code == 2
    both = runner.invoke(app, ["facts", "--local", "--kubeconfig", "x"])
    assert both.exit_code == 2 and "exactly one" in both.stderr
    assert runner.invoke(app, ["facts", "--local", "-o", "xml"]).exit_code == 2


def test_missing_kubeconfig_and_unknown_machine(tmp_path: Path) -> None:
    missing = runner.invoke(app, ["facts", "--kubeconfig", str(tmp_path / "nope")])
    assert missing.exit_code == 1 and "does not exist" in missing.stderr
    unknown = runner.invoke(app, ["facts", "--fake-nvml", "dgx-z900"])
    assert unknown.exit_code == 1 and "unknown fake machine" in unknown.stderr


def test_commands_are_registered() -> None:
    help_text = runner.invoke(app, ["--help"]).stdout
    assert "facts" in help_text and "node-agent" in help_text


def test_cluster_table_renders_pools_and_conflicts(capsys: pytest.CaptureFixture[str]) -> None:
    labels = {
        "nvidia.com/gpu.product": "NVIDIA-L4",
        "nvidia.com/gpu.count": "4",
        "nvidia.com/cuda.driver.major": "550",
        "nvidia.com/cuda.driver.minor": "90",
        "nvidia.com/cuda.driver.rev": "07",
    }
    from blueprintd.facts.annotation import ANNOTATION_KEY, encode_inventory
    from blueprintd.facts.nvml import FakeNvml, discover

    inv = discover(FakeNvml.from_machine("l4-server"))
    inv.driver_version = "570.86.15"
    annotations = {ANNOTATION_KEY: encode_inventory(inv)}
    node = {"metadata": {"name": "l4-a", "labels": labels, "annotations": annotations}}
    render_cluster(build_cluster_facts([node, {"metadata": {"name": "cpu-a"}}], cluster="c"))
    out = capsys.readouterr().out
    assert "l4" in out and "cpu" in out and "sources disagree" in out and "570.86.15" in out


def test_cluster_table_shows_a_gpu_count_range_and_the_pool_conflict(capsys: pytest.CaptureFixture[str]) -> None:
    def gfd(name: str, count: int) -> dict[str, object]:
        labels = {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3", "nvidia.com/gpu.count": str(count)}
        return {"metadata": {"name": name, "labels": labels}}

    render_cluster(build_cluster_facts([gfd("a", 8), gfd("b", 2)], cluster="c"))
    out = capsys.readouterr().out
    row = next((line for line in out.splitlines() if "2-8" in line), "")
    assert row.split("│")[5].strip() == "10", out  # GPUs per node 2-8, 10 in the pool
    assert "nodes of one pool differ" in out
