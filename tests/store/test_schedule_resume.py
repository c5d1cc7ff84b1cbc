"""schedule_resume.lua: a paused schedule is due again from the given next fire."""

from __future__ import annotations

import pytest
import redis

from appliance.errors import NotFound
from appliance.store import Store
from appliance.store.schedules import ScheduleStore
from tests.scheduler.helpers import read_due, seed_schedule
from tests.store.helpers import snapshot


async def test_resume_sets_the_next_fire_and_the_due_entry(
    store: Store, redis_client: redis.Redis
) -> None:
    await seed_schedule(store, 5000, paused=True)
    fields = await ScheduleStore(store).resume("s1", 9000)
    assert fields["paused"] == "0" and fields["next"] == "9000" and fields["rev"] == "2"
    assert read_due(redis_client) == {"s1": 9000}


async def test_resuming_a_running_schedule_changes_nothing(
    store: Store, redis_client: redis.Redis
) -> None:
    await seed_schedule(store, 5000)
    before = snapshot(redis_client)
    fields = await ScheduleStore(store).resume("s1", 9000)
    assert fields["next"] == "5000"
    assert snapshot(redis_client) == before


async def test_a_finished_schedule_resumes_without_a_due_entry(
    store: Store, redis_client: redis.Redis
) -> None:
    await seed_schedule(store, 5000, paused=True)
    await ScheduleStore(store).resume("s1", 0)
    assert read_due(redis_client) == {}


async def test_resume_of_an_unknown_id(store: Store) -> None:
    with pytest.raises(NotFound):
        await ScheduleStore(store).resume("nope", 1)
