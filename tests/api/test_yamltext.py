"""YAML written for Go readers: every string is read back as a string, by PyYAML and by Helm
(Go's sigs.k8s.io/yaml), which is what kubectl and the charts' consumers use."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from blueprintd.api import yamltext
from blueprintd.devfleet.binaries import Binaries

# Strings PyYAML leaves unquoted (YAML 1.1 reads them as strings) that Go reads as numbers,
# then the ones it already quotes, then ordinary text that must stay unquoted.
GO_NUMBERS = ["001935", "09", "1e3", "0o17", "-0012", "1.5e10", "0777"]
ALREADY_QUOTED = ["123", "1.5", "yes", "off", "true", "null", "~", "0x1F", ".inf", "1_000", ""]
PLAIN = ["a100", "nvidia.com/gpu", "v25.10.0", "1.2.3", "h100-80gb", "line one\nline two\n"]


@pytest.mark.parametrize("text", GO_NUMBERS + ALREADY_QUOTED)
def test_ambiguous_strings_are_quoted(text: str) -> None:
    assert yamltext.ambiguous(text)
    assert yamltext.dump({"v": text})[len("v: ")] in "'\""


@pytest.mark.parametrize("text", PLAIN)
def test_ordinary_strings_are_written_as_pyyaml_writes_them(text: str) -> None:
    assert not yamltext.ambiguous(text)
    assert yamltext.dump({"v": text}) == yaml.safe_dump({"v": text})


def test_round_trip_keeps_types() -> None:
    data = {"s": GO_NUMBERS + ALREADY_QUOTED + PLAIN, "i": 7, "f": 1.5, "b": True, "n": None}
    assert yaml.safe_load(yamltext.dump(data)) == data
    docs = [{"a": "09"}, {"b": ["1e3"]}]
    assert list(yaml.safe_load_all(yamltext.dump_all(docs))) == docs


def _go_reads(helm: Path, tmp_path: Path, values_text: str) -> dict[str, object]:
    """What Go reads from ``values_text``: each value and its Go kind, through `helm template`."""
    chart = tmp_path / "probe"
    (chart / "templates").mkdir(parents=True, exist_ok=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: probe\nversion: 0.1.0\n")
    (chart / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: probe\n"
        "data:\n  kinds: {{ toJson (dict \"v\" .Values.v) | quote }}\n"
        "  types: '{{ range .Values.v }}{{ kindOf . }} {{ end }}'\n"
    )
    values = tmp_path / "values.yaml"
    values.write_text(values_text)
    out = subprocess.run([str(helm), "template", "probe", str(chart), "-f", str(values)],
                         capture_output=True, text=True, check=True).stdout
    cm = yaml.safe_load(out.split("---", 1)[1])
    return {"values": json.loads(cm["data"]["kinds"])["v"], "kinds": cm["data"]["types"].split()}


def test_go_reads_every_string_back_as_a_string(kube_binaries: Binaries, tmp_path: Path) -> None:
    strings = GO_NUMBERS + ALREADY_QUOTED + PLAIN
    # The reason for the module: Go reads PyYAML's plain "001935" as a number.
    assert _go_reads(kube_binaries.helm, tmp_path, yaml.safe_dump({"v": ["001935"]}))["kinds"] == ["float64"]
    seen = _go_reads(kube_binaries.helm, tmp_path, yamltext.dump({"v": strings}))
    assert seen == {"values": strings, "kinds": ["string"] * len(strings)}
