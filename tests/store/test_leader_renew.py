"""leader_renew.lua: only the current token moves the lease's expiry."""

from __future__ import annotations

import asyncio

import redis

from appliance.store import Store
from appliance.store.results import Refusal
from appliance.store.schedules import ScheduleStore
from tests.scheduler.helpers import KEYS, read_lease
from tests.store.helpers import snapshot


async def test_renew_moves_the_expiry(store: Store, redis_client: redis.Redis) -> None:
    schedules = ScheduleStore(store)
    lease = await schedules.acquire("a", 1000)
    await asyncio.sleep(0.2)
    expires = await schedules.renew(lease.token, 5000)
    assert isinstance(expires, int) and expires >= lease.expires_ms + 4000
    assert read_lease(redis_client)["expires"] == str(expires)
    assert redis_client.pttl(KEYS.lease) > 4000


async def test_a_stale_token_changes_nothing(store: Store, redis_client: redis.Redis) -> None:
    schedules = ScheduleStore(store)
    await schedules.acquire("a", 300)
    await asyncio.sleep(0.35)
    assert await schedules.renew(1, 5000) is Refusal.LEASE_GONE  # expired: nothing to renew
    new = await schedules.acquire("b", 5000)
    before = snapshot(redis_client)
    assert await schedules.renew(1, 5000) is Refusal.NOT_LEADER  # taken over under token 2
    assert snapshot(redis_client) == before
    assert new.token == 2 and read_lease(redis_client)["holder"] == "b"
