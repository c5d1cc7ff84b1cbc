"""schedule_put.lua: create, update and upsert a definition; refusals change nothing."""

from __future__ import annotations

import dataclasses

import pytest
import redis

from appliance.errors import AlreadyExists, NotFound, WrongState
from appliance.scheduler.definitions import Source, from_fields
from appliance.store import Store
from appliance.store.schedules import ScheduleStore
from tests.scheduler.helpers import EVERY_SECOND, KEYS, read_due, read_schedule, seed_schedule
from tests.store.helpers import snapshot

D = EVERY_SECOND


async def test_create_writes_the_hash_due_entry_and_id(
    store: Store, redis_client: redis.Redis
) -> None:
    s = await seed_schedule(store, 5000)
    assert s.definition == D and s.next_fire_ms == 5000 and s.last_fire_ms == 0 and s.rev == 1
    assert read_due(redis_client) == {"s1": 5000}
    assert redis_client.smembers(KEYS.ids) == {b"s1"}
    assert read_schedule(redis_client)["topic"] == "ticks"


async def test_create_of_an_existing_id_is_refused(store: Store, redis_client: redis.Redis) -> None:
    await seed_schedule(store, 5000)
    before = snapshot(redis_client)
    with pytest.raises(AlreadyExists):
        await ScheduleStore(store).put("create", "s1", 9000, D.to_fields())
    assert snapshot(redis_client) == before


async def test_a_retried_call_returns_what_it_stored(
    store: Store, redis_client: redis.Redis
) -> None:
    k = KEYS
    script = store.scripts.get("schedule_put")
    args = ["create", "s1", 5000, "call-1", k.channel]
    for name, value in D.to_fields().items():
        args += [name, value]
    first = await script(keys=[k.schedule("s1"), k.due, k.ids], args=args)
    again = await script(keys=[k.schedule("s1"), k.due, k.ids], args=args)  # reply was lost
    assert again == first
    assert read_schedule(redis_client)["rev"] == "1"


async def test_update_replaces_the_definition_and_keeps_last_and_created(
    store: Store, redis_client: redis.Redis
) -> None:
    created = await seed_schedule(store, 5000)
    redis_client.hset(KEYS.schedule("s1"), "last", 4000)
    new = dataclasses.replace(D, interval_ms=0, cron="* * * * *", payload="new")
    fields = await ScheduleStore(store).put("update", "s1", 60_000, new.to_fields())
    s = from_fields(fields)
    assert s.definition == new and s.last_fire_ms == 4000 and s.rev == 2
    assert s.created_ms == created.created_ms and s.next_fire_ms == 60_000
    assert read_due(redis_client) == {"s1": 60_000}


async def test_update_refusals(store: Store, redis_client: redis.Redis) -> None:
    schedules = ScheduleStore(store)
    with pytest.raises(NotFound):
        await schedules.put("update", "s1", 5000, D.to_fields())
    await schedules.put(
        "upsert", "s1", 5000, dataclasses.replace(D, source=Source.CONFIG).to_fields()
    )
    before = snapshot(redis_client)
    with pytest.raises(WrongState, match="config file"):
        await schedules.put("update", "s1", 6000, D.to_fields())
    assert snapshot(redis_client) == before


async def test_paused_or_finished_schedules_are_not_due(
    store: Store, redis_client: redis.Redis
) -> None:
    await seed_schedule(store, 5000, paused=True)
    await seed_schedule(store, 0, id="done")
    assert read_due(redis_client) == {}
    assert redis_client.smembers(KEYS.ids) == {b"s1", b"done"}


async def test_put_wakes_the_scheduler(store: Store, redis_client: redis.Redis) -> None:
    pubsub = redis_client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(KEYS.channel)
    pubsub.get_message(timeout=1)
    await seed_schedule(store, 5000)
    message = pubsub.get_message(timeout=2)
    assert message is not None and message["data"] == b"s1 5000"
    pubsub.close()
