"""A run's first steps scheduled by StartRun itself (docs/adr/0010, "The run's start without a
read"): run_start records them with the run, the server writes their tasks, and no advancer
reads the new run; a crash before the tasks are written is caught by the run's first look; a
first step that would end without a task takes the long way. Real Redis; the advancer is
driven by hand."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from appliance.config import Settings
from appliance.errors import AlreadyExists
from appliance.store import Store
from appliance.store.workflows import WorkflowStore
from appliance.workflows import runs
from appliance.workflows.advancer import Advancer, Done
from appliance.workflows.definitions import Step, Workflow
from appliance.workflows.model import step_task_id
from tests.conftest import on_both
from tests.store.helpers import KEYS
from tests.workflows.test_exactly_once import tasks_in
from tests.workflows.test_hand_off import no_reads

FLOW = Workflow(
    "flow",
    (
        Step("a", "t", '{"to": "{{ input.email }}"}'),
        Step("w", "t", "later", delay_ms=60_000),
        Step("b", "t", "after {{ steps.a.output }}", ("a",)),
    ),
)
SKIPPING = Workflow(
    "skipping",
    (Step("a", "t", "first", when="input.go"), Step("b", "t", "second", ("a",))),
)
INPUT = '{"email": "a@b.c", "go": false}'


@pytest.fixture
async def engine(store: Store, settings: Settings) -> tuple[WorkflowStore, Advancer]:
    wf = WorkflowStore(store)
    for flow in (FLOW, SKIPPING):
        await wf.put_workflow(flow.name, flow.to_json())
    return wf, Advancer(store, settings)


async def start(
    engine: tuple[WorkflowStore, Advancer], name: str = "flow", run_id: str = "r1"
) -> runs.Started:
    """What StartRun does."""
    wf, advancer = engine
    started = await runs.start(
        wf,
        name,
        run_id,
        INPUT,
        retries=3,
        definition=advancer.definition,
        look=advancer.first_look,
    )
    if started.run is not None and started.workflow is not None:
        advancer.started(started.run, started.workflow)
    return started


@on_both
async def test_first_steps_are_scheduled_and_written_by_the_start_and_handed_off_unread(
    store: Store,
    engine: tuple[WorkflowStore, Advancer],
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wf, advancer = engine
    before = await store.now_ms()
    started = await start(engine)
    assert started.created and started.version == 1
    run = await wf.get_run("r1", FLOW.step_names)
    assert [run.state, *(s.state for s in run.steps)] == [
        "RUNNING",
        "SCHEDULED",
        "SCHEDULED",
        "WAITING",
    ]
    assert run.step("w").due_ms == run.created_ms + 60_000 and run.created_ms >= before
    assert tasks_in(redis_client, "t") == 2  # a's, and w's in its delay
    (task,) = (await store.claim("t", 5, 30_000)).tasks
    assert (task.id, task.payload) == (step_task_id("r1", "a"), '{"to": "a@b.c"}')
    look = redis_client.zscore(KEYS.workflows.due, "r1")
    assert look == run.step("w").due_ms  # a step in its delay: looked at when it is due
    no_reads(advancer, monkeypatch)  # the start left the run known: no read at its first end
    await store.ack(task.id, task.lease_token, "out-a")
    (record,) = await wf.tasks([("t", task.id)])
    assert record is not None
    await advancer.advance(
        "r1", int(record["finished"]), Done("a", int(record["finished"]), 1, "out-a")
    )
    run = await wf.get_run("r1", FLOW.step_names)
    assert [s.state for s in run.steps] == ["SUCCEEDED", "SCHEDULED", "SCHEDULED"]
    (task,) = (await store.claim("t", 5, 30_000)).tasks
    assert (task.id, task.payload) == (step_task_id("r1", "b"), "after out-a")


@on_both
async def test_a_crash_before_the_first_tasks_are_written_is_caught_by_the_first_look(
    store: Store,
    engine: tuple[WorkflowStore, Advancer],
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wf, advancer = engine

    async def crash(*_: Any) -> None:
        raise ConnectionError("the server died here")

    monkeypatch.setattr(wf, "write_tasks", crash)
    with pytest.raises(ConnectionError):
        await start(engine)
    monkeypatch.undo()
    assert tasks_in(redis_client, "t") == 0
    look = redis_client.zscore(KEYS.workflows.due, "r1")
    assert look is not None
    fresh = Advancer(store, advancer.settings)  # another process, at the run's first look
    await fresh.advance("r1", int(look))
    await fresh.advance("r1", int(look))
    assert tasks_in(redis_client, "t") == 2  # each once
    (task,) = (await store.claim("t", 5, 30_000)).tasks
    assert (task.id, task.payload) == (step_task_id("r1", "a"), '{"to": "a@b.c"}')


@on_both
async def test_a_first_step_ending_without_a_task_takes_the_long_way(
    store: Store, engine: tuple[WorkflowStore, Advancer], redis_client: redis.Redis
) -> None:
    wf, advancer = engine
    started = await start(engine, "skipping")
    assert started.created and started.run is None
    run = await wf.get_run("r1", SKIPPING.step_names)
    assert [run.state, *(s.state for s in run.steps)] == ["PENDING", "WAITING", "WAITING"]
    assert redis_client.zscore(KEYS.workflows.due, "r1") is not None  # looked at at once
    await advancer.look("r1")  # run_start's message
    run = await wf.get_run("r1", SKIPPING.step_names)
    assert [s.state for s in run.steps] == ["SKIPPED", "SKIPPED"]
    assert tasks_in(redis_client, "t") == 0


@on_both
async def test_a_start_repeated_makes_nothing_twice(
    store: Store, engine: tuple[WorkflowStore, Advancer], redis_client: redis.Redis
) -> None:
    wf, _ = engine
    assert (await start(engine)).created
    made = await wf.run_fields("r1")
    again = await start(engine)
    assert (again.created, again.version, again.run) == (False, 1, None)
    assert await wf.run_fields("r1") == made
    assert tasks_in(redis_client, "t") == 2
    with pytest.raises(AlreadyExists):
        await start(engine, "skipping")
