"""step_finish.lua: a step's outcome is recorded once; the last success finishes the run; a
failure fails it (waiting steps SKIPPED, scheduled ones CANCELED, their tasks returned)."""

from __future__ import annotations

import redis

from appliance.store import Store
from tests.conftest import on_both
from tests.store.helpers import snapshot
from tests.workflows.seed import STEPS, read_run, seed_scheduled, states, step_task

pytestmark = on_both  # every test here also on the Redis Cluster (ADR 0010)


async def test_the_last_success_finishes_the_run_and_it_expires_after_retention(
    store: Store, redis_client: redis.Redis
) -> None:
    wf = await seed_scheduled(store, "r1", "a", "b", "c")
    for n, s in enumerate(STEPS):
        state, canceled = await wf.finish_step("r1", s, True, f"out-{s}", 1000 + n, 1, STEPS) or (
            "",
            [],
        )
        assert canceled == [] and state == ("SUCCEEDED" if s == "c" else "RUNNING")
    run = await read_run(wf)
    assert states(run) == ["SUCCEEDED"] + ["SUCCEEDED"] * 3
    assert run.step("b").output == "out-b" and run.step("b").finished_ms == 1001
    assert 0 < redis_client.pttl(store.keys.run("r1")) <= store.settings.retention_ms


async def test_a_failure_fails_the_run_skips_waiting_and_cancels_scheduled_steps(
    store: Store,
) -> None:
    wf = await seed_scheduled(store, "r1", "a", "b")
    assert await wf.finish_step("r1", "a", False, "boom", 0, 3, STEPS) == ("FAILED", ["wf:r1:b"])
    run = await read_run(wf)
    assert states(run) == ["FAILED", "FAILED", "CANCELED", "SKIPPED"]
    assert run.error == "a: boom" and run.step("a").attempts == 3 and run.finished_ms > 0


async def test_a_repeat_changes_nothing(store: Store, redis_client: redis.Redis) -> None:
    wf = await seed_scheduled(store, "r1", "a")
    await wf.finish_step("r1", "a", True, "first", 0, 1, STEPS)
    before = snapshot(redis_client)
    assert await wf.finish_step("r1", "a", False, "second", 0, 2, STEPS) is None
    assert snapshot(redis_client) == before


async def test_a_step_finishing_in_a_canceled_run_is_recorded_and_changes_the_run_not(
    store: Store,
) -> None:
    wf = await seed_scheduled(store, "r1", "a")
    await wf.step_running("r1", "a", 1)
    await wf.cancel_run("r1", STEPS)
    assert await wf.finish_step("r1", "a", True, "late", 0, 1, STEPS) == ("CANCELED", [])
    assert states(await read_run(wf)) == ["CANCELED", "SUCCEEDED", "CANCELED", "CANCELED"]


async def test_a_failure_hands_the_run_to_its_on_failure_step_whose_end_fails_it(
    store: Store,
) -> None:
    wf = await seed_scheduled(store, "r1", "a")
    assert await wf.finish_step("r1", "a", False, "boom", 0, 1, STEPS, "c") == ("RUNNING", [])
    run = await read_run(wf)
    assert states(run) == ["RUNNING", "FAILED", "SKIPPED", "WAITING"] and run.failed == "a"
    await wf.schedule_step("r1", "c", step_task("r1", "c"))
    assert await wf.finish_step("r1", "c", True, "undone", 0, 1, STEPS, "c") == ("FAILED", [])
    assert states(await read_run(wf)) == ["FAILED", "FAILED", "SKIPPED", "SUCCEEDED"]


async def test_a_run_that_succeeds_skips_its_on_failure_step(store: Store) -> None:
    wf = await seed_scheduled(store, "r1", "a", "b")
    await wf.finish_step("r1", "a", True, "", 0, 1, STEPS, "c")
    assert await wf.finish_step("r1", "b", True, "", 0, 1, STEPS, "c") == ("SUCCEEDED", [])
    assert states(await read_run(wf)) == ["SUCCEEDED", "SUCCEEDED", "SUCCEEDED", "SKIPPED"]
