"""release.lua: a consumer gives a task back without using up a retry."""

from __future__ import annotations

import pytest
import redis

from appliance.errors import StaleLease
from appliance.store import Store
from tests.store.helpers import KEYS, now_ms, read_pending, read_state, seed_running, snapshot


async def test_release_requeues_without_counting_the_attempt(
    store: Store, redis_client: redis.Redis
) -> None:
    (task,) = await seed_running(store, max_retries=0)
    before = now_ms(redis_client)
    result = await store.release(task.id, task.lease_token)
    assert before <= result.next_execute_time_ms <= now_ms(redis_client)
    assert read_state(redis_client, "t", task.id) == "PENDING"
    assert redis_client.hget(KEYS.topic("t").task(task.id), "attempt") == b"0"
    (again,) = (await store.claim("t", 1, 30_000)).tasks
    assert again.attempt == 1  # max_retries=0 and still deliverable: the release was free


async def test_release_with_delay_and_repeat(store: Store, redis_client: redis.Redis) -> None:
    (task,) = await seed_running(store)
    first = await store.release(task.id, task.lease_token, 5_000)
    assert read_pending(redis_client)[task.id] == first.next_execute_time_ms
    before = snapshot(redis_client)
    assert await store.release(task.id, task.lease_token, 1) == first
    assert snapshot(redis_client) == before


async def test_release_with_stale_token_is_refused(store: Store, redis_client: redis.Redis) -> None:
    (task,) = await seed_running(store)
    before = snapshot(redis_client)
    with pytest.raises(StaleLease):
        await store.release(task.id, "t/old.1")
    assert snapshot(redis_client) == before
    await store.ack(task.id, task.lease_token)
    with pytest.raises(StaleLease):
        await store.release(task.id, task.lease_token)
