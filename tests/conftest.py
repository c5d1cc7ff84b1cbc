"""Fixtures: a real redis-server on a free port per session (or REDIS_URL), a flushed DB per
test, settings pointing at it, a Store and a running gRPC server with its stub."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import grpc
import pytest
import pytest_asyncio
import redis

from appliance.config import Settings
from tests.redis_server import RedisServer


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    given = os.environ.get("REDIS_URL")
    if given:
        yield given
        return
    server = RedisServer().start()
    try:
        yield server.url
    finally:
        server.cleanup()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def settings(redis_url: str, redis_client: redis.Redis) -> Settings:
    return Settings(redis_url=redis_url, grpc_addr="127.0.0.1:0", backoff_base_ms=50, backoff_cap_ms=200)


@pytest_asyncio.fixture
async def store(settings: Settings) -> AsyncIterator[object]:
    from appliance.store import Store, connect

    s = Store(connect(settings), settings)
    yield s
    await s.close()


@pytest_asyncio.fixture
async def server(settings: Settings) -> AsyncIterator[object]:
    from appliance.api.server import QueueServer
    from appliance.store import Store, connect

    store = Store(connect(settings), settings)
    srv = QueueServer(settings, store)
    await srv.start()
    yield srv
    await srv.stop(0.5)
    await store.close()


@pytest_asyncio.fixture
async def stub(server: object) -> AsyncIterator[object]:
    from appliance.api._proto import queue_pb2_grpc as pb_grpc

    async with grpc.aio.insecure_channel(server.address) as channel:  # type: ignore[attr-defined]
        yield pb_grpc.DelayQueueServiceStub(channel)
