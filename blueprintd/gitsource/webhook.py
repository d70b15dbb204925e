"""Push webhooks: ``POST /hooks/<gitsource>`` makes the operator sync that source now.

Polling at ``spec.interval`` keeps working without webhooks; a webhook only shortens the wait
after a push. So the receiver does as little as possible with untrusted requests:

* the GitSource must exist and name a webhook Secret (``spec.webhookSecretRef``, key
  ``token``), otherwise 404 — sources without a secret cannot be triggered at all;
* the body is read up to ``max_body`` bytes (413 beyond) and authenticated GitHub-style:
  ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body with the shared secret>``,
  compared in constant time (401 when missing or wrong);
* the body is never parsed: any authenticated event triggers a sync, which fetches the ref
  itself (a ``ping`` event is answered and does nothing). What git contains is decided by the
  fetch, never by what a webhook claims.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("blueprintd.gitsource.webhook")

SIGNATURE_HEADER = "X-Hub-Signature-256"
EVENT_HEADER = "X-GitHub-Event"
MAX_BODY_BYTES = 1024 * 1024
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")

SecretLookup = Callable[[str], Awaitable[bytes | None]]
Trigger = Callable[[str], Awaitable[None]]


def sign(secret: bytes, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value for ``body`` (what the git host sends)."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify(secret: bytes, body: bytes, header: str | None) -> bool:
    """Constant-time check of a GitHub-style signature; an empty secret never verifies."""
    if not secret or not header or not header.startswith("sha256="):
        return False
    return hmac.compare_digest(sign(secret, body).encode(), header.strip().encode())


class WebhookReceiver:
    """The aiohttp application; lookups and triggers are injected (the runner provides them)."""

    def __init__(self, secret_of: SecretLookup, trigger: Trigger, max_body: int = MAX_BODY_BYTES) -> None:
        self.secret_of = secret_of
        self.trigger = trigger
        self.max_body = max_body

    def app(self) -> Any:
        from aiohttp import web

        app = web.Application(client_max_size=self.max_body)
        app.router.add_post("/hooks/{name}", self.handle)
        app.router.add_get("/healthz", self.health)
        return app

    async def health(self, request: Any) -> Any:
        from aiohttp import web

        return web.Response(text="ok")

    async def handle(self, request: Any) -> Any:
        from aiohttp import web

        name = str(request.match_info.get("name", ""))
        if not _NAME.match(name):
            return web.json_response({"error": "unknown GitSource"}, status=404)
        if request.content_length is not None and request.content_length > self.max_body:
            return web.json_response({"error": f"body larger than {self.max_body} bytes"}, status=413)
        try:
            secret = await self.secret_of(name)
        except Exception as exc:  # a Secret we cannot read is our problem, not the caller's
            log.warning("webhook for GitSource %s: %s", name, exc)
            return web.json_response({"error": "webhook secret unavailable"}, status=503)
        if secret is None:
            return web.json_response({"error": "unknown GitSource, or no webhookSecretRef"}, status=404)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return web.json_response({"error": f"body larger than {self.max_body} bytes"}, status=413)
        if not verify(secret, body, request.headers.get(SIGNATURE_HEADER)):
            log.warning("webhook for GitSource %s: bad or missing %s", name, SIGNATURE_HEADER)
            return web.json_response({"error": "invalid signature"}, status=401)
        if request.headers.get(EVENT_HEADER) == "ping":
            return web.json_response({"ok": True, "ping": True})
        await self.trigger(name)
        return web.json_response({"ok": True, "sync": name}, status=202)
