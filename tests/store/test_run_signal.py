"""run_signal.lua: an active run keeps the first signal of each name with its arrival time; a
repeat changes nothing; a finished run refuses."""

from __future__ import annotations

import pytest
import redis

from appliance.errors import NotFound, WrongState
from appliance.store import Store
from tests.conftest import on_both
from tests.store.helpers import snapshot
from tests.workflows.seed import STEPS, read_run, seed_run

pytestmark = on_both  # every test here also on the Redis Cluster (ADR 0010)


async def test_the_first_signal_of_a_name_is_kept_with_its_time(
    store: Store, redis_client: redis.Redis
) -> None:
    wf = await seed_run(store)
    before = await store.now_ms()
    assert await wf.signal_run("r1", "paid", '{"amount": 5}')
    snap = snapshot(redis_client)
    assert not await wf.signal_run("r1", "paid", "other")  # a retried SignalRun
    assert snapshot(redis_client) == snap
    at, payload = (await read_run(wf)).signals["paid"]
    assert payload == '{"amount": 5}' and at >= before


async def test_a_finished_or_missing_run_refuses(store: Store) -> None:
    wf = await seed_run(store)
    await wf.cancel_run("r1", STEPS)
    with pytest.raises(WrongState, match="finished"):
        await wf.signal_run("r1", "paid", "")
    with pytest.raises(NotFound):
        await wf.signal_run("nope", "paid", "")
