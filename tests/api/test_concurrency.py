"""8 concurrent consumers drain 10,000 tasks through a real server: each handed out exactly
once, none lost."""

from __future__ import annotations

import asyncio
import collections

import grpc

from appliance.proto import queue_pb2 as pb
from appliance.proto import queue_pb2_grpc as pb_grpc

TOTAL = 10_000
CONSUMERS = 8


async def _produce(address: str) -> set[str]:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.DelayQueueServiceStub(channel)
        ids: set[str] = set()
        for start in range(0, TOTAL, 500):
            reqs = [
                pb.EnqueueRequest(topic="drain", payload=str(i)) for i in range(start, start + 500)
            ]
            reply = await stub.EnqueueBatch(pb.EnqueueBatchRequest(requests=reqs))
            ids.update(r.id for r in reply.responses)
        return ids


async def _consume(address: str, seen: collections.Counter[str], done: asyncio.Event) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.DelayQueueServiceStub(channel)
        while not done.is_set():
            got = await stub.Retrieve(pb.RetrieveRequest(topic="drain", batch_size=50, wait_ms=300))
            if not got.tasks:
                continue
            seen.update(t.id for t in got.tasks)
            acks = [pb.AckRequest(id=t.id, lease_token=t.lease_token) for t in got.tasks]
            result = await stub.AckBatch(pb.AckBatchRequest(acks=acks))
            assert all(result.success), result.errors
            if sum(seen.values()) >= TOTAL:
                done.set()


def test_eight_consumers_drain_ten_thousand_tasks_exactly_once(server_process) -> None:
    async def scenario() -> None:
        seen: collections.Counter[str] = collections.Counter()
        done = asyncio.Event()
        consumers = [
            asyncio.create_task(_consume(server_process.address, seen, done))
            for _ in range(CONSUMERS)
        ]
        ids = await _produce(server_process.address)
        await asyncio.wait_for(done.wait(), 90)
        await asyncio.gather(*consumers)
        assert len(ids) == TOTAL
        assert set(seen) == ids
        assert max(seen.values()) == 1
        async with grpc.aio.insecure_channel(server_process.address) as channel:
            stats = await pb_grpc.DelayQueueServiceStub(channel).GetStats(
                pb.GetStatsRequest(topics=["drain"])
            )
        row = stats.topics[0]
        assert (row.pending, row.running, row.dead) == (0, 0, 0)

    asyncio.run(scenario())
