"""ObjectRef: the one identity of an object, with its display and stored text forms produced in one place."""

from __future__ import annotations

import pytest

from blueprintd.api.inventory import InventoryObject, object_key
from blueprintd.api.ref import ObjectRef

CM = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": "ops"}}
NODE = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}


def test_every_spelling_is_the_same_identity() -> None:
    ref = ObjectRef.of(CM)
    assert ref == ("v1", "ConfigMap", "ops", "cfg") and ref[1] == "ConfigMap", "still unpacks like the old tuple"
    assert object_key(CM) == ref.key == "v1|ConfigMap|ops|cfg"
    assert InventoryObject(key=ref.key).object_ref == ref
    assert ObjectRef.from_key(ref.key) == ref


def test_text_forms() -> None:
    assert str(ObjectRef.of(CM)) == "ConfigMap ops/cfg"
    assert str(ObjectRef.of(NODE)) == "Node n1" == str(ObjectRef.node("n1"))
    assert str(ObjectRef.release("kai", "kai-scheduler")) == "HelmRelease kai/kai-scheduler"
    assert ObjectRef.of(CM).manifest() == CM
    assert ObjectRef.of(NODE).to_wire() == {"apiVersion": "v1", "kind": "Node", "name": "n1"}


def test_a_malformed_stored_key_is_refused_with_the_expected_form() -> None:
    with pytest.raises(ValueError, match="apiVersion\\|Kind\\|namespace\\|name"):
        ObjectRef.from_key("ConfigMap ops/cfg")


# --- the DriftReport stores the same type -------------------------------------------------------

STORED_ENTRY = {  # as a report written before ObjectRef was one type: namespace left out when cluster-scoped
    "blueprint": "gpu-platform",
    "addon": "gpu-operator",
    "object": {"apiVersion": "nvidia.com/v1", "kind": "ClusterPolicy", "name": "cluster-policy"},
    "path": "spec.driver.enabled",
    "action": "notified",
}


def test_a_drift_report_object_is_the_identity_itself_and_keeps_its_stored_shape() -> None:
    from blueprintd.api.driftreport import DriftEntry, DriftReportStatus

    e = DriftEntry.model_validate(STORED_ENTRY)
    assert type(e.object) is ObjectRef
    assert e.object == ObjectRef("nvidia.com/v1", "ClusterPolicy", "", "cluster-policy")
    assert e.to_wire()["object"] == STORED_ENTRY["object"], "cluster-scoped: no namespace key, as before"
    cm = ObjectRef.of(CM)
    e.object = cm
    assert e.to_wire()["object"] == {"apiVersion": "v1", "kind": "ConfigMap", "namespace": "ops", "name": "cfg"}
    assert DriftEntry.model_validate(e.to_wire()).object == cm, "round trip"
    assert e.model_dump(by_alias=True)["object"]["namespace"] == "ops", "python-mode dumps are mappings too"
    st = DriftReportStatus.model_validate({"protected": [{"apiVersion": "v1", "kind": "Node", "name": "n1"}]})
    assert st.protected == [ObjectRef.node("n1")]
    null_ns = {**STORED_ENTRY, "object": {**STORED_ENTRY["object"], "namespace": None}}
    assert DriftEntry.model_validate(null_ns).object.namespace == ""


def test_a_malformed_stored_object_is_refused_naming_the_field() -> None:
    from pydantic import ValidationError

    from blueprintd.api.driftreport import DriftEntry

    for obj, field in (
        ({"apiVersion": "v1", "kind": "ConfigMap"}, "name is required"),
        ({"apiVersion": "v1", "kind": "ConfigMap", "name": 3}, "name must be a string"),
        ({"apiVersion": "v1", "kind": "ConfigMap", "name": "a", "uid": "x"}, "unknown field\\(s\\) uid"),
        ("ConfigMap ops/cfg", "must be a mapping"),
    ):
        with pytest.raises(ValidationError, match=field):
            DriftEntry.model_validate({**STORED_ENTRY, "object": obj})


def test_a_stored_entry_and_a_fresh_finding_of_the_same_object_are_one_report_entry() -> None:
    """A restarted operator loads the report and keeps updating the same entries: the key is the
    identity, not its display text."""
    from datetime import UTC, datetime

    from blueprintd.drift import report
    from blueprintd.drift.detect import Drift, Target

    entries = report.load([STORED_ENTRY])
    ref = ObjectRef("nvidia.com/v1", "ClusterPolicy", "", "cluster-policy")
    assert list(entries) == [("gpu-platform", ref, "spec.driver.enabled")]
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert report.update_target(entries, ref, [], now) == []
    assert entries[("gpu-platform", ref, "spec.driver.enabled")].resolved_at == now, "the stored entry resolved"
    drift = Drift(
        "gpu-platform", "gpu-operator", "notify", Target("object", ref), "spec.driver.enabled",
        pointer="", reason="changed", expected=True, actual=False,
    )
    new = report.update_target(entries, ref, [drift], now)
    assert len(entries) == 1 and new and new[0].object is ref
    st = report.status(entries, {ref}, now)
    assert st["protected"] == [STORED_ENTRY["object"]] and st["entries"][0]["object"] == STORED_ENTRY["object"]
