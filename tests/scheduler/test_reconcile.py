"""Config schedules are reconciled at start: the config wins for the ids it names, api-made
schedules are left alone, config-made ones it no longer names are deleted."""

from __future__ import annotations

import redis

from appliance.config import Settings
from appliance.scheduler.definitions import Definition, Source, from_config
from appliance.scheduler.leader import Leader
from appliance.scheduler.registry import Registry
from appliance.scheduler.service import Scheduler
from appliance.store import Store
from appliance.store.schedules import ScheduleStore
from tests.scheduler.helpers import read_due

DECLARED = [
    {"id": "report", "topic": "reports", "cron": "0 2 * * *", "timezone": "Europe/Berlin"},
    {"id": "beat", "topic": "beats", "interval_ms": "1m"},
]


async def test_config_wins_for_its_ids_and_leaves_api_schedules_alone(
    store: Store, settings: Settings, registry: Registry
) -> None:
    await registry.create(Definition(id="mine", topic="t", interval_ms=5000))
    await registry.create(Definition(id="beat", topic="old", interval_ms=5000))  # api-made
    written, unchanged, deleted = await registry.reconcile(from_config(DECLARED))
    assert (written, unchanged, deleted) == (2, 0, 0)
    by_id = {s.id: s for s in await registry.list()}
    assert set(by_id) == {"mine", "beat", "report"}
    assert by_id["mine"].definition.source == Source.API
    assert by_id["beat"].definition.topic == "beats"
    assert by_id["beat"].definition.source == Source.CONFIG
    assert by_id["report"].next_fire_ms > 0


async def test_unchanged_keeps_state_changed_rewrites_removed_goes(
    store: Store, settings: Settings, registry: Registry, redis_client: redis.Redis
) -> None:
    await registry.reconcile(from_config(DECLARED))
    await registry.pause("report")  # an operator's pause survives a restart
    report_before = await registry.get("report")
    changed = [DECLARED[0], {**DECLARED[1], "interval_ms": "2m"}]
    assert await registry.reconcile(from_config(changed)) == (1, 1, 0)
    assert await registry.get("report") == report_before
    assert (await registry.get("beat")).definition.interval_ms == 120_000
    assert await registry.reconcile(from_config(changed[:1])) == (0, 1, 1)
    assert [s.id for s in await registry.list()] == ["report"]
    assert read_due(redis_client) == {}  # report is paused; beat is gone


async def test_the_scheduler_reconciles_at_start(
    store: Store, settings: Settings, registry: Registry
) -> None:
    declared = from_config(DECLARED[:1])
    leader = Leader(ScheduleStore(store), 5000)
    scheduler = Scheduler(store, leader, settings, declared)
    await scheduler.run_once()  # a follower reconciles too; it is idempotent
    assert [s.id for s in await registry.list()] == ["report"]
    assert (await registry.get("report")).definition == declared[0]
