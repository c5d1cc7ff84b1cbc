"""The scheduler loop in-process against the real Redis: ticks fire once each, due at the tick;
misfire policies after an outage; pause/resume; delete; the outbox; a deposed leader."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import redis

from appliance.config import Settings
from appliance.scheduler.definitions import Definition, Misfire
from appliance.scheduler.leader import Leader
from appliance.scheduler.registry import Registry
from appliance.scheduler.service import Scheduler, plan
from appliance.store import Store
from appliance.store.schedules import ScheduleStore
from tests.conftest import on_both
from tests.scheduler.helpers import (
    EVERY_SECOND,
    KEYS,
    read_outbox,
    read_schedule,
    seed_schedule,
)
from tests.store.helpers import now_ms, read_pending, read_state

FAST = Definition(id="fast", topic="ticks", payload="p", interval_ms=100)


def tuned(settings: Settings, **changes: int) -> Settings:
    defaults = {
        "leader_ttl_ms": 1000,
        "scheduler_lookahead_ms": 300,
        "scheduler_misfire_grace_ms": 4000,
    }
    return settings.replace(**{**defaults, **changes})


async def leading(store: Store, settings: Settings) -> Scheduler:
    """A scheduler whose leader holds a long lease: the test drives run_once() by hand."""
    leader = Leader(ScheduleStore(store), 30_000)
    await leader.run_once()
    assert leader.token() is not None
    return Scheduler(store, leader, settings)


def fired_ticks(r: redis.Redis, schedule_id: str = "s1", topic: str = "ticks") -> dict[int, int]:
    """tick ms -> due ms of every pending task the schedule made."""
    prefix = f"sched:{schedule_id}:"
    return {
        int(task_id.removeprefix(prefix)): due
        for task_id, due in read_pending(r, topic).items()
        if task_id.startswith(prefix)
    }


def second(ms: int) -> int:
    return ms - ms % 1000


async def early_in_a_second(r: redis.Redis) -> int:
    """The Redis clock, read at most 200 ms into a second (sleeping to the next one if need
    be): a test that reads the clock before the scheduler does then shares its second."""
    now = now_ms(r)
    if now % 1000 > 200:
        await asyncio.sleep((1000 - now % 1000 + 10) / 1000)
        now = now_ms(r)
    return now


# -- plan(): the misfire rules, pure ------------------------------------------------------


def test_plan_fires_on_time_and_late_within_the_grace() -> None:
    assert plan(EVERY_SECOND, 10_000, 9_500, 4000).tick_ms == 10_000
    step = plan(EVERY_SECOND, 10_000, 13_900, 4000)
    assert (step.tick_ms, step.next_ms, step.misfire) == (10_000, 11_000, False)


def test_plan_after_an_outage() -> None:
    skip = plan(EVERY_SECOND, 10_000, 20_500, 4000)
    assert (skip.tick_ms, skip.next_ms, skip.misfire) == (0, 21_000, True)
    once = plan(dataclasses.replace(EVERY_SECOND, misfire=Misfire.RUN_ONCE), 10_000, 20_500, 4000)
    assert (once.tick_ms, once.next_ms, once.misfire) == (20_000, 21_000, True)


# -- the loop --------------------------------------------------------------------------------


@on_both
async def test_each_tick_is_enqueued_ahead_and_due_at_the_tick(
    store: Store, settings: Settings, redis_client: redis.Redis
) -> None:
    settings = tuned(settings)
    registry = Registry(store, settings)
    await registry.create(FAST)
    leader = Leader(ScheduleStore(store), settings.leader_ttl_ms)
    scheduler = Scheduler(store, leader, settings)
    runners = [asyncio.create_task(leader.run()), asyncio.create_task(scheduler.run())]
    await asyncio.sleep(1.5)
    scheduler.stop()
    leader.stop()
    await asyncio.gather(*runners)
    now = now_ms(redis_client)
    ticks = fired_ticks(redis_client, "fast")
    assert all(due == tick for tick, due in ticks.items())
    assert sorted(ticks) == list(range(min(ticks), max(ticks) + 1, 100))
    assert max(ticks) > now  # enqueued ahead of time
    assert len(ticks) >= 12
    assert scheduler.fired == len(ticks) and scheduler.enqueued == len(ticks)
    s = await registry.get("fast")
    assert s.last_fire_ms == max(ticks) and s.next_fire_ms == max(ticks) + 100
    assert (await registry.status()).ticks_fired == len(ticks)


@on_both
async def test_two_schedulers_make_one_task_per_tick(
    store: Store, settings: Settings, redis_client: redis.Redis
) -> None:
    settings = tuned(settings)
    await Registry(store, settings).create(FAST)
    pairs = []
    for _ in range(2):
        leader = Leader(ScheduleStore(store), settings.leader_ttl_ms)
        pairs.append((leader, Scheduler(store, leader, settings)))
    leading = [asyncio.create_task(leader.run()) for leader, _ in pairs]
    firing = [asyncio.create_task(scheduler.run()) for _, scheduler in pairs]
    await asyncio.sleep(1.2)
    # The schedulers end first: a leader stopped mid-fire leaves that tick in the outbox for
    # the next leader (by design), where this test would not count it as enqueued.
    for _, scheduler in pairs:
        scheduler.stop()
    await asyncio.gather(*firing)
    for leader, _ in pairs:
        leader.stop()
    await asyncio.gather(*leading)
    ticks = fired_ticks(redis_client, "fast")
    assert sorted(ticks) == list(range(min(ticks), max(ticks) + 1, 100))
    assert sorted(s.fired for _, s in pairs)[0] == 0  # one of them never led
    assert sum(s.fired for _, s in pairs) == len(ticks)


async def test_jitter_delays_each_task_by_a_stable_amount(
    store: Store, settings: Settings, redis_client: redis.Redis
) -> None:
    settings = tuned(settings)
    now = now_ms(redis_client)
    await seed_schedule(store, second(now) + 1000, jitter_ms=250)
    scheduler = await leading(store, settings.replace(scheduler_lookahead_ms=3000))
    await scheduler.run_once()
    ticks = fired_ticks(redis_client)
    assert len(ticks) >= 2
    assert all(0 <= due - tick <= 250 for tick, due in ticks.items())
    assert any(due != tick for tick, due in ticks.items())


# -- misfires: the schedule's next tick is 10 s old, as after a 10 s outage -----------------


async def test_skip_drops_the_missed_ticks(
    store: Store, settings: Settings, redis_client: redis.Redis
) -> None:
    now = now_ms(redis_client)
    await seed_schedule(store, second(now) - 10_000)
    scheduler = await leading(store, tuned(settings))
    await scheduler.run_once()
    after = now_ms(redis_client)
    ticks = fired_ticks(redis_client)
    assert all(tick >= now for tick in ticks), ticks  # nothing for the outage
    assert len(ticks) <= 1
    assert int(read_schedule(redis_client)["next"]) > after


async def test_run_once_fires_one_catch_up_task(
    store: Store, settings: Settings, redis_client: redis.Redis
) -> None:
    now = await early_in_a_second(redis_client)
    await seed_schedule(store, second(now) - 10_000, misfire=Misfire.RUN_ONCE)
    scheduler = await leading(store, tuned(settings))
    await scheduler.run_once()
    after = now_ms(redis_client)
    ticks = fired_ticks(redis_client)
    missed = [tick for tick in ticks if tick <= now]
    assert len(missed) == 1, ticks
    assert second(now) <= missed[0] <= after  # the latest missed tick, due at once
    assert all(tick > after - 1000 for tick in ticks)
    assert int(read_schedule(redis_client)["next"]) > after


async def test_ticks_late_within_the_grace_all_fire(
    store: Store, settings: Settings, redis_client: redis.Redis
) -> None:
    now = now_ms(redis_client)
    first = second(now) - 3000  # a failover-sized gap: every tick still fires
    await seed_schedule(store, first)
    scheduler = await leading(store, tuned(settings))
    await scheduler.run_once()
    ticks = fired_ticks(redis_client)
    assert sorted(ticks)[:4] == [first, first + 1000, first + 2000, first + 3000]


# -- pause, resume, delete ---------------------------------------------------------------------


async def test_pause_cancels_the_tick_enqueued_ahead_and_resume_skips_the_pause(
    store: Store, settings: Settings, redis_client: redis.Redis
) -> None:
    settings = tuned(settings, scheduler_lookahead_ms=1500)
    registry = Registry(store, settings)
    now = now_ms(redis_client)
    await seed_schedule(store, second(now) + 1000)
    scheduler = await leading(store, settings)
    await scheduler.run_once()
    (ahead, *_) = sorted(fired_ticks(redis_client))
    assert ahead > now
    paused = await registry.pause("s1")
    assert paused.definition.paused
    assert read_state(redis_client, "ticks", f"sched:s1:{ahead}") == "CANCELED"
    assert fired_ticks(redis_client) == {}
    await scheduler.run_once()
    assert fired_ticks(redis_client) == {}  # nothing fires while paused
    await asyncio.sleep(1.2)
    resumed = await registry.resume("s1")
    assert not resumed.definition.paused
    assert resumed.next_fire_ms > now_ms(redis_client) - 1 and resumed.next_fire_ms > ahead
    await scheduler.run_once()
    assert min(fired_ticks(redis_client)) == resumed.next_fire_ms


async def test_delete_stops_firing(
    store: Store, settings: Settings, redis_client: redis.Redis
) -> None:
    settings = tuned(settings, scheduler_lookahead_ms=2500)
    now = now_ms(redis_client)
    await seed_schedule(store, second(now) + 2000)  # at least a second ahead: still ahead at
    scheduler = await leading(store, settings)  # the delete on a loaded machine
    await scheduler.run_once()
    assert fired_ticks(redis_client)
    await Registry(store, settings).delete("s1")
    assert fired_ticks(redis_client) == {}  # the tick enqueued ahead is canceled
    await asyncio.sleep(1.0)
    await scheduler.run_once()
    assert fired_ticks(redis_client) == {}


# -- exactly once: the outbox and fencing ----------------------------------------------------


@on_both
async def test_the_next_leader_enqueues_what_the_last_one_left_in_the_outbox(
    store: Store, settings: Settings, redis_client: redis.Redis
) -> None:
    body = {"topic": "ticks", "payload": "p", "due": 5000, "maxr": 2}
    redis_client.hset(KEYS.outbox, "sched:s1:5000", json.dumps(body))
    scheduler = await leading(store, tuned(settings))
    await scheduler.run_once()
    assert read_pending(redis_client, "ticks") == {"sched:s1:5000": 5000}
    assert read_outbox(redis_client) == {}
    redis_client.hset(KEYS.outbox, "sched:s1:5000", json.dumps(body))  # fired twice
    await scheduler.run_once()
    assert read_pending(redis_client, "ticks") == {"sched:s1:5000": 5000}  # still one task
    assert scheduler.enqueued == 2


async def test_a_deposed_leader_fires_nothing(
    store: Store, settings: Settings, redis_client: redis.Redis
) -> None:
    settings = tuned(settings, leader_ttl_ms=300)
    now = now_ms(redis_client)
    await seed_schedule(store, second(now) + 1000)
    frozen = Leader(ScheduleStore(store), 300, holder="frozen", clock=lambda: 0.0)
    await frozen.run_once()  # leads; its clock never moves, so it never notices by itself
    await asyncio.sleep(0.4)  # its lease expires in Redis
    other = Leader(ScheduleStore(store), 60_000, holder="other")
    await other.run_once()
    stale = Scheduler(store, frozen, settings.replace(scheduler_lookahead_ms=3000))
    await stale.run_once()
    assert fired_ticks(redis_client) == {} and read_outbox(redis_client) == {}
    assert frozen.token() is None  # the refused fire made it step down


async def test_fire_now_makes_exactly_one_task_even_of_a_paused_schedule(
    store: Store, settings: Settings, redis_client: redis.Redis
) -> None:
    settings = tuned(settings)
    registry = Registry(store, settings)
    await registry.create(dataclasses.replace(EVERY_SECOND, paused=True))
    task_id, tick = await registry.fire_now("s1")
    scheduler = await leading(store, settings)
    for _ in range(3):  # later passes (and a second leader's) find nothing more to enqueue
        await scheduler.run_once()
    assert read_pending(redis_client, "ticks") == {task_id: tick}
    assert read_outbox(redis_client) == {}
    assert scheduler.enqueued == 1
    assert (await registry.get("s1")).last_fire_ms == tick
