"""Wake-ups on both backends (docs/adr/0012): the topic channels stay plain pub/sub (PUBLISH
reaches every cluster node); the scheduler's channel is a shard channel on a cluster,
SSUBSCRIBEd on the master of its slot, and followed to the new master after a failover."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest_asyncio

from appliance.config import Settings
from appliance.store import Store, connect
from appliance.store.wakeups import Wakeups
from tests.conftest import on_both, on_cluster
from tests.redis_server import RedisCluster
from tests.scheduler.helpers import seed_schedule


@pytest_asyncio.fixture
async def listening(store: Store) -> AsyncIterator[Wakeups]:
    """The scheduler's wake-ups, subscribed."""
    wakeups = Wakeups(store.redis, store.keys.scheduler.channel, store.keys.sharded)
    runner = asyncio.create_task(wakeups.run())
    await asyncio.wait_for(wakeups.subscribed.wait(), 10)
    yield wakeups
    wakeups.stop()
    await asyncio.wait_for(runner, 10)


async def woken_by_a_put(store: Store, wakeups: Wakeups, schedule_id: str) -> None:
    with wakeups.watch(schedule_id) as woken:
        woken.clear()
        await seed_schedule(store, 5000, id=schedule_id)
        await asyncio.wait_for(woken.wait(), 5)


@on_both
async def test_a_schedule_put_wakes_the_scheduler(
    store: Store, listening: Wakeups, settings: Settings
) -> None:
    sharded = settings.redis_url.startswith("redis+cluster://")
    assert store.keys.sharded is sharded
    assert ("{" in store.keys.scheduler.channel) is sharded  # wake.lua: '{' means SPUBLISH
    await woken_by_a_put(store, listening, "s1")


@on_cluster
def test_the_scheduler_channel_is_a_shard_channel_of_the_scheduler_slot(
    settings: Settings, redis_cluster: RedisCluster, redis_client: object
) -> None:
    from appliance.keys import Keys

    keys = Keys(settings.key_prefix, sharded=True).scheduler
    with redis_cluster.client() as client:
        assert client.keyslot(keys.channel) == client.keyslot(keys.due)


@on_cluster
async def test_the_shard_subscription_follows_a_failover(
    settings: Settings, redis_cluster: RedisCluster, redis_client: object
) -> None:
    store = Store(connect(settings), settings)
    wakeups = Wakeups(store.redis, store.keys.scheduler.channel, sharded=True)
    runner = asyncio.create_task(wakeups.run())
    master = redis_cluster.master_of(store.keys.scheduler.due)
    try:
        await asyncio.wait_for(wakeups.subscribed.wait(), 10)
        await woken_by_a_put(store, wakeups, "before")
        redis_cluster.kill(master)
        await asyncio.to_thread(redis_cluster.wait_ok)  # the replica took over the slots
        deadline = asyncio.get_running_loop().time() + 20
        for attempt in range(1000):  # calls meet the failover until the new map is read
            try:
                await woken_by_a_put(store, wakeups, f"after-{attempt}")
                break
            except Exception:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.2)
    finally:
        wakeups.stop()
        await asyncio.wait_for(runner, 10)
        await store.close()
        redis_cluster.restart(master)  # it rejoins as the new master's replica
        await asyncio.to_thread(redis_cluster.wait_ok)
