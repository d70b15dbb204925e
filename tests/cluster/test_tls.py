"""One TLS context serves every connection of a client, and it verifies as the client did."""

from __future__ import annotations

import ssl
from concurrent.futures import ThreadPoolExecutor

import pytest
import urllib3
from kubernetes import client

from blueprintd.cluster.tls import share_tls_context
from blueprintd.devfleet.fleet import ClusterHandle

pytestmark = pytest.mark.fleet


def test_every_connection_of_the_pool_uses_the_one_context_and_authenticates(member: ClusterHandle) -> None:
    api = member.api_client()
    api.configuration.connection_pool_maxsize = 8
    api.rest_client = type(api.rest_client)(api.configuration)  # the pool with the new size
    share_tls_context(api)
    kw = api.rest_client.pool_manager.connection_pool_kw
    ctx = kw["ssl_context"]
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    loaded_per_connection = {"ca_certs", "cert_file", "key_file"} & {k for k, v in kw.items() if v}
    assert not loaded_per_connection

    pool = api.rest_client.pool_manager.connection_from_url(api.configuration.host)
    conns = [pool._get_conn() for _ in range(3)]  # three connections held at once
    try:
        for c in conns:
            c.request("GET", "/api/v1/namespaces/default", headers={"Accept": "application/json"})
            assert c.getresponse().status == 200, "the client certificate authenticated us (anonymous gets 401/403)"
        assert all(c.sock.context is ctx for c in conns)
    finally:
        for c in conns:
            c.close()
    # and through the client, from several threads at once
    with ThreadPoolExecutor(4) as pool_:
        names = list(pool_.map(lambda _: client.CoreV1Api(api).read_namespace("default").metadata.name, range(8)))
    assert names == ["default"] * 8
    share_tls_context(api)  # idempotent
    assert api.rest_client.pool_manager.connection_pool_kw["ssl_context"] is ctx


def test_a_server_the_ca_does_not_vouch_for_is_refused(member: ClusterHandle) -> None:
    import certifi

    api = member.api_client()
    api.configuration.ssl_ca_cert = certifi.where()  # public CAs: not the member's
    api.rest_client = type(api.rest_client)(api.configuration)
    share_tls_context(api)
    with pytest.raises(urllib3.exceptions.MaxRetryError, match="CERTIFICATE_VERIFY_FAILED"):
        client.CoreV1Api(api).read_namespace("default", _request_timeout=5)
