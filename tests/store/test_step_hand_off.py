"""step_hand_off.lua (single Redis): a step's success recorded, the steps it makes ready
scheduled and their tasks written, in one script; a task is written only for a step scheduled
by the call, so a refused hand-off (the run moved, or canceled) and a repeat write nothing."""

from __future__ import annotations

import dataclasses

import pytest
import redis

from appliance.store import Store
from appliance.store.workflows import Finish, WorkflowStore
from tests.conftest import on_both
from tests.store.helpers import read_pending, read_state, snapshot
from tests.workflows.seed import STEPS, read_run, seed_scheduled, states, step_task

SUCCESS = Finish("a", True, "out-a", 1000, 1, STEPS)
SEEN = [("a", "SUCCEEDED"), ("b", "WAITING"), ("c", "WAITING")]  # as decided, after a's success


async def test_a_success_schedules_the_ready_steps_and_writes_their_tasks_once(
    store: Store, redis_client: redis.Redis
) -> None:
    wf = await seed_scheduled(store, "r1", "a")
    ready = [("b", step_task("r1", "b", 1500)), ("c", step_task("r1", "c", 1700, topic="u"))]
    recorded, fields = await wf.hand_off("r1", SUCCESS, ready, SEEN)
    assert recorded == ("RUNNING", [])
    assert states(await read_run(wf)) == ["RUNNING", "SUCCEEDED", "SCHEDULED", "SCHEDULED"]
    assert (fields["a:out"], fields["a:end"], fields["b:due"]) == ("out-a", "1000", "1500")
    assert read_pending(redis_client, "t") == {"wf:r1:b": 1500}
    assert read_pending(redis_client, "u") == {"wf:r1:c": 1700}
    (task,) = (await store.claim("u", 5, 30_000)).tasks
    assert (task.id, task.payload, task.max_retries) == ("wf:r1:c", "payload-c", 2)
    # again (a lost reply retried, a second advancer): nothing recorded, scheduled or written
    before = snapshot(redis_client)
    again, fields = await wf.hand_off("r1", SUCCESS, ready, SEEN)
    assert again is None and fields["b:state"] == "SCHEDULED"
    assert snapshot(redis_client) == before


async def test_the_last_success_finishes_the_run_and_writes_nothing(
    store: Store, redis_client: redis.Redis
) -> None:
    wf = await seed_scheduled(store, "r1", "a", "b", "c")
    for step in ("a", "b"):
        await wf.finish_step("r1", step, True, f"out-{step}", 0, 1, STEPS)
    recorded, fields = await wf.hand_off("r1", Finish("c", True, "out-c", 0, 1, STEPS), [])
    assert recorded == ("SUCCEEDED", []) and fields["state"] == "SUCCEEDED"
    assert 0 < redis_client.pttl(store.keys.run("r1")) <= store.settings.retention_ms


async def test_a_run_that_moved_schedules_and_writes_nothing(
    store: Store, redis_client: redis.Redis
) -> None:
    """Decided on a run as last seen: a step that moved meanwhile (c finished) refuses the
    ready step (RUN_MOVED); the success itself is recorded (the Ack made it final)."""
    wf = await seed_scheduled(store, "r1", "a", "c")
    await wf.finish_step("r1", "c", True, "out-c", 0, 1, STEPS)
    seen = [("a", "SUCCEEDED"), ("b", "WAITING"), ("c", "SCHEDULED")]
    recorded, fields = await wf.hand_off("r1", SUCCESS, [("b", step_task("r1", "b"))], seen)
    assert recorded == ("RUNNING", []) and fields["a:state"] == "SUCCEEDED"
    assert fields["b:state"] == "WAITING"
    assert read_state(redis_client, "t", "wf:r1:b") is None


async def test_a_canceled_run_writes_nothing(store: Store, redis_client: redis.Redis) -> None:
    wf = await seed_scheduled(store, "r1", "a")
    await wf.cancel_run("r1", STEPS)
    await store.admit_topics(["t"])  # the topic known (this process admits it once)
    before = snapshot(redis_client)
    recorded, fields = await wf.hand_off("r1", SUCCESS, [("b", step_task("r1", "b"))], SEEN)
    assert recorded is None and (fields["state"], fields["b:state"]) == ("CANCELED", "CANCELED")
    assert snapshot(redis_client) == before
    assert await wf.hand_off("gone", SUCCESS, [("b", step_task("gone", "b"))], SEEN) == (None, {})
    assert snapshot(redis_client) == before


async def test_a_step_without_a_task_is_scheduled_and_no_task_written(
    store: Store, redis_client: redis.Redis
) -> None:
    """A signal step (task id ''): its outbox record only; its topic's keys are not passed."""
    wf = await seed_scheduled(store, "r1", "a")
    before = read_pending(redis_client, "t")
    signal = dataclasses.replace(step_task("r1", "b", 5000, topic=""), id="")
    recorded, fields = await wf.hand_off("r1", SUCCESS, [("b", signal)], SEEN)
    assert recorded == ("RUNNING", []) and fields["b:state"] == "SCHEDULED"
    assert (fields["b:task"], fields["b:due"]) == ("", "5000")
    assert read_pending(redis_client, "t") == before


async def test_it_runs_again_after_a_redis_restart_dropped_the_scripts(
    store: Store, redis_client: redis.Redis
) -> None:
    """Scripts are not persisted: the hand-off's pipeline reloads them on NOSCRIPT and runs."""
    wf = await seed_scheduled(store, "r1", "a")
    redis_client.script_flush()
    recorded, _ = await wf.hand_off("r1", SUCCESS, [("b", step_task("r1", "b", 1500))], SEEN)
    assert recorded == ("RUNNING", [])
    assert read_pending(redis_client, "t") == {"wf:r1:b": 1500}


@on_both
async def test_only_a_single_redis_takes_the_one_script_hand_off(store: Store) -> None:
    """No script may touch two cluster slots (the cluster client refuses it): on a Redis
    Cluster the advancer keeps step_finish + step_schedule, then enqueue
    (tests/workflows/test_hand_off.py counts the round trips of both)."""
    one_node = WorkflowStore(store).one_node
    assert one_node is (not store.keys.sharded)
    if not one_node:
        with pytest.raises(Exception, match="same key slot"):
            await (await seed_scheduled(store, "r1", "a")).hand_off(
                "r1", SUCCESS, [("b", step_task("r1", "b"))], SEEN
            )
