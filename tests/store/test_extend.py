"""extend.lua: only the current lease holder moves its deadline."""

from __future__ import annotations

import pytest
import redis

from appliance.errors import NotFound, StaleLease
from appliance.store import Store
from tests.store.helpers import now_ms, read_running, seed_running, snapshot


async def test_extend_moves_the_deadline(store: Store, redis_client: redis.Redis) -> None:
    (task,) = await seed_running(store, lease_ms=1_000)
    before = now_ms(redis_client)
    deadline = await store.extend(task.id, task.lease_token, 60_000)
    assert before + 60_000 <= deadline <= now_ms(redis_client) + 60_000
    assert read_running(redis_client)[task.id] == deadline


async def test_extend_with_stale_token_is_refused(store: Store, redis_client: redis.Redis) -> None:
    (task,) = await seed_running(store)
    before = snapshot(redis_client)
    with pytest.raises(StaleLease):
        await store.extend(task.id, "t/old.1", 60_000)
    with pytest.raises(NotFound):
        await store.extend("missing", "t/old.1", 60_000)
    assert snapshot(redis_client) == before


async def test_extend_after_ack_is_refused(store: Store) -> None:
    (task,) = await seed_running(store)
    await store.ack(task.id, task.lease_token)
    with pytest.raises(StaleLease):
        await store.extend(task.id, task.lease_token, 60_000)


async def test_extend_many_renews_a_batch_and_reports_each(
    store: Store, redis_client: redis.Redis
) -> None:
    a, b = await seed_running(store, n=2, lease_ms=1_000)
    await store.ack(b.id, b.lease_token)
    outcome = await store.extend_many(
        [(a.id, a.lease_token), (b.id, b.lease_token), ("t-9", "nonsense")], 60_000
    )
    assert isinstance(outcome[0], int) and outcome[0] >= now_ms(redis_client) + 59_000
    assert isinstance(outcome[1], StaleLease)
    assert isinstance(outcome[2], StaleLease)
    assert read_running(redis_client) == {a.id: outcome[0]}
