"""run_cancel.lua: an active run is CANCELED with its waiting and scheduled steps (their tasks
returned); a running step stays; again: nothing changes; a finished run is refused."""

from __future__ import annotations

import pytest
import redis

from appliance.errors import NotFound, WrongState
from appliance.store import Store
from tests.conftest import on_both
from tests.store.helpers import snapshot
from tests.workflows.seed import STEPS, read_run, seed_scheduled, states

pytestmark = on_both  # every test here also on the Redis Cluster (ADR 0010)


async def test_cancel_stops_what_waits_and_what_is_scheduled(
    store: Store, redis_client: redis.Redis
) -> None:
    wf = await seed_scheduled(store, "r1", "a", "b")
    await wf.step_running("r1", "a", 1)
    assert await wf.cancel_run("r1", STEPS) == ["wf:r1:b"]
    run = await read_run(wf)
    assert states(run) == ["CANCELED", "RUNNING", "CANCELED", "CANCELED"]
    assert 0 < redis_client.pttl(store.keys.run("r1")) <= store.settings.retention_ms
    before = snapshot(redis_client)
    assert await wf.cancel_run("r1", STEPS) == []
    assert snapshot(redis_client) == before


async def test_a_finished_run_or_none_is_refused(store: Store) -> None:
    wf = await seed_scheduled(store, "r1", "a", "b", "c")
    for s in STEPS:
        await wf.finish_step("r1", s, True, "", 0, 1, STEPS)
    with pytest.raises(WrongState, match="SUCCEEDED"):
        await wf.cancel_run("r1", STEPS)
    with pytest.raises(NotFound):
        await wf.cancel_run("nope", STEPS)
