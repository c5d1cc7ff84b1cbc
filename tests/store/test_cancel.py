"""cancel.lua (the seed's Delete): only PENDING tasks are canceled."""

from __future__ import annotations

import pytest
import redis

from appliance.errors import NotFound, WrongState
from appliance.store import Store
from tests.store.helpers import KEYS, read_pending, read_state, seed_pending, seed_running, snapshot


async def test_cancel_pending(store: Store, redis_client: redis.Redis) -> None:
    (tid,) = await seed_pending(store, delay_ms=60_000)
    assert await store.cancel(tid) == ("t", True)
    assert read_state(redis_client, "t", tid) == "CANCELED"
    assert read_pending(redis_client) == {}
    assert 0 < redis_client.pttl(KEYS.topic("t").task(tid)) <= store.settings.retention_ms
    assert await store.cancel(tid) == ("t", False)  # again: still canceled, nothing changed


async def test_cancel_running_is_refused(store: Store, redis_client: redis.Redis) -> None:
    (task,) = await seed_running(store)
    before = snapshot(redis_client)
    with pytest.raises(WrongState, match="RUNNING"):
        await store.cancel(task.id)
    assert snapshot(redis_client) == before


async def test_cancel_unknown_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        await store.cancel("missing")


async def test_canceled_task_is_never_handed_out(store: Store) -> None:
    (tid,) = await seed_pending(store)
    await store.cancel(tid)
    claim = await store.claim("t", 10, 30_000)
    assert claim.tasks == []
