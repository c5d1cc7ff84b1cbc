"""run_start.lua: a run is created PENDING with every step WAITING, once per run id."""

from __future__ import annotations

import redis

from appliance.store import Store
from appliance.store.workflows import WorkflowStore
from tests.conftest import on_both
from tests.store.helpers import snapshot
from tests.workflows.seed import STEPS, read_run, seed_run, states

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
