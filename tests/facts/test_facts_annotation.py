"""The node agent annotation format, and the pure patch planning of the agent."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blueprintd.api.facts import NodeGpuInventory
from blueprintd.errors import ValidationError
from blueprintd.facts.agent import plan_node_update
from blueprintd.facts.annotation import (
    ANNOTATION_KEY,
    LABEL_COUNT,
    LABEL_MIG_ENABLED,
    LABEL_PARTIAL,
    LABEL_PRODUCT,
    decode_inventory,
    encode_inventory,
    inventory_labels,
    label_value,
)
from blueprintd.facts.nvml import FakeNvml, discover


def _inv(machine: str, node: str = "n1") -> NodeGpuInventory:
    return discover(FakeNvml.from_machine(machine), node, raise_on_unavailable=False)


@pytest.mark.parametrize("machine", FakeNvml.machines())
def test_roundtrip_every_machine(machine: str) -> None:
    inv = _inv(machine)
    value = encode_inventory(inv)
    assert json.loads(value)["v"] == 1
    assert "nodeName" not in json.loads(value)
    assert decode_inventory(value, "n1") == inv
    assert len(value) < 32 * 1024  # far below the 256 KiB annotation budget, even for 56 MIG devices


def test_encoding_is_stable_and_compact() -> None:
    a, b = encode_inventory(_inv("dgx-h100")), encode_inventory(_inv("dgx-h100"))
    assert a == b and ": " not in a and ", " not in a
    assert '"partial"' not in a  # defaults are left out


def test_unknown_fields_of_a_newer_agent_are_ignored() -> None:
    doc = json.loads(encode_inventory(_inv("dgx-h100-mig")))
    doc["futureField"] = 1
    doc["gpus"][0]["powerLimitWatts"] = 700
    doc["gpus"][0]["migDevices"][0]["newThing"] = True
    inv = decode_inventory(json.dumps(doc))
    assert len(inv.gpus) == 8 and len(inv.gpus[0].mig_devices) == 7


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("{nope", "not JSON"),
        ("[]", "JSON object"),
        ('{"v": 2}', "version 2"),
        ('{"gpus": []}', "version None"),
        ('{"v": 1, "gpus": [{"index": "x"}]}', "invalid inventory"),
    ],
)
def test_bad_annotations_are_validation_errors(value: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        decode_inventory(value, "n1")


def test_labels() -> None:
    labels = inventory_labels(_inv("dgx-h100-mig"))
    assert labels == {
        "blueprintd.io/gpu.product": "NVIDIA-H100-80GB-HBM3",
        "blueprintd.io/gpu.count": "8",
        "blueprintd.io/gpu.memory": "81559",
        "blueprintd.io/gpu.family": "hopper",
        "blueprintd.io/mig.capable": "true",
        "blueprintd.io/mig.enabled": "true",
    }
    lost = inventory_labels(_inv("dgx-h100-gpu-lost"))
    assert lost[LABEL_COUNT] == "8" and lost[LABEL_PARTIAL] == "true"
    none = inventory_labels(_inv("no-driver"))
    assert none == {LABEL_COUNT: "0", LABEL_PARTIAL: "true"}


@given(st.text(max_size=200))
def test_label_values_are_always_valid(raw: str) -> None:
    value = label_value(raw)
    assert len(value) <= 63
    assert all(c.isascii() and (c.isalnum() or c in "-_.") for c in value)
    assert not value or (value[0].isalnum() and value[-1].isalnum())


# Models are built from camelCase wire dicts (what the annotation holds), via model_validate.
_mig = st.fixed_dictionaries(
    {
        "uuid": st.uuids().map(lambda u: f"MIG-{u}"),
        "profile": st.sampled_from(["1g.10gb", "3g.40gb", "7g.80gb"]),
        "giProfileId": st.sampled_from([19, 9, 0]),
        "placementStart": st.integers(0, 7),
        "placementSize": st.sampled_from([1, 4, 8]),
        "memoryBytes": st.integers(0, 2**40),
    }
)
_gpu = st.fixed_dictionaries(
    {
        "index": st.integers(0, 15),
        "minor": st.integers(0, 15),
        "uuid": st.uuids().map(lambda u: f"GPU-{u}"),
        "productName": st.sampled_from(["NVIDIA H100 80GB HBM3", "NVIDIA L4", "Tesla T4"]),
        "memoryBytes": st.integers(0, 2**40),
        "migEnabled": st.booleans(),
        "migDevices": st.lists(_mig, max_size=7),
    }
)
_inventory = st.fixed_dictionaries(
    {
        "driverVersion": st.text(max_size=20),
        "deviceCount": st.integers(0, 16),
        "gpus": st.lists(_gpu, max_size=8),
        "partial": st.booleans(),
        "errors": st.lists(st.text(max_size=40), max_size=3),
    }
).map(NodeGpuInventory.model_validate)


@settings(max_examples=50)
@given(_inventory)
def test_roundtrip_property(inv: NodeGpuInventory) -> None:
    assert decode_inventory(encode_inventory(inv)) == inv


# --- agent planning (pure) ----------------------------------------------------------------


def _node(
    labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None
) -> dict[str, object]:
    return {"metadata": {"name": "n1", "labels": labels or {}, "annotations": annotations or {}}}


def _apply(node: dict[str, object], patch: dict[str, object]) -> dict[str, object]:
    """What the API server does with a JSON merge patch of labels/annotations."""
    meta = dict(node["metadata"])  # type: ignore[arg-type]
    for section in ("labels", "annotations"):
        merged = dict(meta.get(section) or {})
        for k, v in (patch["metadata"].get(section) or {}).items():  # type: ignore[attr-defined]
            if v is None:
                merged.pop(k, None)
            else:
                merged[k] = v
        meta[section] = merged
    return {"metadata": meta}


def test_first_publication_then_nothing_to_do() -> None:
    inv = _inv("dgx-h100-mig")
    node = _node({"kubernetes.io/hostname": "n1"})
    patch = plan_node_update(node, inv)
    assert patch is not None
    assert set(patch["metadata"]) == {"annotations", "labels"}
    node = _apply(node, patch)
    assert plan_node_update(node, inv) is None
    assert node["metadata"]["labels"]["kubernetes.io/hostname"] == "n1"  # type: ignore[index]


def test_annotation_compared_as_json_not_text() -> None:
    inv = _inv("l4-server")
    pretty = json.dumps(json.loads(encode_inventory(inv)), indent=2)
    node = _apply(
        _node(annotations={ANNOTATION_KEY: pretty}), {"metadata": {"labels": inventory_labels(inv)}}
    )
    assert plan_node_update(node, inv) is None


def test_change_is_published_and_stale_labels_removed() -> None:
    fake = FakeNvml.from_machine("dgx-h100-mig")
    node = _apply(_node(), plan_node_update(_node(), discover(fake, "n1")) or {})
    fake.set_mig_mode(None, False)
    patch = plan_node_update(node, discover(fake, "n1"))
    assert patch is not None
    assert patch["metadata"]["labels"] == {LABEL_MIG_ENABLED: "false"}
    assert json.loads(patch["metadata"]["annotations"][ANNOTATION_KEY])["gpus"][0].get("migEnabled") is None
    node = _apply(node, patch)
    # The driver goes away: product/memory labels are removed, count 0, partial set.
    gone = discover(FakeNvml.from_machine("driver-not-loaded"), "n1", raise_on_unavailable=False)
    patch = plan_node_update(node, gone)
    assert patch is not None
    labels = patch["metadata"]["labels"]
    assert labels[LABEL_PRODUCT] is None and labels[LABEL_COUNT] == "0" and labels[LABEL_PARTIAL] == "true"


def test_garbage_annotation_is_replaced() -> None:
    inv = _inv("t4-node")
    node = _apply(
        _node(annotations={ANNOTATION_KEY: "{broken"}), {"metadata": {"labels": inventory_labels(inv)}}
    )
    patch = plan_node_update(node, inv)
    assert patch is not None and "labels" not in patch["metadata"]
