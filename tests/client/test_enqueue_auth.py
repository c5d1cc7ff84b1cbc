"""EnqueueStream under tokens: the bearer token, the role and the per-topic permissions apply
to each call exactly as on unary Enqueue, and so does the per-caller rate limit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from appliance import AsyncClient
from appliance.api.server import QueueServer
from appliance.auth import hash_token
from appliance.config import Settings
from appliance.errors import AtpError, PermissionDenied, RateLimited, Unauthenticated
from appliance.store import Store, connect

ENTRIES = [
    {"name": "prod", "hash": hash_token("p-secret"), "role": "producer"},
    {"name": "other", "hash": hash_token("o-secret"), "role": "producer"},
    {"name": "work", "hash": hash_token("w-secret"), "role": "worker"},
    {"name": "only-a", "hash": hash_token("l-secret"), "role": "producer", "topics": ["a"]},
]


async def running(settings: Settings) -> AsyncIterator[QueueServer]:
    store = Store(connect(settings), settings)
    server = QueueServer(settings, store)
    await server.start()
    try:
        yield server
    finally:
        await server.stop(0.5)
        await store.close()


@pytest_asyncio.fixture
async def address(settings: Settings) -> AsyncIterator[str]:
    async for server in running(settings.replace(tokens=ENTRIES)):
        yield server.address


async def outcome(address: str, token: str | None, topic: str) -> str | type[AtpError]:
    async with AsyncClient(address, token=token) as c:
        try:
            return await c.enqueue(topic, "x")
        except AtpError as exc:
            return type(exc)


async def test_token_role_and_topic_per_call(address: str) -> None:
    assert isinstance(await outcome(address, "p-secret", "b"), str)
    assert await outcome(address, None, "b") is Unauthenticated
    assert await outcome(address, "nope", "b") is Unauthenticated
    assert await outcome(address, "w-secret", "b") is PermissionDenied
    async with AsyncClient(address, token="l-secret") as c:
        await c.enqueue("a", "x")
        with pytest.raises(PermissionDenied, match="may not use topic 'b'"):
            await c.enqueue("b", "x")
        mixed = await asyncio.gather(
            *(c.enqueue("a" if n % 2 else "b", "x") for n in range(20)), return_exceptions=True
        )
        assert [isinstance(m, PermissionDenied) for m in mixed] == [n % 2 == 0 for n in range(20)]
        assert isinstance(await c.enqueue("a", "still fine"), str)


async def test_rate_limit_applies_per_call(settings: Settings) -> None:
    limited = settings.replace(tokens=ENTRIES, rate_limit_per_s=1, rate_limit_burst=5)
    async for server in running(limited):
        async with AsyncClient(server.address, token="p-secret") as c:
            results = await asyncio.gather(
                *(c.enqueue("t", f"{n}") for n in range(12)), return_exceptions=True
            )
            assert sum(isinstance(r, str) for r in results) == 5
            assert all(isinstance(r, RateLimited) for r in results if not isinstance(r, str))
        assert isinstance(await outcome(server.address, "o-secret", "t"), str)  # its own bucket
