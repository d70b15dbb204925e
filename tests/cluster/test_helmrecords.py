"""Helm's storage Secrets decoded in-process: what ``helm status`` / ``get values`` would say."""

from __future__ import annotations

import base64
import gzip
import json
from typing import Any

from blueprintd.cluster import helmrecords


def _secret(rel: dict[str, Any], *, compress: bool = True) -> dict[str, Any]:
    data = json.dumps(rel).encode()
    payload = base64.b64encode(base64.b64encode(gzip.compress(data) if compress else data)).decode()
    return {
        "type": helmrecords.SECRET_TYPE,
        "data": {"release": payload},
        "metadata": {"namespace": rel["namespace"], "labels": {"owner": "helm", "name": rel["name"]}},
    }


def _release(revision: int, status: str, values: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "kai",
        "namespace": "kai-scheduler",
        "version": revision,
        "config": values,
        "info": {"status": status, "description": "blueprintd kai-scheduler v0.10.2"},
        "chart": {"metadata": {"name": "kai-scheduler", "version": "v0.10.2"}},
        "manifest": "",
    }


def test_the_current_revision_is_the_highest_with_its_user_values_chart_and_status() -> None:
    records = [
        helmrecords.decode(_secret(_release(1, "superseded", {"a": 1}))),
        helmrecords.decode(_secret(_release(3, "pending-upgrade", {"a": 3}), compress=False)),
        helmrecords.decode(_secret(_release(2, "superseded", {"a": 2}))),
    ]
    cur = helmrecords.current(r for r in records if r is not None)
    assert cur is not None
    state = cur.state()
    assert (state.revision, state.status, state.values, state.chart, state.version) == (
        3,
        "pending-upgrade",
        {"a": 3},
        "kai-scheduler",
        "v0.10.2",
    )
    assert state.pending
    assert helmrecords.current([]) is None


def test_a_secret_that_is_not_a_release_record_is_not_decoded() -> None:
    assert helmrecords.decode({"type": "Opaque", "data": {"release": "eA=="}}) is None
    broken = _secret(_release(1, "deployed", {}))
    broken["data"]["release"] = "not base64!"
    assert helmrecords.decode(broken) is None


def test_a_release_record_names_the_crds_of_its_chart() -> None:
    import base64
    import gzip
    import json

    crd = "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: a.b.c\n"
    rel = {
        "name": "kai",
        "namespace": "kai",
        "version": 1,
        "info": {"status": "deployed"},
        "chart": {
            "metadata": {"name": "kai-scheduler", "version": "v0.10.2"},
            "files": [
                {"name": "crds/a.yaml", "data": base64.b64encode(crd.encode()).decode()},
                {"name": "README.md", "data": base64.b64encode(b"# hi").decode()},
            ],
        },
        "manifest": "",
    }
    payload = base64.b64encode(base64.b64encode(gzip.compress(json.dumps(rel).encode()))).decode()
    secret = {
        "type": helmrecords.SECRET_TYPE,
        "data": {"release": payload},
        "metadata": {"namespace": "kai", "labels": {"owner": "helm", "name": "kai"}},
    }
    record = helmrecords.decode(secret)
    assert record is not None
    assert [d["metadata"]["name"] for d in helmrecords.manifest_objects(record.crds)] == ["a.b.c"]
