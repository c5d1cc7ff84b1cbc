"""nack.lua: retry with backoff or retry-after, dead-letter when asked or when retries are spent."""

from __future__ import annotations

import pytest
import redis

from appliance.errors import StaleLease
from appliance.store import Store
from tests.store.helpers import (
    KEYS,
    now_ms,
    read_dlq,
    read_pending,
    read_state,
    seed_running,
    snapshot,
)


async def test_nack_with_retries_left_goes_back_to_pending_after_backoff(
    store: Store, redis_client: redis.Redis
) -> None:
    (task,) = await seed_running(store)
    before = now_ms(redis_client)
    result = await store.nack(task.id, task.lease_token, "boom")
    assert not result.dead_lettered
    base = store.settings.backoff_base_ms
    assert before + base // 2 <= result.next_execute_time_ms <= now_ms(redis_client) + base
    assert read_state(redis_client, "t", task.id) == "PENDING"
    assert read_pending(redis_client)[task.id] == result.next_execute_time_ms
    assert redis_client.hget(KEYS.topic("t").task(task.id), "err") == b"boom"


async def test_backoff_grows_and_is_capped(store: Store, redis_client: redis.Redis) -> None:
    (task,) = await seed_running(store, max_retries=10)
    redis_client.hset(KEYS.topic("t").task(task.id), "attempt", 8)
    before = now_ms(redis_client)
    result = await store.nack(task.id, task.lease_token, "boom")
    cap = store.settings.backoff_cap_ms
    assert before + cap // 2 <= result.next_execute_time_ms <= now_ms(redis_client) + cap


async def test_retry_after_overrides_backoff(store: Store, redis_client: redis.Redis) -> None:
    (task,) = await seed_running(store)
    before = now_ms(redis_client)
    result = await store.nack(task.id, task.lease_token, "busy", retry_after_ms=7_000)
    assert before + 7_000 <= result.next_execute_time_ms <= now_ms(redis_client) + 7_000


async def test_dead_letter_flag_goes_straight_to_dlq(
    store: Store, redis_client: redis.Redis
) -> None:
    (task,) = await seed_running(store)
    result = await store.nack(task.id, task.lease_token, "poison", dead_letter=True)
    assert result.dead_lettered
    assert read_state(redis_client, "t", task.id) == "DEAD"
    assert read_dlq(redis_client) == [task.id]


async def test_retries_exhausted_dead_letters(store: Store, redis_client: redis.Redis) -> None:
    (task,) = await seed_running(store, max_retries=0)
    result = await store.nack(task.id, task.lease_token, "once")
    assert result.dead_lettered and read_dlq(redis_client) == [task.id]


async def test_repeated_nack_returns_first_result_and_changes_nothing(
    store: Store, redis_client: redis.Redis
) -> None:
    (task,) = await seed_running(store)
    first = await store.nack(task.id, task.lease_token, "boom", retry_after_ms=60_000)
    before = snapshot(redis_client)
    again = await store.nack(task.id, task.lease_token, "boom", retry_after_ms=1)
    assert again == first
    assert snapshot(redis_client) == before


async def test_stale_token_is_refused(store: Store, redis_client: redis.Redis) -> None:
    (task,) = await seed_running(store)
    before = snapshot(redis_client)
    with pytest.raises(StaleLease):
        await store.nack(task.id, "t/other.1", "boom")
    assert snapshot(redis_client) == before


async def test_ack_after_nack_with_same_token_is_refused(store: Store) -> None:
    (task,) = await seed_running(store)
    await store.nack(task.id, task.lease_token, "boom", retry_after_ms=60_000)
    with pytest.raises(StaleLease):
        await store.ack(task.id, task.lease_token)


async def test_repeat_after_the_task_was_leased_and_settled_again(store: Store) -> None:
    """A Nack whose reply was lost, retried after the next delivery settled: the first result."""
    (first,) = await seed_running(store)
    applied = await store.nack(first.id, first.lease_token, "boom", retry_after_ms=1)
    import asyncio

    await asyncio.sleep(0.01)
    (second,) = (await store.claim("t", 1, 30_000)).tasks
    await store.ack(second.id, second.lease_token)
    assert await store.nack(first.id, first.lease_token, "boom", retry_after_ms=1) == applied
    with pytest.raises(StaleLease):  # that token was nacked: it cannot ack now
        await store.ack(first.id, first.lease_token)


async def test_a_workflow_step_task_dead_lettered_publishes_its_id(
    store: Store, redis_client: redis.Redis
) -> None:
    """So an advancer fails its step at once (a retry publishes nothing: the step runs on)."""
    from appliance.model import NewTask
    from tests.store.helpers import workflow_listener, workflow_message

    await store.enqueue([NewTask("wf:r1:a", "t", "p", 1), NewTask("wf:r1:b", "t", "p", 0)])
    first, second = (await store.claim("t", 2, 30_000)).tasks
    listener = workflow_listener(redis_client)
    await store.nack(first.id, first.lease_token, "again")
    await store.nack(second.id, second.lease_token, "boom", dead_letter=True)
    words = workflow_message(listener)
    assert len(words) == 2 and words[0] == "wf:r1:b" and words[1].isdigit()
