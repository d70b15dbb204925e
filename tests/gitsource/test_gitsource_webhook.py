"""The push-webhook receiver over real HTTP, and the runner's schedule (when a source is due)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web

from blueprintd.gitsource.controller import is_due, parse_interval
from blueprintd.gitsource.webhook import SIGNATURE_HEADER, WebhookReceiver, sign, verify

SECRET = b"webhook-shared-secret"


def test_signature() -> None:
    body = b'{"ref":"refs/heads/main"}'
    good = sign(SECRET, body)
    assert good.startswith("sha256=") and len(good) == 7 + 64
    assert verify(SECRET, body, good)
    assert not verify(SECRET, body + b" ", good)
    assert not verify(b"other", body, good)
    assert not verify(SECRET, body, None)
    assert not verify(SECRET, body, good.replace("sha256=", "sha1="))
    assert not verify(b"", body, sign(b"", body))  # an empty secret never authenticates


async def _serve(receiver: WebhookReceiver, scenario: Callable[[aiohttp.ClientSession, str], Awaitable[None]]) -> None:
    runner = web.AppRunner(receiver.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as session:
            await scenario(session, f"http://127.0.0.1:{port}")
    finally:
        await runner.cleanup()


def test_receiver_statuses() -> None:
    triggered: list[str] = []

    async def secret_of(name: str) -> bytes | None:
        return {"platform": SECRET}.get(name)

    async def trigger(name: str) -> None:
        triggered.append(name)

    receiver = WebhookReceiver(secret_of, trigger, max_body=4096)
    body = b'{"ref":"refs/heads/main","after":"abc"}'

    async def scenario(s: aiohttp.ClientSession, base: str) -> None:
        async def post(path: str, data: bytes, headers: dict[str, str]) -> tuple[int, Any]:
            async with s.post(base + path, data=data, headers=headers) as r:
                return r.status, await r.json()

        assert (await post("/hooks/platform", body, {SIGNATURE_HEADER: sign(SECRET, body)}))[0] == 202
        assert triggered == ["platform"]
        # wrong secret, tampered body, missing header: 401 and no sync
        assert (await post("/hooks/platform", body, {SIGNATURE_HEADER: sign(b"guess", body)}))[0] == 401
        assert (await post("/hooks/platform", body + b"x", {SIGNATURE_HEADER: sign(SECRET, body)}))[0] == 401
        assert (await post("/hooks/platform", body, {}))[0] == 401
        # unknown source (or one without webhookSecretRef), and names that are not object names
        assert (await post("/hooks/nope", body, {SIGNATURE_HEADER: sign(SECRET, body)}))[0] == 404
        assert (await post("/hooks/..%2Fetc", body, {}))[0] == 404
        # body limit
        big = b"x" * 5000
        assert (await post("/hooks/platform", big, {SIGNATURE_HEADER: sign(SECRET, big)}))[0] == 413
        # GitHub's ping: authenticated, answered, no sync
        status, answer = await post(
            "/hooks/platform", body, {SIGNATURE_HEADER: sign(SECRET, body), "X-GitHub-Event": "ping"}
        )
        assert status == 200 and answer["ping"] is True
        async with s.get(base + "/hooks/platform") as r:
            assert r.status == 405
        assert triggered == ["platform"]

    asyncio.run(_serve(receiver, scenario))


def test_intervals() -> None:
    assert parse_interval("30s") == 30
    assert parse_interval("5m") == 300
    assert parse_interval("1h30m") == 5400
    assert parse_interval("") == 300


def test_due() -> None:
    src = {"metadata": {"generation": 2}, "spec": {"interval": "1m"}, "status": {"observedGeneration": 2}}
    assert is_due(src, None, 1000.0)  # never synced by this process
    assert not is_due(src, 1000.0, 1059.0)
    assert is_due(src, 1000.0, 1060.0)
    changed = {**src, "metadata": {"generation": 3}}
    assert is_due(changed, 1000.0, 1001.0)  # the spec changed: sync now
