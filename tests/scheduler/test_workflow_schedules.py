"""Schedules that start workflow runs (issue 16): created through gRPC and the config, each tick
starts one run `sched.<id>.<tick ms>` whose first steps are due at the tick, a re-fired tick
starts nothing more, and every bad definition is refused changing nothing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import redis

from appliance.config import Settings
from appliance.errors import ConfigError
from appliance.proto import queue_pb2 as pb
from appliance.proto import queue_pb2_grpc as pb_grpc
from appliance.scheduler.definitions import from_config
from appliance.scheduler.leader import Leader
from appliance.scheduler.service import Scheduler
from appliance.store import Store
from appliance.store.schedules import ScheduleStore
from tests.scheduler.helpers import KEYS
from tests.store.helpers import now_ms, read_pending, snapshot
from tests.workflows.helpers import step, stub_with, until_run

CHAIN = pb.Workflow(
    name="report",
    steps=[step("gather", "reports", "{{ input.team }}"), step("send", "mail", "x", "gather")],
)


def starting(**changes: Any) -> pb.Schedule:
    fields: dict[str, Any] = {
        "id": "nightly",
        "workflow": "report",
        "payload": '{"team": "ops"}',
        "interval_ms": 1000,
    }
    return pb.Schedule(**{**fields, **changes})


@pytest.fixture
async def wf(server: Any) -> AsyncIterator[Any]:
    async with stub_with(server, CHAIN) as stub:
        yield stub


async def leading(store: Store, settings: Settings) -> Scheduler:
    leader = Leader(ScheduleStore(store), 30_000)
    await leader.run_once()
    return Scheduler(store, leader, settings.replace(scheduler_lookahead_ms=300))


async def test_a_schedule_starts_one_run_per_tick_due_at_the_tick(
    schedule_stub: pb_grpc.ScheduleServiceStub,
    wf: Any,
    store: Store,
    settings: Settings,
    redis_client: redis.Redis,
) -> None:
    # every 2 s: a run_once() late by up to 1.7 s (a loaded machine) still fires one tick only
    made = await schedule_stub.CreateSchedule(
        pb.CreateScheduleRequest(schedule=starting(interval_ms=2000))
    )
    assert (made.workflow, made.topic, made.payload) == ("report", "", '{"team": "ops"}')
    got = await schedule_stub.GetSchedule(pb.ScheduleIdRequest(id="nightly"))
    assert got.workflow == "report"
    scheduler = await leading(store, settings)
    tick = made.next_fire_time_ms
    await asyncio.sleep(max(tick - 300 - now_ms(redis_client), 0) / 1000)  # into the lookahead
    await scheduler.run_once()
    run_id = f"sched.nightly.{tick}"
    run = await until_run(wf, run_id, lambda r: r.steps[0].state == pb.STEP_SCHEDULED)
    assert (run.workflow, run.input, run.created_ms) == ("report", '{"team": "ops"}', tick)
    assert read_pending(redis_client, "reports") == {f"wf:{run_id}:gather": tick}  # not early
    # the same tick fired again (a leader that died before settling its outbox): no new run
    run_key = store.keys.run(run_id)
    before = redis_client.hgetall(run_key)
    body = {"wf": "report", "input": '{"team": "ops"}', "due": tick}
    redis_client.hset(KEYS.outbox, run_id, json.dumps(body))
    await scheduler.run_once()
    assert not redis_client.hgetall(KEYS.outbox) and redis_client.hgetall(run_key) == before
    listed = await wf.ListRuns(pb.ListRunsRequest(workflow="report"))
    assert [r.id for r in listed.runs] == [run_id]
    assert scheduler.started == 1


async def test_a_tick_of_a_deleted_workflow_starts_nothing_and_is_settled(
    schedule_stub: pb_grpc.ScheduleServiceStub,
    wf: Any,
    store: Store,
    settings: Settings,
    redis_client: redis.Redis,
) -> None:
    await schedule_stub.CreateSchedule(pb.CreateScheduleRequest(schedule=starting()))
    await wf.DeleteWorkflow(pb.DeleteWorkflowRequest(name="report"))
    body = {"wf": "report", "input": "", "due": 5000}
    redis_client.hset(KEYS.outbox, "sched.nightly.5000", json.dumps(body))
    scheduler = await leading(store, settings)
    await scheduler._enqueue({"sched.nightly.5000": json.dumps(body)})
    assert scheduler.started == 0 and not redis_client.hgetall(KEYS.outbox)
    assert not (await wf.ListRuns(pb.ListRunsRequest())).runs


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"topic": "t"}, "topic/workflow: set one of them, not both"),
        ({"workflow": "bad name"}, "schedule.workflow 'bad name' must be"),
        ({"max_retries": 2}, "schedule.max_retries: a workflow's steps set their own retries"),
        ({"id": "a/b"}, "needs an id of 1-44 characters of [A-Za-z0-9_.-]"),
        ({"id": "x" * 45}, "needs an id of 1-44 characters"),
    ],
)
async def test_a_bad_workflow_schedule_is_refused_changing_nothing(
    schedule_stub: pb_grpc.ScheduleServiceStub,
    redis_client: redis.Redis,
    changes: dict[str, Any],
    match: str,
) -> None:
    before = snapshot(redis_client)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await schedule_stub.CreateSchedule(pb.CreateScheduleRequest(schedule=starting(**changes)))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert match in (info.value.details() or "")
    assert snapshot(redis_client) == before


def test_the_config_names_a_workflow_and_its_input() -> None:
    (d,) = from_config(
        [{"id": "daily", "workflow": "report", "input": {"team": "ops"}, "cron": "0 6 * * *"}]
    )
    assert (d.workflow, d.topic, d.payload) == ("report", "", '{"team":"ops"}')
    assert d.run_id(60_000) == "sched.daily.60000"
    bad = [
        ({"topic": "t", "input": "x", "cron": "* * * * *"}, "schedules[0].input: only a sched"),
        ({"workflow": "w", "input": "x", "payload": "y", "cron": "* * * * *"}, "input/payload"),
        ({"workflow": "w", "topic": "t", "cron": "* * * * *"}, "topic/workflow"),
    ]
    for item, match in bad:
        with pytest.raises(ConfigError, match=match.replace("[", r"\[")):
            from_config([{"id": "daily", **item}])
