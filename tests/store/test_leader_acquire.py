"""leader_acquire.lua: one holder at a time, each grant under a larger fencing token."""

from __future__ import annotations

import asyncio

import redis

from appliance.store import Store
from appliance.store.schedules import ScheduleStore
from tests.scheduler.helpers import KEYS, read_lease
from tests.store.helpers import now_ms, snapshot


async def test_a_free_lease_is_granted_under_a_new_token(
    store: Store, redis_client: redis.Redis
) -> None:
    before = now_ms(redis_client)
    reply = await ScheduleStore(store).acquire("a", 2000)
    assert reply.granted and reply.holder == "a" and reply.token == 1
    assert before + 2000 <= reply.expires_ms <= now_ms(redis_client) + 2000
    assert read_lease(redis_client) == {
        "holder": "a",
        "token": "1",
        "expires": str(reply.expires_ms),
    }
    assert 1900 < redis_client.pttl(KEYS.lease) <= 2000


async def test_a_held_lease_is_refused_and_says_who_holds_it(
    store: Store, redis_client: redis.Redis
) -> None:
    schedules = ScheduleStore(store)
    first = await schedules.acquire("a", 2000)
    before = snapshot(redis_client)
    reply = await schedules.acquire("b", 2000)
    assert not reply.granted
    assert (reply.holder, reply.token, reply.expires_ms) == ("a", 1, first.expires_ms)
    assert 0 < reply.left_ms <= 2000
    assert snapshot(redis_client) == before


async def test_the_holder_asking_again_gets_its_own_lease_back(
    store: Store, redis_client: redis.Redis
) -> None:
    schedules = ScheduleStore(store)
    first = await schedules.acquire("a", 2000)
    again = await schedules.acquire("a", 2000)  # e.g. the first reply was lost
    assert again.granted and again.token == first.token
    assert int(redis_client.get(KEYS.fence)) == 1


async def test_after_expiry_the_next_holder_gets_a_larger_token(store: Store) -> None:
    schedules = ScheduleStore(store)
    assert (await schedules.acquire("a", 300)).token == 1
    await asyncio.sleep(0.35)
    reply = await schedules.acquire("b", 300)
    assert reply.granted and reply.holder == "b" and reply.token == 2
