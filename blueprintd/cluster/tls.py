"""One TLS context per Kubernetes client, shared by all of its connections (adapter).

The kubernetes client hands urllib3 file names (CA, client certificate and key), and urllib3
then builds a new ``SSLContext`` for every connection it opens, loading the CA and the key
pair again each time. That is harmless for a client with two or three connections; the drift
watch holds one long-lived connection per stream (about 40 per member for the default
blueprint), and a context each cost about 35 KiB of native memory per stream, 1.4 MiB per
member, measured. Built once here, the same context (same verification, same client
certificate) serves every connection of the pool.
"""

from __future__ import annotations

import ssl
from typing import Any


def share_tls_context(api_client: Any) -> None:
    """Make every connection of ``api_client``'s pool use one ``SSLContext`` built from the
    client's own TLS settings (a no-op when the pool already has one)."""
    from urllib3.util.ssl_ import create_urllib3_context

    kw = api_client.rest_client.pool_manager.connection_pool_kw
    if kw.get("ssl_context") is not None:
        return
    cert_reqs = kw.get("cert_reqs", ssl.CERT_REQUIRED)
    ctx = create_urllib3_context(cert_reqs=cert_reqs)
    ca_file, ca_data = kw.pop("ca_certs", None), kw.pop("ca_cert_data", None)
    if ca_file or ca_data:
        ctx.load_verify_locations(cafile=ca_file, cadata=ca_data)
    elif cert_reqs != ssl.CERT_NONE:
        ctx.load_default_certs()
    cert_file, key_file = kw.pop("cert_file", None), kw.pop("key_file", None)
    if cert_file:
        ctx.load_cert_chain(cert_file, key_file)
    kw["ssl_context"] = ctx
