"""requeue_dead.lua and purge_dead.lua, and listing the DLQ with a cursor."""

from __future__ import annotations

import redis

from appliance.store import Store
from tests.store.helpers import KEYS, read_dlq, read_pending, read_state, seed_dead, seed_pending


async def test_requeue_selected_ids(store: Store, redis_client: redis.Redis) -> None:
    ids = await seed_dead(store, n=3)
    assert await store.requeue_dead("t", [ids[0], "not-dead"]) == 1
    assert read_state(redis_client, "t", ids[0]) == "PENDING"
    assert redis_client.hget(KEYS.topic("t").task(ids[0]), "attempt") == b"0"
    assert read_dlq(redis_client) == ids[1:]


async def test_requeue_all_and_task_runs_again(store: Store, redis_client: redis.Redis) -> None:
    ids = await seed_dead(store, n=3)
    assert await store.requeue_dead("t") == 3
    assert read_dlq(redis_client) == [] and set(read_pending(redis_client)) == set(ids)
    claim = await store.claim("t", 3, 30_000)
    assert {t.id for t in claim.tasks} == set(ids) and all(t.attempt == 1 for t in claim.tasks)


async def test_requeue_leaves_live_tasks_alone(store: Store, redis_client: redis.Redis) -> None:
    (tid,) = await seed_pending(store, delay_ms=60_000)
    assert await store.requeue_dead("t", [tid]) == 0
    assert read_pending(redis_client)[tid] > 0


async def test_purge_selected_and_all(store: Store, redis_client: redis.Redis) -> None:
    ids = await seed_dead(store, n=3)
    assert await store.purge_dead("t", [ids[0]]) == 1
    assert not redis_client.exists(KEYS.topic("t").task(ids[0]), KEYS.id_topics(ids[0]))
    assert await store.purge_dead("t") == 2
    assert read_dlq(redis_client) == []


async def test_list_pages_with_cursor(store: Store) -> None:
    ids = await seed_dead(store, n=5)
    seen: list[str] = []
    cursor = ""
    for _ in range(5):
        page, cursor = await store.list_dead("t", 2, cursor)
        seen += [d.task.id for d in page]
        if not cursor:
            break
    assert sorted(seen) == sorted(ids) and len(seen) == 5
    page, _ = await store.list_dead("t", 10)
    assert all(d.task.last_error == "boom" and d.dead_at_ms > 0 for d in page)
