"""step_finish.lua: a step's outcome is recorded once; the last success finishes the run; a
failure fails it (waiting steps SKIPPED, scheduled ones CANCELED, their tasks returned)."""

from __future__ import annotations

import redis

from appliance.store import Store
from tests.store.helpers import snapshot
from tests.workflows.seed import STEPS, read_run, seed_scheduled, states


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
