"""Signals and on_failure through the real server (docs/adr/0010): the seed's order timeout —
"wait for `paid` up to a timeout, else cancel-order" — both ways; a repeated signal; a signal
to a finished run; a signal racing its timeout judged by its arrival time."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from appliance.config import Settings
from appliance.proto import queue_pb2 as pb
from appliance.store import Store
from appliance.store.workflows import WorkflowStore
from appliance.workflows.advancer import Advancer
from appliance.workflows.definitions import Step, Workflow
from tests.conftest import on_both
from tests.workflows.helpers import step, step_of, take, until_run, workflows_stub

TIMEOUT_MS = 400  # "30 minutes", scaled down


def order_timeout() -> pb.Workflow:
    return pb.Workflow(
        name="order-timeout",
        steps=[
            pb.WorkflowStep(name="paid", signal="paid", timeout_ms=TIMEOUT_MS),
            step(
                "ship",
                "shipping",
                '{"order": {{ input.order }}, "paid": {{ steps.paid.output }}}',
                "paid",
            ),
            step(
                "cancel-order",
                "orders",
                '{"order": {{ input.order }}, "why": "{{ failed.error }}"}',
                on_failure=True,
            ),
        ],
    )


@pytest.fixture
async def wf(server: Any) -> AsyncIterator[Any]:
    stub, channel = workflows_stub(server)
    await stub.PutWorkflow(pb.PutWorkflowRequest(workflow=order_timeout()))
    yield stub
    await channel.close()


def finished(run: pb.Run) -> bool:
    return run.state in (pb.RUN_SUCCEEDED, pb.RUN_FAILED, pb.RUN_CANCELED)


@on_both
async def test_paid_in_time_ships_and_skips_the_cancel(wf: Any, stub: Any) -> None:
    run_id = (
        await wf.StartRun(pb.StartRunRequest(workflow="order-timeout", input='{"order": 7}'))
    ).run_id
    signal = pb.SignalRunRequest(run_id=run_id, name="paid", payload='{"amount": 5}')
    assert not (await wf.SignalRun(signal)).duplicate
    assert (await wf.SignalRun(signal)).duplicate  # a retried signal changes nothing
    ship = await take(stub, "shipping")
    assert json.loads(ship.payload) == {"order": 7, "paid": {"amount": 5}}
    await stub.Ack(pb.AckRequest(id=ship.id, lease_token=ship.lease_token))
    run = await until_run(wf, run_id, finished)
    assert run.state == pb.RUN_SUCCEEDED
    assert [s.state for s in run.steps] == [pb.STEP_SUCCEEDED, pb.STEP_SUCCEEDED, pb.STEP_SKIPPED]
    assert step_of(run, "paid").output == '{"amount": 5}'
    with pytest.raises(grpc.aio.AioRpcError) as late:
        await wf.SignalRun(signal)
    assert late.value.code() == grpc.StatusCode.FAILED_PRECONDITION


@on_both
async def test_no_signal_by_the_timeout_runs_the_on_failure_step(wf: Any, stub: Any) -> None:
    started = await wf.StartRun(pb.StartRunRequest(workflow="order-timeout", input='{"order": 8}'))
    cancel = await take(stub, "orders", wait_ms=5000)
    run = await wf.GetRun(pb.GetRunRequest(run_id=started.run_id))
    paid = step_of(run.run, "paid")
    assert paid.state == pb.STEP_FAILED and paid.finished_ms >= run.run.created_ms + TIMEOUT_MS
    assert json.loads(cancel.payload) == {
        "order": 8,
        "why": f"paid: no signal 'paid' within {TIMEOUT_MS} ms",
    }
    await stub.Ack(pb.AckRequest(id=cancel.id, lease_token=cancel.lease_token))
    run2 = await until_run(wf, started.run_id, finished)
    assert run2.state == pb.RUN_FAILED
    assert [s.state for s in run2.steps] == [pb.STEP_FAILED, pb.STEP_SKIPPED, pb.STEP_SUCCEEDED]
    assert not (await stub.Retrieve(pb.RetrieveRequest(topic="shipping", wait_ms=200))).tasks


@pytest.mark.parametrize("late_ms", [-1, 1])
async def test_a_signal_racing_its_timeout_is_judged_by_its_arrival(
    store: Store, settings: Settings, late_ms: int
) -> None:
    """However late the advancer looks, a signal that arrived by the deadline wins and one
    that arrived after it loses."""
    flow = Workflow("w", (Step("paid", "", signal="paid", timeout_ms=60_000),))
    wf = WorkflowStore(store)
    await wf.put_workflow("w", flow.to_json())
    await wf.start_run("r1", "w", 1, "", ["paid"])
    advancer = Advancer(store, settings)
    await advancer.advance("r1", await store.now_ms())  # the signal step begins waiting
    assert (await wf.get_run("r1", ["paid"])).step("paid").state == "SCHEDULED"
    await wf.signal_run("r1", "paid", "money")
    now, key = await store.now_ms(), store.keys.run("r1")
    await store.redis.hset(key, "paid:due", now - 10)  # the deadline passed before the look
    await store.redis.hset(key, "signal_at:paid", now - 10 + late_ms)  # just before / after it
    await advancer.advance("r1", await store.now_ms())
    run = await wf.get_run("r1", ["paid"])
    assert run.state == ("SUCCEEDED" if late_ms < 0 else "FAILED")
