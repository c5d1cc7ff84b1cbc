"""The hand-off (docs/adr/0010, "The hand-off"): ack.lua's message carries a step's end, and
the advancer records it and schedules what it makes ready without reading the run or its
tasks, deciding on the run as it last saw it; a run that moved meanwhile (canceled, another
step finished) is still moved on exactly once. Real Redis; the advancer is driven by hand."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from appliance.config import Settings
from appliance.store import Store
from appliance.store.workflows import WorkflowStore
from appliance.workflows.advancer import SAFETY_LOOK_MS, Advancer, Done
from appliance.workflows.definitions import Step, Workflow
from appliance.workflows.model import RunRecord, RunState, StepRecord, StepState, step_task_id
from tests.conftest import on_both

CHAIN = Workflow(
    "chain",
    (
        Step("a", "t", "first"),
        Step("b", "t", "after {{ steps.a.output }}", ("a",)),
        Step("c", "t", "last", ("b",)),
    ),
)


@pytest.fixture
async def engine(store: Store, settings: Settings) -> tuple[WorkflowStore, Advancer]:
    wf = WorkflowStore(store)
    version = await wf.put_workflow(CHAIN.name, CHAIN.to_json())
    assert await wf.start_run("r1", CHAIN.name, version, "{}", CHAIN.step_names)
    advancer = Advancer(store, settings)
    await advancer.look("r1")  # the first step scheduled: the run is known here
    return wf, advancer


async def acked(store: Store, result: str) -> Done:
    """The first step's task leased and acked; its end as ack.lua's message tells it."""
    (task,) = (await store.claim("t", 1, 30_000)).tasks
    await store.ack(task.id, task.lease_token, result)
    (record,) = await WorkflowStore(store).tasks([("t", task.id)])
    assert record is not None
    return Done(task.id.rsplit(":", 1)[1], int(record["finished"]), 1, result)


def no_reads(advancer: Advancer, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: Any) -> Any:
        raise AssertionError("the hand-off read the run")

    monkeypatch.setattr(advancer.workflows, "run_and_tasks", refuse)
    monkeypatch.setattr(advancer.workflows, "run_fields", refuse)


@on_both
async def test_a_hand_off_records_the_step_and_writes_the_next_task_without_a_read(
    store: Store, engine: tuple[WorkflowStore, Advancer], monkeypatch: pytest.MonkeyPatch
) -> None:
    wf, advancer = engine
    done = await acked(store, "out-a")
    no_reads(advancer, monkeypatch)
    await advancer.advance("r1", done.finished_ms, done)
    run = await wf.get_run("r1", CHAIN.step_names)
    assert [s.state.value for s in run.steps] == ["SUCCEEDED", "SCHEDULED", "WAITING"]
    assert (run.step("a").output, run.step("a").finished_ms) == ("out-a", done.finished_ms)
    (task,) = (await store.claim("t", 5, 30_000)).tasks
    assert (task.id, task.payload) == (step_task_id("r1", "b"), "after out-a")


@on_both
async def test_a_hand_off_on_a_run_canceled_meanwhile_starts_nothing(
    store: Store, engine: tuple[WorkflowStore, Advancer]
) -> None:
    wf, advancer = engine
    done = await acked(store, "late")
    await wf.cancel_run("r1", CHAIN.step_names)
    await advancer.advance("r1", done.finished_ms, done)
    run = await wf.get_run("r1", CHAIN.step_names)
    assert [run.state.value, *(s.state.value for s in run.steps)] == ["CANCELED"] * 4
    assert (await store.claim("t", 5, 30_000)).tasks == []


@on_both
async def test_a_hand_off_after_another_advancer_moved_the_run_writes_the_next_task_once(
    store: Store, settings: Settings, engine: tuple[WorkflowStore, Advancer]
) -> None:
    wf, advancer = engine
    done = await acked(store, "out-a")
    other = Advancer(store, settings)
    await other.look("r1")  # the long way: reads, records a, schedules b
    await advancer.advance("r1", done.finished_ms, done)  # decided on a run that moved
    await advancer.advance("r1", done.finished_ms, done)  # a repeated message
    run = await wf.get_run("r1", CHAIN.step_names)
    assert [s.state.value for s in run.steps] == ["SUCCEEDED", "SCHEDULED", "WAITING"]
    tasks = (await store.claim("t", 5, 30_000)).tasks
    assert [t.id for t in tasks] == [step_task_id("r1", "b")]


@on_both
async def test_an_end_missed_while_unsubscribed_is_caught_up_at_subscribing(
    store: Store, settings: Settings, engine: tuple[WorkflowStore, Advancer]
) -> None:
    """A run whose step's task is out is looked at ever later (its end publishes); an advancer
    subscribing (a start, a lost subscription: Wakeups wakes everyone) looks at every such run
    at once (catch_up), so an end published while nobody listened is not left to the late
    look."""
    wf, _ = engine
    await acked(store, "out-a")  # nobody listening: the message is lost
    now = await store.now_ms()
    await wf.look_again("r1", now + SAFETY_LOOK_MS - 1000)  # backed off
    fresh = Advancer(store, settings)
    assert not fresh.wakeups.missed.is_set()
    fresh.wakeups.wake()  # what Wakeups does once (re)subscribed
    assert fresh.wakeups.missed.is_set()
    await fresh.catch_up()
    run = await wf.get_run("r1", CHAIN.step_names)
    assert [s.state.value for s in run.steps] == ["SUCCEEDED", "SCHEDULED", "WAITING"]


def test_a_step_out_is_looked_at_ever_later_up_to_the_safety_look(
    engine: tuple[WorkflowStore, Advancer],
) -> None:
    _, advancer = engine
    now = 1_000_000

    def look(out_since: int, state: StepState = StepState.RUNNING) -> int:
        steps = (StepRecord("a", state, due_ms=out_since), StepRecord("b", StepState.WAITING))
        run = RunRecord("r1", "chain", 1, RunState.RUNNING, "{}", 0, 0, "", steps)
        return advancer._next_look(run, now, []) - now

    assert look(now) == advancer.poll_ms
    assert look(now - 4000) == 4000
    assert look(now - 4000, StepState.SCHEDULED) == 4000
    assert look(now - 3_600_000) == SAFETY_LOOK_MS


def test_a_step_out_is_first_looked_at_as_late_as_the_runs_steps_took_from_due_to_done(
    engine: tuple[WorkflowStore, Advancer],
) -> None:
    """Under a backlog a step waits in the queue as long as the one before it did: its run is
    first looked at that late (not at 1, 2, 4 s, each read finding the task still queued),
    within the poll interval and SAFETY_LOOK_MS."""
    _, advancer = engine
    now = 100_000_000

    def look(took_ms: int) -> int:
        a = StepRecord("a", StepState.SUCCEEDED, finished_ms=now, due_ms=now - took_ms)
        b = StepRecord("b", StepState.SCHEDULED, due_ms=now)
        run = RunRecord("r1", "chain", 1, RunState.RUNNING, "{}", 0, 0, "", (a, b))
        return advancer._next_look(run, now, []) - now

    assert look(3500) == 3500
    assert look(20) == advancer.poll_ms
    assert look(3_600_000) == SAFETY_LOOK_MS


def test_a_first_step_out_is_first_looked_at_as_late_as_its_topic_lately_waited(
    engine: tuple[WorkflowStore, Advancer],
) -> None:
    """A first step has no step before it in its run to tell the queue's wait: the wait this
    process saw lately on its topic (another run's step, due to finished, or due to now for
    one still queued at a look) stands for it; one seen longer than SAFETY_LOOK_MS ago tells
    nothing."""
    _, advancer = engine
    now = 10_000_000_000_000  # after what the fixture's run showed

    def look(run_id: str, *steps: StepRecord) -> int:
        run = RunRecord(run_id, "chain", 1, RunState.RUNNING, "{}", 0, 0, "", steps)
        return advancer._next_look(run, now, []) - now

    def seen(took_ms: int, ago_ms: int, topic: str = "t") -> int:
        end = now - ago_ms
        a = StepRecord("a", StepState.SUCCEEDED, "wf:o:a", finished_ms=end, due_ms=end - took_ms)
        return look("other", dataclasses.replace(a, topic=topic))

    first = StepRecord("a", StepState.SCHEDULED, "wf:r1:a", due_ms=now, topic="t")
    assert look("r1", first) == advancer.poll_ms
    seen(3500, SAFETY_LOOK_MS + 1)
    assert look("r1", first) == advancer.poll_ms  # too long ago
    seen(3500, 100)
    seen(9000, 50, topic="elsewhere")
    assert look("r1", first) == 3500
    seen(3_600_000, 10)
    assert look("r1", first) == SAFETY_LOOK_MS
    # a step still queued at a look: the topic has waited at least that long so far
    queued = StepRecord("a", StepState.SCHEDULED, "wf:q:a", due_ms=now - 4200, topic="q")
    assert look("q", queued) == 4200
    assert look("r2", dataclasses.replace(first, topic="q")) == 4200


async def test_a_pass_writes_the_next_looks_of_its_runs_in_one_round_trip(
    store: Store, settings: Settings, engine: tuple[WorkflowStore, Advancer], redis_client: Any
) -> None:
    """The poll loop's pass (and catch_up) writes the looks of the runs it advanced side by
    side in one ZADD, not one round trip per run; each run still gets its own next look."""
    wf, _ = engine
    for run_id in ("r2", "r3", "r4"):
        assert await wf.start_run(run_id, CHAIN.name, 1, "{}", CHAIN.step_names)
    fresh = Advancer(store, settings)

    def adds() -> int:
        return int(redis_client.info("commandstats").get("cmdstat_zadd", {}).get("calls", 0))

    before = adds()
    await fresh.run_once()
    assert adds() - before == 3 + 1  # each first step's task (enqueue.lua), then the looks
    now = await store.now_ms()
    assert (await wf.due_runs(now, 10))[0] == []  # none left due: each got its next look
    later, _ = await wf.due_runs(now + 2 * fresh.poll_ms, 10)
    assert sorted(later) == ["r1", "r2", "r3", "r4"]


@on_both
async def test_a_hand_off_is_one_round_trip_on_a_single_redis_and_two_on_a_cluster(
    store: Store, engine: tuple[WorkflowStore, Advancer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every Redis call of the store goes through run, run_many, read or call: counted there,
    a hand-off (the step's end from its message, the run as last seen) is one round trip on a
    single Redis (step_hand_off.lua: finish, schedule and the next task written in one script)
    and two on a cluster (finish and schedule in the run's slot, then the task in the topic's)."""
    _, advancer = engine
    done = await acked(store, "out-a")
    calls: list[str] = []
    for name in ("run", "run_many", "read", "call"):
        real = getattr(store, name)

        def counted(*args: Any, _real: Any = real, _name: str = name) -> Any:
            calls.append(f"{_name} {args[0]}")
            return _real(*args)

        monkeypatch.setattr(store, name, counted)
    await advancer.advance("r1", done.finished_ms, done)
    assert len(calls) == (2 if store.keys.sharded else 1), calls
    (task,) = (await store.claim("t", 5, 30_000)).tasks
    assert (task.id, task.payload) == (step_task_id("r1", "b"), "after out-a")
