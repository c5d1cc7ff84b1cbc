"""schedule_fire.lua: the leader advances a schedule past a tick, fenced by its token and
compare-and-set on (rev, next); a refusal changes nothing."""

from __future__ import annotations

import pytest
import redis

from appliance.store import Store
from appliance.store.results import Refusal
from appliance.store.schedules import ScheduleStore
from tests.scheduler.helpers import (
    read_due,
    read_fired,
    read_outbox,
    read_schedule,
    seed_schedule,
)
from tests.store.helpers import snapshot

TASK = ("sched:s1:5000", '{"topic":"ticks"}')


async def _leader(store: Store) -> tuple[ScheduleStore, int]:
    schedules = ScheduleStore(store)
    return schedules, (await schedules.acquire("me", 60_000)).token


async def test_fire_advances_and_parks_the_task(store: Store, redis_client: redis.Redis) -> None:
    s = await seed_schedule(store, 5000)
    schedules, token = await _leader(store)
    assert await schedules.fire(token, "s1", (s.rev, 5000), 5000, 6000, TASK) is None
    fields = read_schedule(redis_client)
    assert (fields["next"], fields["last"], fields["rev"]) == ("6000", "5000", "1")
    assert read_due(redis_client) == {"s1": 6000}
    assert read_outbox(redis_client) == dict([TASK])
    assert read_fired(redis_client) == 1
    await schedules.settle([TASK[0]])
    assert read_outbox(redis_client) == {}


async def test_a_skip_moves_next_without_a_task(store: Store, redis_client: redis.Redis) -> None:
    s = await seed_schedule(store, 5000)
    schedules, token = await _leader(store)
    assert await schedules.fire(token, "s1", (s.rev, 5000), 0, 60_000, None) is None
    fields = read_schedule(redis_client)
    assert (fields["next"], fields["last"]) == ("60000", "0")
    assert read_outbox(redis_client) == {} and read_fired(redis_client) == 0


async def test_the_last_tick_ends_the_schedule(store: Store, redis_client: redis.Redis) -> None:
    s = await seed_schedule(store, 5000)
    schedules, token = await _leader(store)
    assert await schedules.fire(token, "s1", (s.rev, 5000), 5000, 0, TASK) is None
    assert read_due(redis_client) == {} and read_schedule(redis_client)["next"] == "0"


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("stale token", Refusal.NOT_LEADER),
        ("no lease", Refusal.NOT_LEADER),
        ("stale rev", Refusal.CHANGED),
        ("stale next", Refusal.CHANGED),
    ],
)
async def test_refusals_change_nothing(
    store: Store, redis_client: redis.Redis, case: str, code: Refusal
) -> None:
    s = await seed_schedule(store, 5000)
    schedules, token = await _leader(store)
    expected = (s.rev, 5000)
    if case == "stale token":
        token -= 1
    elif case == "no lease":
        await schedules.release(token)
    elif case == "stale rev":
        expected = (s.rev - 1, 5000)
    else:
        expected = (s.rev, 4000)
    before = snapshot(redis_client)
    assert await schedules.fire(token, "s1", expected, 5000, 6000, TASK) is code
    assert snapshot(redis_client) == before


async def test_paused_and_missing_schedules_are_refused(
    store: Store, redis_client: redis.Redis
) -> None:
    s = await seed_schedule(store, 5000, paused=True)
    schedules, token = await _leader(store)
    before = snapshot(redis_client)
    assert await schedules.fire(token, "s1", (s.rev, 5000), 5000, 6000, TASK) is Refusal.PAUSED
    assert await schedules.fire(token, "nope", (1, 5000), 5000, 6000, TASK) is Refusal.NOT_FOUND
    assert snapshot(redis_client) == before
