"""A frozen Redis (SIGSTOP) makes calls fail fast: UNAVAILABLE after redis_timeout_ms (2 s by
default) or at the caller's deadline, never after retrying the timeout (it used to take ~21 s),
and an interrupted client-id Enqueue leaves no id index behind without its task."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import grpc
import pytest
import pytest_asyncio
import redis

from appliance.config import Settings
from appliance.errors import Unavailable
from appliance.proto import queue_pb2 as pb
from appliance.proto import queue_pb2_grpc as pb_grpc
from appliance.store import Store, connect
from appliance.store.store import CALL_DEADLINE
from tests.redis_server import RedisServer


@pytest.fixture
def frozen() -> Iterator[RedisServer]:
    """A Redis of this test's own, which the test pauses (resumed and removed afterwards)."""
    server = RedisServer(appendonly=False).start()
    try:
        yield server
    finally:
        server.resume()
        server.cleanup()


@pytest_asyncio.fixture
async def frozen_store(frozen: RedisServer) -> AsyncIterator[Store]:
    settings = Settings(redis_url=frozen.url, grpc_addr="127.0.0.1:0")
    store = Store(connect(settings), settings)
    yield store
    await store.close()


async def test_a_call_to_a_frozen_redis_fails_in_about_two_seconds(
    frozen: RedisServer, frozen_store: Store
) -> None:
    from appliance.api.server import QueueServer

    server = QueueServer(frozen_store.settings, frozen_store)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            stub = pb_grpc.DelayQueueServiceStub(channel)
            await stub.Enqueue(pb.EnqueueRequest(topic="t", payload="warm"))
            frozen.pause()
            started = time.monotonic()
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.Enqueue(pb.EnqueueRequest(topic="t", payload="p", id="f1"))
            took = time.monotonic() - started
            frozen.resume()
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            assert 1.5 <= took < 3.0, took
            await asyncio.sleep(0.2)  # Redis runs what reached it before it froze
            assert orphan_index_keys(redis.Redis(port=frozen.port)) == []
            again = await stub.Enqueue(pb.EnqueueRequest(topic="t", payload="p", id="f1"))
            assert (await stub.GetTask(pb.GetTaskRequest(id="f1"))).task.id == "f1"
            assert again.id == "f1"
    finally:
        frozen.resume()
        await server.stop(0.2)


def orphan_index_keys(r: redis.Redis) -> list[str]:
    """Id index keys with no expiry and no task in any topic they name."""
    orphans = []
    for key in r.scan_iter("atp:id*"):
        if r.pttl(key) != -1:
            continue
        task_id = key.decode().split(":", 2)[2]
        topics = r.hkeys(key) if r.type(key) == b"hash" else [r.get(key)]
        if not any(
            r.exists(f"atp:{{{t.decode()}}}:task:{task_id}")
            or r.hexists(f"atp:{{{t.decode()}}}:new", task_id)
            for t in topics
        ):
            orphans.append(key.decode())
    return orphans


async def test_a_store_call_ends_at_the_callers_deadline(
    frozen: RedisServer, frozen_store: Store
) -> None:
    await frozen_store.ping()
    frozen.pause()
    token = CALL_DEADLINE.set(asyncio.get_running_loop().time() + 0.3)
    started = time.monotonic()
    try:
        with pytest.raises(Unavailable, match="deadline"):
            await frozen_store.get("some-id")
    finally:
        CALL_DEADLINE.reset(token)
    assert time.monotonic() - started < 0.6
