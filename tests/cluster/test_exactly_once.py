"""Exactly-once hand-out over many slots: 8 consumers drain 100 topics, on one Redis and on a
Redis Cluster whose three masters all hold some of the topics (docs/adr/0012)."""

from __future__ import annotations

import asyncio
import collections
import random
from typing import Any

import grpc

from appliance.config import Settings, redis_cluster_nodes
from appliance.keys import Keys
from appliance.proto import queue_pb2 as pb
from appliance.proto import queue_pb2_grpc as pb_grpc
from tests.conftest import on_both

TOPICS = [f"topic-{n}" for n in range(100)]
PER_TOPIC = 20
CONSUMERS = 8


async def _produce(address: str) -> set[str]:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.DelayQueueServiceStub(channel)
        reqs = [
            pb.EnqueueRequest(topic=t, payload=f"{t}/{i}") for t in TOPICS for i in range(PER_TOPIC)
        ]
        ids: set[str] = set()
        for start in range(0, len(reqs), 500):
            batch = pb.EnqueueBatchRequest(requests=reqs[start : start + 500])
            reply = await stub.EnqueueBatch(batch)
            ids.update(r.id for r in reply.responses)
        return ids


async def _consume(address: str, seen: collections.Counter[str], total: int) -> None:
    """Round after round over every topic in its own random order, until all are seen."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.DelayQueueServiceStub(channel)
        order = random.sample(TOPICS, len(TOPICS))
        while sum(seen.values()) < total:
            for topic in order:
                got = await stub.Retrieve(pb.RetrieveRequest(topic=topic, batch_size=7))
                if got.tasks:
                    seen.update(t.id for t in got.tasks)
                    acks = [pb.AckRequest(id=t.id, lease_token=t.lease_token) for t in got.tasks]
                    result = await stub.AckBatch(pb.AckBatchRequest(acks=acks))
                    assert all(result.success), result.errors


@on_both
async def test_eight_consumers_drain_a_hundred_topics_exactly_once(
    server: Any, settings: Settings, request: Any
) -> None:
    if redis_cluster_nodes(settings.redis_url) is not None:
        cluster = request.getfixturevalue("redis_cluster")
        keys = Keys(settings.key_prefix)
        holders = {cluster.master_of(keys.topic(t).pending).port for t in TOPICS}
        assert len(holders) == 3, "the topics do not spread over all three masters"
    ids = await _produce(server.address)
    assert len(ids) == len(TOPICS) * PER_TOPIC
    seen: collections.Counter[str] = collections.Counter()
    consumers = [_consume(server.address, seen, len(ids)) for _ in range(CONSUMERS)]
    await asyncio.wait_for(asyncio.gather(*consumers), 120)
    assert set(seen) == ids
    assert max(seen.values()) == 1
    async with grpc.aio.insecure_channel(server.address) as channel:
        stats = await pb_grpc.DelayQueueServiceStub(channel).GetStats(
            pb.GetStatsRequest(topics=TOPICS)
        )
    assert len(stats.topics) == len(TOPICS)
    assert all((r.pending, r.running, r.dead) == (0, 0, 0) for r in stats.topics)
