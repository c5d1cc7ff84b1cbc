"""step_schedule.lua: a WAITING step becomes SCHEDULED with its outbox record, once; a
finished run schedules nothing."""

from __future__ import annotations

import redis

from appliance.store import Store
from appliance.store.results import Refusal
from appliance.store.workflows import Finish
from tests.conftest import on_both
from tests.store.helpers import snapshot
from tests.workflows.seed import STEPS, read_run, seed_run, seed_scheduled, states, step_task

pytestmark = on_both  # every test here also on the Redis Cluster (ADR 0010)


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


async def test_a_success_and_the_steps_it_makes_ready_in_one_round_trip(store: Store) -> None:
    """The hand-off's pipeline (WorkflowStore.finish_and_schedule): step_finish, then
    step_schedule per ready step, then the run read; each script checks its from-state."""
    wf = await seed_scheduled(store, "r1", "a")
    finish = Finish("a", True, "out-a", 1000, 1, STEPS)
    ready = [("b", step_task("r1", "b", 1000)), ("c", step_task("r1", "c", 1500))]
    recorded, fields = await wf.finish_and_schedule("r1", finish, ready)
    assert recorded == ("RUNNING", [])
    assert (fields["a:state"], fields["a:out"], fields["b:state"], fields["c:due"]) == (
        "SUCCEEDED",
        "out-a",
        "SCHEDULED",
        "1500",
    )
    # again (a second advancer, a retried call): nothing recorded, nothing scheduled twice
    again, fields = await wf.finish_and_schedule("r1", finish, [("b", step_task("r1", "b", 9))])
    assert again is None and (fields["b:state"], fields["b:due"]) == ("SCHEDULED", "1000")


async def test_a_run_canceled_before_the_hand_off_schedules_nothing(store: Store) -> None:
    wf = await seed_scheduled(store, "r1", "a")
    await wf.cancel_run("r1", STEPS)
    finish = Finish("a", True, "late", 1000, 1, STEPS)
    _, fields = await wf.finish_and_schedule("r1", finish, [("b", step_task("r1", "b"))])
    assert fields["state"] == "CANCELED" and fields["b:state"] == "CANCELED"


async def test_a_step_is_scheduled_only_while_the_run_is_as_the_caller_saw_it(
    store: Store, redis_client: redis.Redis
) -> None:
    """The hand-off decides on the run as it last saw it: with expected states, a run whose
    steps moved meanwhile is refused (RUN_MOVED) and nothing changes; SCHEDULED stands for
    RUNNING (a leased task decides nothing)."""
    wf = await seed_scheduled(store, "r1", "a")
    await wf.step_running("r1", "a", 1)
    before = snapshot(redis_client)
    moved = [("a", "SUCCEEDED"), ("b", "WAITING"), ("c", "WAITING")]
    assert await wf.schedule_step("r1", "b", step_task("r1", "b"), moved) is Refusal.RUN_MOVED
    assert snapshot(redis_client) == before
    seen = [("a", "SCHEDULED"), ("b", "WAITING"), ("c", "WAITING")]
    assert await wf.schedule_step("r1", "b", step_task("r1", "b"), seen) is None
    assert states(await read_run(wf)) == ["RUNNING", "RUNNING", "SCHEDULED", "WAITING"]


async def test_the_hand_off_schedules_nothing_on_a_run_that_moved(store: Store) -> None:
    """finish_and_schedule with the states decided on: the success is recorded, the step its
    decision made ready is not scheduled when another step moved meanwhile."""
    wf = await seed_scheduled(store, "r1", "a", "c")
    await wf.finish_step("r1", "c", True, "out-c", 0, 1, STEPS)  # moved since it was seen
    finish = Finish("a", True, "out-a", 1000, 1, STEPS)
    seen = [("a", "SUCCEEDED"), ("b", "WAITING"), ("c", "SCHEDULED")]
    recorded, fields = await wf.finish_and_schedule(
        "r1", finish, [("b", step_task("r1", "b"))], seen
    )
    assert recorded == ("RUNNING", []) and fields["a:state"] == "SUCCEEDED"
    assert fields["b:state"] == "WAITING"


async def test_a_hand_off_schedules_every_step_a_success_makes_ready(store: Store) -> None:
    """A fan-out: each step_schedule of the pipeline expects the ready steps before it
    SCHEDULED, so the second is not refused as a moved run (it went the long way)."""
    wf = await seed_scheduled(store, "r1", "a")
    seen = [("a", "SUCCEEDED"), ("b", "WAITING"), ("c", "WAITING")]
    ready = [("b", step_task("r1", "b")), ("c", step_task("r1", "c"))]
    _, fields = await wf.finish_and_schedule("r1", Finish("a", True, "o", 1, 1, STEPS), ready, seen)
    assert (fields["b:state"], fields["c:state"]) == ("SCHEDULED", "SCHEDULED")
