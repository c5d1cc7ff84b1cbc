"""The watchdog and the topic list: topics empty for the retention time are forgotten (and give
their place back under the topic limits), topics with tasks are kept, and with 20,000 idle
topics the watchdog stays idle instead of calling a script per topic every few seconds."""

from __future__ import annotations

import asyncio
import time

import redis

from appliance.config import Settings
from appliance.model import NewTask
from appliance.store import Store, connect
from appliance.watchdog import Watchdog
from tests.store.helpers import KEYS


async def full_pass(dog: Watchdog) -> None:
    dog.wakeups.lost = True
    await dog.run_once()


async def test_an_empty_topic_is_forgotten_after_the_retention_time(
    settings: Settings, redis_client: redis.Redis
) -> None:
    settings = settings.replace(retention_ms=300)
    store = Store(connect(settings), settings)
    dog = Watchdog(store, settings)
    try:
        for topic in ("done", "waiting"):
            await store.enqueue([_task(topic)])
        await store.enqueue([_task("dead", delay_ms=0)])
        await store.cancel("x", "done")
        (leased,) = (await store.claim("dead", 1, 30_000)).tasks
        await store.nack(leased.id, leased.lease_token, "boom", dead_letter=True)
        await full_pass(dog)  # "done" found empty now
        assert _known(redis_client) == {"done", "waiting", "dead"}
        await asyncio.sleep(0.35)
        await full_pass(dog)
        assert _known(redis_client) == {"waiting", "dead"}
        assert redis_client.hkeys(KEYS.topic_empty) == []
        other = Store(connect(settings), settings)  # a server that never knew "done"
        reply = await other.enqueue([_task("done")])  # a topic comes back with its first task
        await other.close()
        assert reply[0].created and _known(redis_client) == {"done", "waiting", "dead"}
    finally:
        await store.close()


async def test_a_topic_forgotten_while_a_server_thought_it_known_comes_back(
    settings: Settings, redis_client: redis.Redis
) -> None:
    settings = settings.replace(retention_ms=0)
    store = Store(connect(settings), settings)
    dog = Watchdog(store, settings)
    try:
        await store.enqueue([_task("racy")])
        await store.cancel("x", "racy")
        await full_pass(dog)
        await full_pass(dog)
        assert "racy" not in _known(redis_client)
        await store.enqueue([_task("racy", "y")])  # admitted moments ago: not checked again
        assert "racy" not in _known(redis_client)
        await full_pass(dog)  # the topics forgotten last time are checked again
        assert "racy" in _known(redis_client)
    finally:
        await store.close()


async def test_an_idle_watchdog_with_20k_topics_stays_idle(
    settings: Settings, redis_client: redis.Redis
) -> None:
    topics = [f"idle-{i:05d}" for i in range(20_000)]
    with redis_client.pipeline(transaction=False) as pipe:
        for start in range(0, len(topics), 1000):
            pipe.sadd(KEYS.topics, *topics[start : start + 1000])
        for topic in topics[:200]:
            pipe.zadd(KEYS.topic(topic).pending, {"t": 1})
        pipe.execute()
    store = Store(connect(settings), settings)
    dog = Watchdog(store, settings)
    runner = asyncio.create_task(dog.run())
    try:
        await asyncio.wait_for(dog.wakeups.subscribed.wait(), 10)
        while dog.full_passes < 1 or dog.wakeups.lost:  # noqa: ASYNC110 - polls a counter
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        passes, cpu, wall = dog.full_passes, time.process_time(), time.monotonic()
        await asyncio.sleep(6.0)  # the old loop ran a script per topic every 5 s
        used = time.process_time() - cpu
        print(f"\nidle watchdog, 20k topics: {used * 1000:.0f} ms CPU in 6 s")
        assert used < 0.1 * (time.monotonic() - wall) / 6, used
        assert dog.full_passes == passes
    finally:
        dog.stop()
        await runner
        await store.close()


def _task(topic: str, task_id: str = "x", delay_ms: int = 60_000) -> NewTask:
    return NewTask(task_id, topic, "p", 3, delay_ms=delay_ms)


def _known(r: redis.Redis) -> set[str]:
    return {t.decode() for t in r.smembers(KEYS.topics)}
