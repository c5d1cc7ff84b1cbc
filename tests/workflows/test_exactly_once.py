"""Exactly-once advancement (docs/adr/0010): a crash between a step's outbox record and its task,
advancers racing on one run, a retried Ack and a repeated StartRun create nothing twice and
lose nothing. Real Redis; the advancer is driven by hand (no loop) so the crash point is ours."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import redis

from appliance.config import Settings
from appliance.model import NewTask
from appliance.proto import queue_pb2 as pb
from appliance.store import Store
from appliance.store.workflows import WorkflowStore
from appliance.workflows.advancer import Advancer
from appliance.workflows.definitions import Step, Workflow
from appliance.workflows.model import step_task_id
from tests.conftest import on_both
from tests.store.helpers import KEYS
from tests.workflows.helpers import lifecycle, take, workflows_stub

LIFECYCLE = Workflow(
    "user-lifecycle",
    (
        Step("welcome", "emails", '{"to": "{{ input.email }}"}'),
        Step("coupon", "coupons", "{{ steps.welcome.output }}", ("welcome",), delay_ms=50),
    ),
)


@pytest.fixture
async def engine(store: Store, settings: Settings) -> tuple[WorkflowStore, Advancer]:
    wf = WorkflowStore(store)
    version = await wf.put_workflow(LIFECYCLE.name, LIFECYCLE.to_json())
    assert await wf.start_run(
        "r1", LIFECYCLE.name, version, '{"email": "a@b.c"}', ["welcome", "coupon"]
    )
    return wf, Advancer(store, settings)


def tasks_in(r: redis.Redis, topic: str) -> int:
    """Every task the topic holds in any state (pending, running, finished records)."""
    tk = KEYS.topic(topic)
    tasks = r.scan_iter(match=tk.task("*"))  # SCAN: every master of a cluster (KEYS: one)
    return len(set(r.hkeys(tk.new)) | {k.rsplit(b":", 1)[-1] for k in tasks})


@on_both
async def test_a_crash_between_the_outbox_record_and_the_task_loses_nothing_and_doubles_nothing(
    store: Store, engine: tuple[WorkflowStore, Advancer], redis_client: redis.Redis
) -> None:
    wf, advancer = engine
    now = await store.now_ms()
    task = NewTask(step_task_id("r1", "welcome"), "emails", "recorded", 3, execute_at_ms=now)
    assert await wf.schedule_step("r1", "welcome", task) is None  # ... and the advancer died
    assert tasks_in(redis_client, "emails") == 0
    await advancer.advance("r1", now)  # the next pass sends the outbox record
    await advancer.advance("r1", now)
    assert tasks_in(redis_client, "emails") == 1
    (got,) = (await store.claim("emails", 10, 30_000)).tasks
    assert (got.id, got.payload) == ("wf:r1:welcome", "recorded")


@on_both
async def test_advancers_racing_and_a_retried_ack_make_each_step_once(
    store: Store,
    engine: tuple[WorkflowStore, Advancer],
    settings: Settings,
    redis_client: redis.Redis,
) -> None:
    wf, first = engine
    others = [first, Advancer(store, settings), Advancer(store, settings)]

    async def race() -> None:
        now = await store.now_ms()
        await asyncio.gather(*(a.advance("r1", now) for a in others for _ in range(3)))

    await race()
    (welcome,) = (await store.claim("emails", 10, 30_000)).tasks
    await store.ack(welcome.id, welcome.lease_token, '{"id": 1}')
    await store.ack(welcome.id, welcome.lease_token, '{"id": 2}')  # a retried Ack
    await race()
    await asyncio.sleep(0.06)  # the coupon's delay
    await race()
    (coupon,) = (await store.claim("coupons", 10, 30_000)).tasks
    assert json.loads(coupon.payload) == {"id": 1}
    await store.ack(coupon.id, coupon.lease_token, "done")
    await race()
    run = await wf.get_run("r1", ["welcome", "coupon"])
    assert run.state == "SUCCEEDED" and [s.attempts for s in run.steps] == [1, 1]
    assert (tasks_in(redis_client, "emails"), tasks_in(redis_client, "coupons")) == (1, 1)
    assert coupon.execute_time_ms >= run.steps[0].finished_ms + 50


@pytest.fixture
async def wf_stub(server: Any) -> AsyncIterator[Any]:
    stub, channel = workflows_stub(server)
    yield stub
    await channel.close()


async def test_start_run_with_an_id_is_idempotent(wf_stub: Any, stub: Any) -> None:
    await wf_stub.PutWorkflow(pb.PutWorkflowRequest(workflow=lifecycle()))
    request = pb.StartRunRequest(workflow="user-lifecycle", input='{"email": "a"}', id="signup-7")
    first = await wf_stub.StartRun(request)
    again = await wf_stub.StartRun(request)
    assert (first.run_id, first.duplicate) == ("signup-7", False)
    assert (again.run_id, again.duplicate, again.version) == ("signup-7", True, 1)
    assert (await take(stub, "emails")).id == "wf:signup-7:welcome"
    assert not (await stub.Retrieve(pb.RetrieveRequest(topic="emails", wait_ms=200))).tasks
    other = pb.Workflow(name="other", steps=[pb.WorkflowStep(name="x", topic="t")])
    await wf_stub.PutWorkflow(pb.PutWorkflowRequest(workflow=other))
    with pytest.raises(grpc.aio.AioRpcError) as taken:
        await wf_stub.StartRun(pb.StartRunRequest(workflow="other", id="signup-7"))
    assert taken.value.code() == grpc.StatusCode.ALREADY_EXISTS


async def test_a_run_indexed_but_not_written_yet_is_kept_and_an_old_one_dropped(
    store: Store, settings: Settings, redis_client: redis.Redis
) -> None:
    """StartRun indexes a run before run_start writes it: an advancer looking in between must
    not drop it from `due` (it would never be advanced); one indexed long ago is gone."""
    wf = WorkflowStore(store)
    version = await wf.put_workflow(LIFECYCLE.name, LIFECYCLE.to_json())
    now = await store.now_ms()
    due, runs = KEYS.workflows.due, KEYS.workflows.runs
    redis_client.zadd(runs, {"new": now, "old": now - 3_600_000})
    redis_client.zadd(due, {"new": now, "old": now})
    advancer = Advancer(store, settings)
    await advancer.run_once()
    assert redis_client.zscore(due, "new") is not None and redis_client.zscore(due, "old") is None
    args = [LIFECYCLE.name, version, '{"email": "x"}', 0, 2, "welcome", "coupon"]
    await store.run("run_start", [store.keys.run("new")], args)  # StartRun goes on
    redis_client.zadd(due, {"new": now})  # due again (the poll interval, shortened)
    await advancer.run_once()
    assert tasks_in(redis_client, "emails") == 1
