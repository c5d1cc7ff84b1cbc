"""release_lost.lua: the tasks of a worker stream that broke go back at once, attempt counted."""

from __future__ import annotations

import asyncio

import pytest
import redis

from appliance.errors import StaleLease
from appliance.model import NewTask
from appliance.store import Store
from tests.store.helpers import (
    KEYS,
    read_pending,
    read_running,
    read_state,
    seed_running,
    snapshot,
)


async def test_lost_tasks_are_due_at_once_in_their_place_with_the_attempt_counted(
    store: Store, redis_client: redis.Redis
) -> None:
    tasks = await seed_running(store, n=3)
    await asyncio.sleep(0.005)
    later = [NewTask(f"later-{i}", "t", "p", 3, 0) for i in range(2)]
    await store.enqueue(later, [True, True])  # due after the lost ones
    moved = await store.release_lost([(t.id, t.lease_token) for t in tasks], "worker lost")
    assert moved == 3
    assert read_running(redis_client) == {}
    pending = read_pending(redis_client)
    for t in tasks:
        assert pending[t.id] == t.execute_time_ms  # its own due time: back at its place
        record = redis_client.hgetall(KEYS.topic("t").task(t.id))
        assert record[b"state"] == b"PENDING"
        assert record[b"attempt"] == b"1"  # counted: the next lease is attempt 2
        assert record[b"err"] == b"worker lost"
    again = (await store.claim("t", 3, 30_000)).tasks  # first in line, before "later-*"
    assert sorted(a.id for a in again) == sorted(t.id for t in tasks)
    assert sorted(a.attempt for a in again) == [2, 2, 2]


async def test_lost_task_with_retries_spent_is_dead(
    store: Store, redis_client: redis.Redis
) -> None:
    (task,) = await seed_running(store, max_retries=0)
    assert await store.release_lost([(task.id, task.lease_token)], "worker lost") == 1
    assert read_state(redis_client, "t", task.id) == "DEAD"
    assert redis_client.zscore(KEYS.topic("t").dlq, task.id) is not None


async def test_the_lost_workers_late_settles_are_stale(store: Store) -> None:
    (task,) = await seed_running(store)
    await store.release_lost([(task.id, task.lease_token)], "worker lost")
    with pytest.raises(StaleLease):
        await store.ack(task.id, task.lease_token)
    with pytest.raises(StaleLease):
        await store.nack(task.id, task.lease_token, "late")


async def test_tokens_no_longer_current_are_skipped(
    store: Store, redis_client: redis.Redis
) -> None:
    first, second = await seed_running(store, n=2)
    await store.ack(first.id, first.lease_token)
    before = snapshot(redis_client)
    stale = [(first.id, first.lease_token), (second.id, second.lease_token + "x"), ("t-9", "t/x.1")]
    assert await store.release_lost(stale, "worker lost") == 0
    assert snapshot(redis_client) == before
    assert await store.release_lost([(second.id, second.lease_token)], "worker lost") == 1
    assert await store.release_lost([(second.id, second.lease_token)], "worker lost") == 0


async def test_release_wakes_long_polls_of_the_topic(
    store: Store, redis_client: redis.Redis
) -> None:
    (task,) = await seed_running(store)
    pubsub = redis_client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(KEYS.wake_channel)
    pubsub.get_message(timeout=1)
    await store.release_lost([(task.id, task.lease_token)], "worker lost")
    message = pubsub.get_message(timeout=2)
    assert message is not None and message["data"].decode().startswith("t ")
    pubsub.close()


async def test_a_workflow_step_task_dead_lettered_publishes_its_id(
    store: Store, redis_client: redis.Redis
) -> None:
    from tests.store.helpers import workflow_listener, workflow_message

    await store.enqueue([NewTask("wf:r1:a", "t", "p", 0)])
    (task,) = (await store.claim("t", 1, 30_000)).tasks
    listener = workflow_listener(redis_client)
    assert await store.release_lost([(task.id, task.lease_token)], "worker lost") == 1
    assert workflow_message(listener)[0] == "wf:r1:a"
