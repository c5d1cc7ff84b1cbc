"""recover_expired.lua: expired leases go back to PENDING (or DEAD), their tokens fenced off."""

from __future__ import annotations

import asyncio

import pytest
import redis

from appliance.errors import StaleLease
from appliance.store import Store
from tests.store.helpers import read_dlq, read_pending, read_running, read_state, seed_running


async def test_live_leases_are_left_alone(store: Store, redis_client: redis.Redis) -> None:
    await seed_running(store, n=2, lease_ms=60_000)
    result = await store.recover_expired("t")
    assert (result.retried, result.dead) == (0, 0)
    assert 59_000 < result.next_deadline_in_ms <= 60_000
    assert len(read_running(redis_client)) == 2


async def test_expired_lease_returns_to_pending_due_now(
    store: Store, redis_client: redis.Redis
) -> None:
    (task,) = await seed_running(store, lease_ms=50)
    await asyncio.sleep(0.08)
    result = await store.recover_expired("t")
    assert (result.retried, result.dead, result.next_deadline_in_ms) == (1, 0, -1)
    assert read_state(redis_client, "t", task.id) == "PENDING"
    assert task.id in read_pending(redis_client)
    again = await store.claim("t", 1, 30_000)
    assert [t.id for t in again.tasks] == [task.id] and again.tasks[0].attempt == 2


async def test_fencing_old_holder_cannot_ack_or_nack(store: Store) -> None:
    (old,) = await seed_running(store, lease_ms=50)
    await asyncio.sleep(0.08)
    await store.recover_expired("t")
    (new,) = (await store.claim("t", 1, 30_000)).tasks
    with pytest.raises(StaleLease):
        await store.ack(old.id, old.lease_token)
    with pytest.raises(StaleLease):
        await store.nack(old.id, old.lease_token, "late")
    with pytest.raises(StaleLease):
        await store.extend(old.id, old.lease_token, 1000)
    await store.ack(new.id, new.lease_token)


async def test_expired_with_retries_spent_goes_dead(
    store: Store, redis_client: redis.Redis
) -> None:
    (task,) = await seed_running(store, lease_ms=50, max_retries=0)
    await asyncio.sleep(0.08)
    result = await store.recover_expired("t")
    assert (result.retried, result.dead) == (0, 1)
    assert read_dlq(redis_client) == [task.id]
    assert read_state(redis_client, "t", task.id) == "DEAD"


async def test_concurrent_watchdogs_move_each_task_once(
    store: Store, redis_client: redis.Redis
) -> None:
    await seed_running(store, n=50, lease_ms=50)
    await asyncio.sleep(0.08)
    results = await asyncio.gather(*(store.recover_expired("t", limit=10) for _ in range(10)))
    assert sum(r.retried for r in results) == 50
    assert len(read_pending(redis_client)) == 50 and read_running(redis_client) == {}


async def test_a_workflow_step_task_dead_lettered_publishes_its_id(
    store: Store, redis_client: redis.Redis
) -> None:
    from appliance.model import NewTask
    from tests.store.helpers import workflow_listener, workflow_message

    await store.enqueue([NewTask("wf:r1:a", "t", "p", 0)])
    await store.claim("t", 1, 50)
    listener = workflow_listener(redis_client)
    await asyncio.sleep(0.08)
    assert (await store.recover_expired("t")).dead == 1
    assert workflow_message(listener)[0] == "wf:r1:a"
