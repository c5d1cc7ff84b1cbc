"""run_start.lua: a run is created PENDING with every step WAITING, or RUNNING with its first
steps SCHEDULED and their outbox records; once per run id."""

from __future__ import annotations

import redis

from appliance.store import Store
from appliance.store.workflows import WorkflowStore
from tests.conftest import on_both
from tests.store.helpers import snapshot
from tests.workflows.seed import STEPS, read_run, seed_run, states, step_task

pytestmark = on_both  # every test here also on the Redis Cluster (ADR 0010)


async def test_a_new_run_is_pending_with_every_step_waiting(store: Store) -> None:
    wf = await seed_run(store)
    run = await read_run(wf)
    assert states(run) == ["PENDING", "WAITING", "WAITING", "WAITING"]
    assert (run.workflow, run.version, run.input) == ("w", 1, '{"x": 1}')
    assert run.created_ms > 0 and await wf.run_ids(0, 10) == ["r1"]


async def test_the_same_run_id_again_changes_nothing(
    store: Store, redis_client: redis.Redis
) -> None:
    wf = await seed_run(store)
    before = snapshot(redis_client)
    assert not await wf.start_run("r1", "other", 2, "{}", STEPS)
    after = snapshot(redis_client)
    due = store.keys.workflows.due.encode()
    assert {k: v for k, v in after.items() if k != due} == {
        k: v for k, v in before.items() if k != due
    }


async def test_a_run_started_for_a_later_time_records_that_time(store: Store) -> None:
    """A schedule's tick starts its run ahead (the lookahead): its steps without parents are
    due at the tick, which run_start keeps as the run's start."""
    wf = WorkflowStore(store)
    later = await store.now_ms() + 60_000
    assert await wf.start_run("r2", "w", 1, "", STEPS, start_ms=later)
    assert (await read_run(wf, "r2")).created_ms == later


async def test_first_steps_scheduled_with_the_run_carry_their_outbox_records(
    store: Store, redis_client: redis.Redis
) -> None:
    wf = WorkflowStore(store)
    now = await store.now_ms()
    first = [("a", step_task("r3", "a", due_ms=now)), ("b", step_task("r3", "b", due_ms=now + 5))]
    assert await wf.start_run("r3", "w", 1, "{}", STEPS, now, first, now, now + 1000)
    run = await read_run(wf, "r3")
    assert states(run) == ["RUNNING", "SCHEDULED", "SCHEDULED", "WAITING"]
    a, b = run.step("a"), run.step("b")
    assert (a.task_id, a.topic, a.payload, a.due_ms, a.max_retries) == (
        "wf:r3:a",
        "t",
        "payload-a",
        now,
        2,
    )
    assert (b.task_id, b.due_ms) == ("wf:r3:b", now + 5)
    assert run.created_ms == now
    # its first look is the safety net for a crash before the tasks are written
    assert redis_client.zscore(store.keys.workflows.due, "r3") == now + 1000


async def test_the_same_run_id_with_first_steps_changes_nothing_and_keeps_an_earlier_look(
    store: Store, redis_client: redis.Redis
) -> None:
    wf = await seed_run(store)  # its look: now
    before = snapshot(redis_client)
    now = await store.now_ms()
    first = [("a", step_task("r1", "a", due_ms=now))]
    assert not await wf.start_run("r1", "w", 1, "{}", STEPS, now, first, now, now + 60_000)
    assert snapshot(redis_client) == before
