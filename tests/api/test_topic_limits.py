"""Topic limits: a new topic beyond max_topics, or beyond the calling token's
max_topics_per_token, is RESOURCE_EXHAUSTED with the limit named, and nothing is written."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio
import redis

from appliance.api.server import QueueServer
from appliance.auth import hash_token
from appliance.config import Settings
from appliance.proto import queue_pb2 as pb
from appliance.proto import queue_pb2_grpc as pb_grpc
from appliance.store import Store, connect
from tests.store.helpers import KEYS, snapshot

ENTRIES = [
    {"name": "one", "hash": hash_token("one-secret"), "role": "producer"},
    {"name": "two", "hash": hash_token("two-secret"), "role": "producer"},
    {"name": "root", "hash": hash_token("root-secret"), "role": "admin"},
]
ONE, TWO = (("authorization", "Bearer one-secret"),), (("authorization", "Bearer two-secret"),)
ROOT = (("authorization", "Bearer root-secret"),)


@pytest_asyncio.fixture
async def limited(settings: Settings) -> AsyncIterator[pb_grpc.DelayQueueServiceStub]:
    s = settings.replace(tokens=ENTRIES, max_topics=3, max_topics_per_token=2)
    store = Store(connect(s), s)
    server = QueueServer(s, store)
    await server.start()
    async with grpc.aio.insecure_channel(server.address) as channel:
        yield pb_grpc.DelayQueueServiceStub(channel)
    await server.stop(0.5)
    await store.close()


async def enqueue(stub: pb_grpc.DelayQueueServiceStub, topic: str, who: object) -> None:
    await stub.Enqueue(pb.EnqueueRequest(topic=topic, payload="p"), metadata=who)


async def refused(call: object, details: str, redis_client: redis.Redis) -> None:
    before = snapshot(redis_client)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call  # type: ignore[misc]
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert details in (err.value.details() or "")
    assert snapshot(redis_client) == before


async def test_topics_per_token_and_per_appliance_are_bounded(
    limited: pb_grpc.DelayQueueServiceStub, redis_client: redis.Redis
) -> None:
    await enqueue(limited, "a", ONE)
    await enqueue(limited, "b", ONE)
    await refused(enqueue(limited, "c", ONE), "max_topics_per_token (2)", redis_client)
    await enqueue(limited, "c", TWO)  # another token has room
    await enqueue(limited, "c", ONE)  # a known topic is open to every token
    await refused(enqueue(limited, "d", TWO), "max_topics (3)", redis_client)
    batch = pb.EnqueueBatchRequest(
        requests=[pb.EnqueueRequest(topic="a", payload="p"), pb.EnqueueRequest(topic="e")]
    )
    await refused(limited.EnqueueBatch(batch, metadata=TWO), "max_topics", redis_client)
    assert {t.decode() for t in redis_client.smembers(KEYS.topics)} == {"a", "b", "c"}
    assert redis_client.hgetall(KEYS.topic_owned) == {b"one": b"2", b"two": b"1"}


async def test_an_admin_token_counts_against_max_topics_only(
    limited: pb_grpc.DelayQueueServiceStub, redis_client: redis.Redis
) -> None:
    for topic in ("a", "b", "c"):  # over max_topics_per_token (2), within max_topics (3)
        await enqueue(limited, topic, ROOT)
    await refused(enqueue(limited, "d", ROOT), "max_topics (3)", redis_client)
    assert redis_client.hlen(KEYS.topic_owned) == 0
