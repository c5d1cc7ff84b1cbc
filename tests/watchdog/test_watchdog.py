"""The watchdog loop: expired leases are handed out again right after their deadline."""

from __future__ import annotations

import asyncio
import statistics

import redis

from appliance.config import Settings
from appliance.proto import queue_pb2 as pb
from appliance.store import Store, connect
from appliance.watchdog import Watchdog
from tests.conftest import on_both
from tests.store.helpers import read_dlq


async def _with_watchdog(settings: Settings) -> tuple[Watchdog, asyncio.Task[None], Store]:
    store = Store(connect(settings), settings)
    dog = Watchdog(store, settings)
    return dog, asyncio.create_task(dog.run()), store


@on_both
async def test_expired_lease_is_redelivered_within_100_ms_of_its_deadline(
    stub, server, settings: Settings
) -> None:
    dog, runner, store = await _with_watchdog(settings)
    try:
        await asyncio.sleep(0.2)  # subscribed
        gaps = []
        for n in range(5):
            await stub.Enqueue(pb.EnqueueRequest(topic="w", payload=str(n), id=f"w{n}"))
            (first,) = (
                await stub.Retrieve(pb.RetrieveRequest(topic="w", visibility_timeout_ms=300))
            ).tasks
            again = await stub.Retrieve(
                pb.RetrieveRequest(topic="w", visibility_timeout_ms=30_000, wait_ms=5000)
            )
            (second,) = again.tasks
            assert second.id == first.id and second.attempt == 2
            redelivered_at = second.lease_deadline_ms - 30_000  # Redis clock at the second claim
            gaps.append(redelivered_at - first.lease_deadline_ms)
            await stub.Ack(pb.AckRequest(id=second.id, lease_token=second.lease_token))
        print(f"redelivered after lease deadline (ms): {gaps}")
        assert min(gaps) >= 0  # never before the deadline
        assert statistics.median(gaps) <= 100, gaps
        assert dog.recovered + server.recovery.recovered == 5  # the server runs one too
    finally:
        dog.stop()
        await runner
        await store.close()


@on_both
async def test_expired_lease_with_retries_spent_is_dead_lettered(
    stub, settings: Settings, redis_client: redis.Redis
) -> None:
    dog, runner, store = await _with_watchdog(settings)
    try:
        await stub.Enqueue(pb.EnqueueRequest(topic="d", payload="p", id="d1", max_retries=0))
        await stub.Retrieve(pb.RetrieveRequest(topic="d", visibility_timeout_ms=100))
        for _ in range(50):
            if read_dlq(redis_client, "d"):
                break
            await asyncio.sleep(0.05)
        assert read_dlq(redis_client, "d") == ["d1"]
        info = await stub.GetTask(pb.GetTaskRequest(id="d1"))
        assert info.state == pb.DEAD and info.last_error == "lease expired"
    finally:
        dog.stop()
        await runner
        await store.close()


async def test_watchdog_survives_a_redis_outage(settings: Settings) -> None:
    bad = settings.replace(redis_url="redis://127.0.0.1:1/0", redis_timeout_ms=200)
    dog, runner, store = await _with_watchdog(bad)
    pause = await dog.run_once()
    assert pause > 0
    dog.stop()
    await asyncio.wait_for(runner, 10)
    await store.close()
