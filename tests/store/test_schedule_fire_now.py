"""schedule_fire_now.lua: one tick parked in the outbox now, the timetable left alone; the
scheduler's outbox flush makes it exactly one task."""

from __future__ import annotations

import json

import pytest
import redis

from appliance.errors import NotFound
from appliance.scheduler.registry import Registry
from appliance.store import Store
from appliance.store.schedules import ScheduleStore
from tests.scheduler.helpers import read_due, read_fired, read_outbox, read_schedule, seed_schedule
from tests.store.helpers import snapshot


async def test_fire_now_parks_one_tick_and_keeps_the_timetable(
    store: Store, redis_client: redis.Redis
) -> None:
    await seed_schedule(store, 9_000_000_000_000, paused=True)
    task_id, tick = await Registry(store, store.settings).fire_now("s1")
    assert task_id == f"sched:s1:{tick}:now"
    body = json.loads(read_outbox(redis_client)[task_id])
    assert body["due"] == tick and body["topic"] == "ticks"
    assert read_schedule(redis_client)["last"] == str(tick)
    assert read_schedule(redis_client)["next"] == "9000000000000"  # the timetable did not move
    assert read_due(redis_client) == {}  # still paused
    assert read_fired(redis_client) == 1


async def test_fire_now_of_an_unknown_schedule_changes_nothing(
    store: Store, redis_client: redis.Redis
) -> None:
    before = snapshot(redis_client)
    with pytest.raises(NotFound):
        await ScheduleStore(store).fire_now("nope", 1, ("sched:nope:1:now", "{}"))
    assert snapshot(redis_client) == before
