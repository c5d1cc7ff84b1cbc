"""Schedule helpers for store and scheduler tests: seed_<thing>() and read_<thing>()."""

from __future__ import annotations

import dataclasses
from typing import Any

import redis

from appliance.keys import SchedulerKeys
from appliance.scheduler.definitions import Definition, Schedule, from_fields
from appliance.store import Store
from appliance.store.schedules import ScheduleStore

KEYS = SchedulerKeys("atp")
EVERY_SECOND = Definition(id="s1", topic="ticks", payload="p", interval_ms=1000)


async def seed_schedule(
    store: Store, next_ms: int, definition: Definition = EVERY_SECOND, **changes: Any
) -> Schedule:
    d = dataclasses.replace(definition, **changes)
    fields = await ScheduleStore(store).put("create", d.id, next_ms, d.to_fields())
    return from_fields(fields)


def read_schedule(r: redis.Redis, schedule_id: str = "s1") -> dict[str, str]:
    raw = r.hgetall(KEYS.schedule(schedule_id))
    return {k.decode(): v.decode() for k, v in raw.items()}


def read_due(r: redis.Redis) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in r.zrange(KEYS.due, 0, -1, withscores=True)}


def read_outbox(r: redis.Redis) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in r.hgetall(KEYS.outbox).items()}


def read_lease(r: redis.Redis) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in r.hgetall(KEYS.lease).items()}


def read_fired(r: redis.Redis) -> int:
    return int(r.get(KEYS.fired) or 0)
