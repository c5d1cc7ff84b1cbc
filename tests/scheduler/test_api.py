"""ScheduleService through the real in-process server and the generated stub: CRUD, pause/resume,
status, and every refusal with its status code (changing nothing)."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
import redis

from appliance.proto import queue_pb2 as pb
from appliance.proto import queue_pb2_grpc as pb_grpc
from appliance.scheduler.definitions import from_config
from appliance.scheduler.registry import Registry
from appliance.store import Store
from appliance.store.schedules import ScheduleStore
from tests.store.helpers import now_ms, snapshot

Stub = pb_grpc.ScheduleServiceStub


def every_second(**changes: Any) -> pb.Schedule:
    fields: dict[str, Any] = {"id": "s1", "topic": "ticks", "payload": "p", "interval_ms": 1000}
    return pb.Schedule(**{**fields, **changes})


async def expect(code: grpc.StatusCode, call: Any, match: str = "") -> str:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    assert info.value.code() == code, info.value.details()
    details = info.value.details() or ""
    assert match in details
    return details


async def test_create_get_list_update_delete(
    schedule_stub: Stub, redis_client: redis.Redis
) -> None:
    now = now_ms(redis_client)
    created = await schedule_stub.CreateSchedule(pb.CreateScheduleRequest(schedule=every_second()))
    assert created.source == "api" and created.misfire_policy == pb.SKIP
    assert now <= created.next_fire_time_ms <= now + 2000 and created.next_fire_time_ms % 1000 == 0
    assert created.last_fire_time_ms == 0 and not created.HasField("max_retries")
    cron = pb.Schedule(
        id="nightly",
        topic="reports",
        cron="0 2 * * *",
        timezone="Europe/Berlin",
        max_retries=0,
        misfire_policy=pb.RUN_ONCE,
        jitter_ms=500,
    )
    nightly = await schedule_stub.CreateSchedule(pb.CreateScheduleRequest(schedule=cron))
    assert nightly.HasField("max_retries") and nightly.max_retries == 0
    assert nightly.misfire_policy == pb.RUN_ONCE and nightly.next_fire_time_ms > now
    got = await schedule_stub.GetSchedule(pb.ScheduleIdRequest(id="nightly"))
    assert got == nightly
    listed = await schedule_stub.ListSchedules(pb.ListSchedulesRequest())
    assert [s.id for s in listed.schedules] == ["nightly", "s1"]
    only = await schedule_stub.ListSchedules(pb.ListSchedulesRequest(topic="ticks"))
    assert [s.id for s in only.schedules] == ["s1"]
    changed = every_second(payload="new", interval_ms=60_000)
    updated = await schedule_stub.UpdateSchedule(pb.UpdateScheduleRequest(schedule=changed))
    assert updated.payload == "new" and updated.next_fire_time_ms % 60_000 == 0
    assert (await schedule_stub.DeleteSchedule(pb.ScheduleIdRequest(id="s1"))).success
    await expect(
        grpc.StatusCode.NOT_FOUND, schedule_stub.GetSchedule(pb.ScheduleIdRequest(id="s1"))
    )


async def test_pause_and_resume(schedule_stub: Stub) -> None:
    await schedule_stub.CreateSchedule(pb.CreateScheduleRequest(schedule=every_second()))
    paused = await schedule_stub.PauseSchedule(pb.ScheduleIdRequest(id="s1"))
    assert paused.paused
    resumed = await schedule_stub.ResumeSchedule(pb.ScheduleIdRequest(id="s1"))
    assert not resumed.paused and resumed.next_fire_time_ms >= paused.next_fire_time_ms
    created_paused = every_second(id="s2", paused=True)
    s2 = await schedule_stub.CreateSchedule(pb.CreateScheduleRequest(schedule=created_paused))
    assert s2.paused


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"cron": "61 * * * *", "interval_ms": 0}, "schedule.cron"),
        ({"cron": "every day", "interval_ms": 0}, "schedule.cron"),
        ({"cron": "0 2 * * *", "interval_ms": 0, "timezone": "Europe/Nowhere"}, "timezone"),
        ({"cron": "0 2 * * *"}, "exactly one"),
        ({"interval_ms": 0}, "exactly one"),
        ({"topic": ""}, "schedule.topic is empty"),
        ({"topic": "no spaces"}, "schedule.topic"),
        ({"id": ""}, "schedule.id is empty"),
        ({"id": "bad id!"}, "schedule.id"),
        ({"interval_ms": 10}, "interval_ms"),
        ({"jitter_ms": -1}, "jitter_ms"),
        ({"start_ms": 5000, "end_ms": 4000}, "end_ms"),
        ({"misfire_policy": 7}, "misfire_policy"),
    ],
)
async def test_bad_definitions_are_invalid_and_change_nothing(
    schedule_stub: Stub, redis_client: redis.Redis, changes: dict[str, Any], field: str
) -> None:
    before = snapshot(redis_client)
    bad = every_second(**changes)
    await expect(
        grpc.StatusCode.INVALID_ARGUMENT,
        schedule_stub.CreateSchedule(pb.CreateScheduleRequest(schedule=bad)),
        field,
    )
    await expect(
        grpc.StatusCode.INVALID_ARGUMENT,
        schedule_stub.UpdateSchedule(pb.UpdateScheduleRequest(schedule=bad)),
        field,
    )
    assert snapshot(redis_client) == before


async def test_refusals(schedule_stub: Stub, redis_client: redis.Redis) -> None:
    await expect(
        grpc.StatusCode.INVALID_ARGUMENT,
        schedule_stub.CreateSchedule(pb.CreateScheduleRequest()),
        "schedule is missing",
    )
    await schedule_stub.CreateSchedule(pb.CreateScheduleRequest(schedule=every_second()))
    before = snapshot(redis_client)
    await expect(
        grpc.StatusCode.ALREADY_EXISTS,
        schedule_stub.CreateSchedule(pb.CreateScheduleRequest(schedule=every_second())),
        "'s1' exists already",
    )
    missing = pb.ScheduleIdRequest(id="nope")
    for call in (
        schedule_stub.GetSchedule(missing),
        schedule_stub.PauseSchedule(missing),
        schedule_stub.ResumeSchedule(missing),
        schedule_stub.DeleteSchedule(missing),
        schedule_stub.UpdateSchedule(pb.UpdateScheduleRequest(schedule=every_second(id="nope"))),
    ):
        await expect(grpc.StatusCode.NOT_FOUND, call, "no schedule with id 'nope'")
    await expect(
        grpc.StatusCode.INVALID_ARGUMENT, schedule_stub.GetSchedule(pb.ScheduleIdRequest(id=""))
    )
    await expect(
        grpc.StatusCode.INVALID_ARGUMENT,
        schedule_stub.ListSchedules(pb.ListSchedulesRequest(topic="bad topic")),
    )
    assert snapshot(redis_client) == before


async def test_config_schedules_are_changed_in_the_config_only(
    schedule_stub: Stub, store: Store, registry: Registry
) -> None:
    await registry.reconcile(from_config([{"id": "cfg", "topic": "t", "interval_ms": "1m"}]))
    got = await schedule_stub.GetSchedule(pb.ScheduleIdRequest(id="cfg"))
    assert got.source == "config"
    update = pb.UpdateScheduleRequest(schedule=every_second(id="cfg"))
    await expect(
        grpc.StatusCode.FAILED_PRECONDITION, schedule_stub.UpdateSchedule(update), "config"
    )
    await expect(
        grpc.StatusCode.FAILED_PRECONDITION,
        schedule_stub.DeleteSchedule(pb.ScheduleIdRequest(id="cfg")),
        "config file",
    )
    assert (await schedule_stub.PauseSchedule(pb.ScheduleIdRequest(id="cfg"))).paused


async def test_scheduler_status(schedule_stub: Stub, store: Store) -> None:
    empty = await schedule_stub.GetSchedulerStatus(pb.GetSchedulerStatusRequest())
    assert empty == pb.SchedulerStatus()
    lease = await ScheduleStore(store).acquire("host/1/abc", 5000)
    status = await schedule_stub.GetSchedulerStatus(pb.GetSchedulerStatusRequest())
    assert status.leader_id == "host/1/abc" and status.fencing_token == lease.token
    assert status.lease_expires_ms == lease.expires_ms and status.ticks_fired == 0
