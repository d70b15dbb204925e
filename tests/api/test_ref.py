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
