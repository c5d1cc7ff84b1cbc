"""schedule_pause.lua: a paused schedule leaves the due set; pausing twice changes nothing."""

from __future__ import annotations

import pytest
import redis

from appliance.errors import NotFound
from appliance.store import Store
from appliance.store.schedules import ScheduleStore
from tests.scheduler.helpers import read_due, read_schedule, seed_schedule
from tests.store.helpers import snapshot


async def test_pause_takes_the_schedule_out_of_the_due_set(
    store: Store, redis_client: redis.Redis
) -> None:
    await seed_schedule(store, 5000)
    fields = await ScheduleStore(store).pause("s1")
    assert fields["paused"] == "1" and fields["rev"] == "2" and fields["next"] == "5000"
    assert read_due(redis_client) == {}
    before = snapshot(redis_client)
    await ScheduleStore(store).pause("s1")
    assert snapshot(redis_client) == before
    assert read_schedule(redis_client)["rev"] == "2"


async def test_pause_of_an_unknown_id(store: Store) -> None:
    with pytest.raises(NotFound):
        await ScheduleStore(store).pause("nope")
