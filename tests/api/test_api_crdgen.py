"""The CRDs in crds/ are generated from the models, structural, and documented."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from blueprintd.api import crdgen

REPO_ROOT = Path(__file__).resolve().parents[2]


def walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        out.append((path, node))
        for key, value in node.get("properties", {}).items():
            out.extend(walk(value, f"{path}.{key}"))
        if "items" in node:
            out.extend(walk(node["items"], f"{path}[]"))
        if isinstance(node.get("additionalProperties"), dict):
            out.extend(walk(node["additionalProperties"], f"{path}{{}}"))
    return out


def schemas() -> dict[str, dict[str, Any]]:
    return {
        spec.kind: crdgen.build_crd(spec)["spec"]["versions"][0]["schema"]["openAPIV3Schema"] for spec in crdgen.KINDS
    }


def test_crds_in_repository_are_up_to_date(tmp_path: Path) -> None:
    written = crdgen.write(tmp_path)
    assert len(written) == len(crdgen.KINDS) + 1  # the CRDs and the parameters admission policy
    for path in written:
        committed = REPO_ROOT / "crds" / path.name
        assert committed.is_file(), f"{committed} is missing: run python -m blueprintd.api.crdgen"
        assert committed.read_text() == path.read_text(), f"{committed} is stale: run python -m blueprintd.api.crdgen"
    assert crdgen.stale(REPO_ROOT / "crds") == []


def test_check_mode_reports_stale_files(tmp_path: Path) -> None:
    crdgen.write(tmp_path)
    target = tmp_path / "blueprints.blueprintd.io.yaml"
    target.write_text(target.read_text().replace("Published version", "changed"))
    assert crdgen.main(["--out", str(tmp_path), "--check"]) == 1
    assert crdgen.main(["--out", str(tmp_path)]) == 0
    assert crdgen.main(["--out", str(tmp_path), "--check"]) == 0


def test_schemas_are_structural() -> None:
    for kind, schema in schemas().items():
        for path, node in walk(schema):
            assert "anyOf" not in node and "oneOf" not in node and "$ref" not in node, f"{kind}{path}"
            assert node.get("additionalProperties") is not False, f"{kind}{path}"
            assert "default" not in node and "title" not in node, f"{kind}{path}"
            typed = "type" in node
            assert (
                typed or node.get("x-kubernetes-preserve-unknown-fields") or node.get("x-kubernetes-int-or-string")
            ), f"{kind}{path} has no type"


def test_every_field_has_a_description() -> None:
    for kind, schema in schemas().items():
        for path, node in walk(schema):
            for name, prop in node.get("properties", {}).items():
                if path == "" and name == "metadata":
                    continue
                assert prop.get("description"), f"{kind}{path}.{name} has no description"


def test_free_form_fields_keep_unknown_fields() -> None:
    bp = schemas()["Blueprint"]["properties"]["spec"]["properties"]
    addon = bp["addons"]["items"]["properties"]
    assert addon["helm"]["properties"]["values"]["x-kubernetes-preserve-unknown-fields"] is True
    assert addon["manifests"]["items"]["x-kubernetes-preserve-unknown-fields"] is True
    assert bp["rollout"]["properties"]["maxUnavailable"]["x-kubernetes-int-or-string"] is True


def test_blueprint_version_rule_and_columns() -> None:
    crd = crdgen.build_crd(crdgen.KINDS[0])
    version = crd["spec"]["versions"][0]
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    rules = {r["rule"]: r["message"] for r in spec["x-kubernetes-validations"]}
    assert rules["oldSelf.version != self.version || oldSelf == self"].startswith(
        "spec changed without a new spec.version"
    )
    assert spec["properties"]["version"]["pattern"].startswith("^(0|[1-9]")
    assert [c["name"] for c in version["additionalPrinterColumns"]] == ["Version", "Clusters", "Ready", "Age"]
    assert version["subresources"] == {"status": {}}
    assert crd["spec"]["names"]["shortNames"] == ["bp"]


def test_member_cluster_columns() -> None:
    crd = next(crdgen.build_crd(s) for s in crdgen.KINDS if s.kind == "MemberCluster")
    names = [c["name"] for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]]
    assert names[:4] == ["Reachable", "Blueprint", "Ready", "Drift"]


def test_generated_yaml_has_no_anchors() -> None:
    for text in crdgen.render_files().values():
        assert "&id" not in text and "*id" not in text
        list(yaml.safe_load_all(text))
