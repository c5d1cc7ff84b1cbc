"""step_running.lua: a SCHEDULED step whose task was leased is RUNNING, its start kept once."""

from __future__ import annotations

import asyncio

import pytest

from appliance.errors import NotFound
from appliance.store import Store
from tests.conftest import on_both
from tests.workflows.seed import read_run, seed_run, seed_scheduled, states

pytestmark = on_both  # every test here also on the Redis Cluster (ADR 0010)


async def test_a_scheduled_step_runs_and_its_attempts_follow_its_task(store: Store) -> None:
    wf = await seed_scheduled(store)
    await wf.step_running("r1", "a", 1)
    first = (await read_run(wf)).step("a")
    await asyncio.sleep(0.005)
    await wf.step_running("r1", "a", 2)
    run = await read_run(wf)
    assert states(run)[1] == "RUNNING" and run.step("a").attempts == 2
    assert run.step("a").started_ms == first.started_ms > 0


async def test_a_waiting_step_is_refused(store: Store) -> None:
    wf = await seed_run(store)
    reply = await store.run("step_running", [store.keys.run("r1")], ["a", 1])
    assert reply == -3 and states(await read_run(wf))[1] == "WAITING"
    with pytest.raises(NotFound):
        await wf.get_run("nope", ["a"])
