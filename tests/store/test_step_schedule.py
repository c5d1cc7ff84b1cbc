"""step_schedule.lua: a WAITING step becomes SCHEDULED with its outbox record, once; a
finished run schedules nothing."""

from __future__ import annotations

import redis

from appliance.store import Store
from appliance.store.results import Refusal
from tests.store.helpers import snapshot
from tests.workflows.seed import read_run, seed_run, states, step_task


async def test_a_waiting_step_is_scheduled_with_its_task_and_the_run_runs(store: Store) -> None:
    wf = await seed_run(store)
    task = step_task("r1", "a", due_ms=1234)
    assert await wf.schedule_step("r1", "a", task) is None
    run = await read_run(wf)
    assert states(run) == ["RUNNING", "SCHEDULED", "WAITING", "WAITING"]
    a = run.step("a")
    assert (a.task_id, a.topic, a.payload, a.due_ms, a.max_retries) == (
        "wf:r1:a",
        "t",
        "payload-a",
        1234,
        2,
    )


async def test_scheduling_twice_is_refused_and_changes_nothing(
    store: Store, redis_client: redis.Redis
) -> None:
    wf = await seed_run(store)
    await wf.schedule_step("r1", "a", step_task("r1", "a"))
    before = snapshot(redis_client)
    assert await wf.schedule_step("r1", "a", step_task("r1", "a", 999)) is Refusal.STEP_MOVED
    assert await wf.schedule_step("nope", "a", step_task("nope", "a")) is Refusal.NOT_FOUND
    assert snapshot(redis_client) == before


async def test_a_canceled_run_schedules_nothing(store: Store) -> None:
    wf = await seed_run(store)
    await wf.cancel_run("r1", ["a", "b", "c"])
    assert await wf.schedule_step("r1", "a", step_task("r1", "a")) is Refusal.RUN_FINISHED
