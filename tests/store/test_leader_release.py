"""leader_release.lua: the holder gives the lease up; a stale token cannot."""

from __future__ import annotations

import redis

from appliance.store import Store
from appliance.store.schedules import ScheduleStore
from tests.store.helpers import snapshot


async def test_release_frees_the_lease_at_once(store: Store, redis_client: redis.Redis) -> None:
    schedules = ScheduleStore(store)
    lease = await schedules.acquire("a", 60_000)
    assert await schedules.release(lease.token)
    assert await schedules.release(lease.token) is False  # twice is harmless
    reply = await schedules.acquire("b", 60_000)
    assert reply.granted and reply.token == lease.token + 1


async def test_a_stale_token_cannot_release(store: Store, redis_client: redis.Redis) -> None:
    schedules = ScheduleStore(store)
    await schedules.acquire("a", 60_000)
    before = snapshot(redis_client)
    assert await schedules.release(99) is False
    assert snapshot(redis_client) == before
