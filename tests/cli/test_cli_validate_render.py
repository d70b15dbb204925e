"""``blueprintd validate`` and ``blueprintd render`` as users run them."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from blueprintd.cli.main import app

REPO_ROOT = Path(__file__).resolve().parents[2]
BLUEPRINT = REPO_ROOT / "blueprints" / "gpu-platform"
FACTS = REPO_ROOT / "examples" / "facts"

runner = CliRunner()

BROKEN = """\
apiVersion: blueprintd.io/v1alpha1
kind: Blueprint
metadata:
  name: broken
spec:
  version: 1.0
  addons:
    - name: a
      namespace: ns
      dependsOn: [b]
      manifests: []
    - name: b
      namespace: ns
      dependsOn: [a]
      helm: {repo: https://x, chart: c, version: 1.0.0, valus: {}}
  overlays:
    - name: o
      when: pool.gpuCount > 0
"""


def test_validate_default_blueprint_ok() -> None:
    result = runner.invoke(app, ["validate", str(BLUEPRINT)])
    assert result.exit_code == 0, result.output
    assert "ok Blueprint gpu-platform@1.0.0" in result.stderr


def test_validate_lists_every_problem_with_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN)
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 1
    lines = result.stdout.strip().splitlines()
    assert f"{path}:6: spec.version: expected a string, got a number 1.0 (YAML read it as a number: quote it)" in lines
    assert any(
        line.startswith(f"{path}:15: spec.addons[1].helm.valus: unknown field 'valus' (allowed: repo,")
        for line in lines
    )
    assert "2 problems found" in result.stderr  # relational checks run once the schema is valid
    assert "Traceback" not in result.output


def test_validate_semantic_problems(tmp_path: Path) -> None:
    path = tmp_path / "cycle.yaml"
    path.write_text(BROKEN.replace("version: 1.0\n", "version: 1.0.0\n").replace(", valus: {}", ""))
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 1
    out = result.stdout
    assert "dependency cycle: a → b → a" in out
    assert f"{path}:18: spec.overlays[0].when: invalid condition: unknown variable 'pool'" in out


def test_validate_json_output(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN)
    result = runner.invoke(app, ["validate", str(path), "-o", "json"])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["valid"] is False
    assert {"file": str(path), "line": 6, "field": "spec.version"}.items() <= report["issues"][0].items()
    ok = runner.invoke(app, ["validate", str(BLUEPRINT), "-o", "json"])
    assert ok.exit_code == 0
    assert json.loads(ok.stdout)["objects"][0] == {
        "kind": "Blueprint",
        "name": "gpu-platform",
        "version": "1.0.0",
        "file": str(BLUEPRINT / "blueprint.yaml"),
        "line": 5,
    }


def test_validate_missing_path_is_a_usage_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", str(tmp_path / "nope")])
    assert result.exit_code == 2


def test_validate_empty_folder(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", str(tmp_path)])
    assert result.exit_code == 1
    assert "no blueprintd objects found" in result.stderr


def test_render_yaml_and_explain() -> None:
    result = runner.invoke(app, ["render", str(BLUEPRINT), "--facts", str(FACTS / "mixed.yaml"), "--explain"])
    assert result.exit_code == 0, result.output
    state = yaml.safe_load(result.stdout)
    assert state["blueprint"] == "gpu-platform" and state["cluster"] == "mixed-1"
    labels = {n["pool"]: n["labels"] for n in state["nodeLabels"]}
    assert labels["h100-80gb"]["nvidia.com/mig.config"] == "all-1g.10gb"
    assert labels["l4"]["nvidia.com/device-plugin.config"] == "ts-l4"
    assert "time-slicing" in result.stderr and "install order: gatekeeper → gpu-operator" in result.stderr
    assert "node labels, pool h100-80gb (2 nodes)" in result.stderr


def test_render_json_is_byte_identical_across_runs() -> None:
    args = ["render", str(BLUEPRINT), "-f", str(FACTS / "sandbox.yaml"), "-o", "json"]
    first = runner.invoke(app, args)
    second = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert first.stdout == second.stdout
    assert json.loads(first.stdout)["steps"][0]["addon"] == "gatekeeper"


def test_render_chart_mirror_and_param() -> None:
    result = runner.invoke(
        app,
        [
            "render",
            str(BLUEPRINT / "blueprint.yaml"),
            "-f",
            str(FACTS / "l4-only.yaml"),
            "-o",
            "json",
            "--chart-mirror",
            "https://helm.ngc.nvidia.com/nvidia=http://127.0.0.1:9999/nvidia",
            "-p",
            "timeSlicingReplicas=8",
        ],
    )
    assert result.exit_code == 0, result.output
    state = json.loads(result.stdout)
    gpu = next(s for s in state["steps"] if s["addon"] == "gpu-operator")
    assert gpu["helm"]["repo"] == "http://127.0.0.1:9999/nvidia"
    assert gpu["helm"]["upstreamRepo"] == "https://helm.ngc.nvidia.com/nvidia"
    assert "replicas: 8" in gpu["helm"]["values"]["devicePlugin"]["config"]["data"]["ts-l4"]
    assert state["parameters"] == {"timeSlicingReplicas": 8}


def test_render_bad_mirror_option_is_a_usage_error() -> None:
    result = runner.invoke(
        app, ["render", str(BLUEPRINT), "-f", str(FACTS / "l4-only.yaml"), "--chart-mirror", "nomirror"]
    )
    assert result.exit_code == 2
    assert "UPSTREAM=VALUE" in result.output


def test_render_invalid_facts_names_file_line_and_field(tmp_path: Path) -> None:
    facts = tmp_path / "facts.yaml"
    facts.write_text("cluster: x\npools:\n  - name: p\n    gpuCount: many\n")
    result = runner.invoke(app, ["render", str(BLUEPRINT), "-f", str(facts)])
    assert result.exit_code == 1
    assert f"{facts}:4: pools[0].gpuCount: expected an integer, got a string 'many'" in result.stdout
    assert "Traceback" not in result.output


def test_render_unknown_parameter_is_a_clean_error() -> None:
    result = runner.invoke(app, ["render", str(BLUEPRINT), "-f", str(FACTS / "l4-only.yaml"), "-p", "nope=1"])
    assert result.exit_code == 1
    assert "error: parameter 'nope' is not declared" in result.stderr
    assert "Traceback" not in result.output


def test_render_several_blueprints_need_a_choice(tmp_path: Path) -> None:
    data = yaml.safe_load((BLUEPRINT / "blueprint.yaml").read_text())
    other = dict(data, metadata={"name": "other"})
    (tmp_path / "bps.yaml").write_text(yaml.safe_dump_all([data, other]))
    result = runner.invoke(app, ["render", str(tmp_path), "-f", str(FACTS / "mixed.yaml")])
    assert result.exit_code == 1
    assert "holds 2 Blueprints (gpu-platform, other); choose one with --blueprint" in result.stderr
    chosen = runner.invoke(app, ["render", str(tmp_path), "-f", str(FACTS / "mixed.yaml"), "-b", "other"])
    assert chosen.exit_code == 0
    assert yaml.safe_load(chosen.stdout)["blueprint"] == "other"


def test_help_texts_teach_with_examples() -> None:
    for command in ("validate", "render"):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0
        assert "Examples" in result.stdout
        assert f"blueprintd {command}" in result.stdout
