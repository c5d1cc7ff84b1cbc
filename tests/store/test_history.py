"""lua/lib/history.lua through the scripts that include it: every transition appends its event
to the task's `hist` field in the same call, bounded, expiring and deleted with the record."""

from __future__ import annotations

import asyncio

import redis

from appliance.model import TaskEvent
from appliance.store import Store
from tests.conftest import on_both
from tests.store.helpers import KEYS, seed_pending, seed_running


def kinds(events: list[TaskEvent]) -> list[str]:
    return [e.kind for e in events]


@on_both
async def test_a_task_s_life_is_its_history(store: Store, redis_client: redis.Redis) -> None:
    (task_id,) = await seed_pending(store, max_retries=5)
    task, events = await store.history(task_id)
    assert kinds(events) == ["enqueue"] and events[0].time_ms == task.created_at_ms
    (leased,) = (await store.claim("t", 1, 30_000, who="stream s1 w1")).tasks
    await store.extend_many([(task_id, leased.lease_token)], 30_000)
    await store.extend_many([(task_id, leased.lease_token)], 30_000)
    await store.nack(task_id, leased.lease_token, "boom\nsecond line", retry_after_ms=1)
    await asyncio.sleep(0.01)
    (again,) = (await store.claim("t", 1, 30_000, who="retrieve app ipv4:1.2.3.4:5")).tasks
    await store.nack(task_id, again.lease_token, "fatal", dead_letter=True)
    await store.requeue_dead("t", [task_id])
    (third,) = (await store.claim("t", 1, 30_000)).tasks
    await store.ack(task_id, third.lease_token)
    _, events = await store.history(task_id)
    assert [(e.kind, e.detail) for e in events] == [
        ("enqueue", ""),
        ("lease", "stream s1 w1"),
        ("extend", "2"),  # back-to-back extensions are one line
        ("nack", "boom second line"),
        ("lease", "retrieve app ipv4:1.2.3.4:5"),
        ("nack", "fatal"),
        ("dead", "asked"),
        ("requeue", ""),
        ("lease", ""),
        ("ack", ""),
    ]
    times = [e.time_ms for e in events]
    assert times == sorted(times)
    key = KEYS.topic("t").task(task_id)
    assert redis_client.hexists(key, "hist")  # in the record: same key, same slot, same TTL
    assert 0 < redis_client.pttl(key) <= store.settings.retention_ms


@on_both
async def test_the_history_is_bounded_and_keeps_the_newest(store: Store) -> None:
    (task_id,) = await seed_pending(store, max_retries=100)
    for n in range(20):
        (leased,) = (await store.claim("t", 1, 30_000, who=f"w{n}")).tasks
        await store.nack(task_id, leased.lease_token, f"error {n} " + "x" * 200, retry_after_ms=1)
        await asyncio.sleep(0.003)
    raw = await store.redis.hget(KEYS.topic("t").task(task_id), "hist")
    assert raw is not None and len(raw) <= 1000
    _, events = await store.history(task_id)
    assert events[0].kind == "enqueue"  # the record's creation, always there
    assert (events[-2].kind, events[-2].detail) == ("lease", "w19")
    assert events[-1].detail.startswith("error 19 ") and len(events[-1].detail) == 160
    assert len(events) < 20


async def test_cancel_of_a_task_never_leased(store: Store) -> None:
    (task_id,) = await seed_pending(store)
    await store.cancel(task_id)
    _, events = await store.history(task_id)
    assert kinds(events) == ["enqueue", "cancel"]


async def test_recovery_and_a_lost_worker(store: Store) -> None:
    (task,) = await seed_running(store, lease_ms=1)
    await asyncio.sleep(0.01)
    assert (await store.recover_expired("t")).retried == 1
    (leased,) = (await store.claim("t", 1, 30_000)).tasks
    await store.release_lost([(task.id, leased.lease_token)], "worker lost")
    (leased,) = (await store.claim("t", 1, 30_000)).tasks
    await store.release(task.id, leased.lease_token, 0, "bye")
    _, events = await store.history(task.id)
    assert [(e.kind, e.detail) for e in events[2:]] == [
        ("recover", "lease expired"),
        ("lease", ""),
        ("recover", "worker lost"),
        ("lease", ""),
        ("release", "bye"),
    ]


async def test_purge_deletes_the_history_with_the_record(
    store: Store, redis_client: redis.Redis
) -> None:
    (task,) = await seed_running(store)
    await store.nack(task.id, task.lease_token, "x", dead_letter=True)
    assert await store.purge_dead("t", [task.id]) == 1
    assert not redis_client.exists(KEYS.topic("t").task(task.id))
