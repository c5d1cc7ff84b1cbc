"""schedule_delete.lua: the schedule is gone in one step; config-made ones only on purpose."""

from __future__ import annotations

import dataclasses

import pytest
import redis

from appliance.errors import NotFound, WrongState
from appliance.scheduler.definitions import Source
from appliance.store import Store
from appliance.store.schedules import ScheduleStore
from tests.scheduler.helpers import EVERY_SECOND, KEYS, read_due, seed_schedule
from tests.store.helpers import snapshot


async def test_delete_removes_hash_due_entry_and_id(
    store: Store, redis_client: redis.Redis
) -> None:
    await seed_schedule(store, 5000)
    old = await ScheduleStore(store).delete("s1")
    assert old["topic"] == "ticks" and old["next"] == "5000"
    assert not redis_client.exists(KEYS.schedule("s1"))
    assert read_due(redis_client) == {} and redis_client.smembers(KEYS.ids) == set()


async def test_delete_refusals(store: Store, redis_client: redis.Redis) -> None:
    schedules = ScheduleStore(store)
    with pytest.raises(NotFound):
        await schedules.delete("s1")
    config_made = dataclasses.replace(EVERY_SECOND, source=Source.CONFIG)
    await schedules.put("upsert", "s1", 5000, config_made.to_fields())
    before = snapshot(redis_client)
    with pytest.raises(WrongState, match="config file"):
        await schedules.delete("s1")
    assert snapshot(redis_client) == before
    await schedules.delete("s1", api_only=False)  # the reconciler may
    assert not redis_client.exists(KEYS.schedule("s1"))
