"""Each dynamic client keeps its discovery cache to itself, in a directory only we can read."""

from __future__ import annotations

import os
import stat

import pytest

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
