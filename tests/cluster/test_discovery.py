"""Each dynamic client keeps its discovery cache to itself, in a directory only we can read."""

from __future__ import annotations

import os
import stat
import time
import uuid

import pytest

from blueprintd.api.ref import ObjectRef
from blueprintd.cluster.discovery import dynamic_client
from blueprintd.devfleet.fleet import ClusterHandle

pytestmark = pytest.mark.fleet


def test_clients_of_one_server_do_not_share_a_discovery_cache_file(member: ClusterHandle) -> None:
    a = dynamic_client(member.api_client())
    b = dynamic_client(member.api_client())
    assert a.resources.get(api_version="v1", kind="ConfigMap").namespaced
    assert b.resources.get(api_version="v1", kind="Node").namespaced is False
    # the library keeps the path in a private attribute; there is no public accessor
    assert a.resources._Discoverer__cache_file != b.resources._Discoverer__cache_file
    folder = os.path.dirname(a.resources._Discoverer__cache_file)
    assert os.path.basename(folder).startswith("blueprintd-discovery-")
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700


def test_a_kind_not_served_costs_one_rediscovery_and_a_new_crd_is_found(member: ClusterHandle) -> None:
    """The dynamic client already rediscovers once when a kind is missing from its cache; a
    second rediscovery of our own on top would triple the discovery calls of every lookup of
    a kind the member does not serve (a prune after its CRD went, an add-on ahead of its CRD)."""
    from blueprintd.cluster.objects import ApplyError, ObjectClient

    objects = ObjectClient(member.api_client())
    assert objects.namespaced("v1", "ConfigMap")  # discovery cached
    resources = objects.discovery._dyn.resources
    calls = []
    rediscover = resources.invalidate_cache
    resources.invalidate_cache = lambda: (calls.append(1), rediscover())[1]

    group = f"t{uuid.uuid4().hex[:8]}.example.com"
    with pytest.raises(ApplyError, match=f"does not serve Widget \\({group}/v1\\)"):
        objects.namespaced(f"{group}/v1", "Widget")
    assert len(calls) == 1

    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget", "listKind": "WidgetList"},
            "scope": "Namespaced",
            "versions": [{"name": "v1", "served": True, "storage": True,
                          "schema": {"openAPIV3Schema": {"type": "object"}}}],
        },
    }
    objects.apply(crd)
    try:
        deadline = time.monotonic() + 60
        while True:  # the CRD is served once it is Established
            try:
                assert objects.namespaced(f"{group}/v1", "Widget") is True
                break
            except ApplyError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    finally:
        objects.delete(ObjectRef.of(crd))
