"""Workflow runs end to end through the real gRPC server (its advancer) and a real Redis: the
seed's user lifecycle, failure, cancel, idempotent starts (docs/adr/0010-workflows.md)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from appliance.proto import queue_pb2 as pb
from tests.conftest import on_both
from tests.workflows.helpers import (
    LIFECYCLE_DELAY_MS,
    lifecycle,
    step,
    step_of,
    take,
    until_run,
    workflows_stub,
)


@pytest.fixture
async def wf(server: Any) -> AsyncIterator[Any]:
    stub, channel = workflows_stub(server)
    yield stub
    await channel.close()


def finished(run: pb.Run) -> bool:
    return run.state in (pb.RUN_SUCCEEDED, pb.RUN_FAILED, pb.RUN_CANCELED)


@on_both
async def test_user_lifecycle_runs_each_step_once_after_its_parent_and_delay(
    wf: Any, stub: Any
) -> None:
    put = await wf.PutWorkflow(pb.PutWorkflowRequest(workflow=lifecycle()))
    assert put.version == 1
    started = await wf.StartRun(
        pb.StartRunRequest(workflow="user-lifecycle", input='{"email": "a@example.com"}')
    )
    welcome = await take(stub, "emails")
    assert welcome.id == f"wf:{started.run_id}:welcome"
    assert json.loads(welcome.payload) == {"to": "a@example.com"}
    await stub.Ack(
        pb.AckRequest(id=welcome.id, lease_token=welcome.lease_token, result='{"message_id": "m1"}')
    )
    acked = await stub.GetTask(pb.GetTaskRequest(id=welcome.id, topic="emails"))
    coupon = await take(stub, "coupons")
    assert coupon.id == f"wf:{started.run_id}:coupon"
    assert json.loads(coupon.payload) == {"to": "a@example.com", "after": "m1"}
    run = await wf.GetRun(pb.GetRunRequest(run_id=started.run_id))
    welcome_step = step_of(run.run, "welcome")
    # never before its parent finished + the delay: due at that time, and not handed out sooner
    assert coupon.execute_time_ms >= welcome_step.finished_ms + LIFECYCLE_DELAY_MS
    assert welcome_step.finished_ms >= acked.task.execute_time_ms
    await stub.Ack(pb.AckRequest(id=coupon.id, lease_token=coupon.lease_token, result="c1"))
    done = await until_run(wf, started.run_id, finished)
    assert done.state == pb.RUN_SUCCEEDED and done.workflow == "user-lifecycle"
    assert [(s.name, s.state, s.attempts, s.output) for s in done.steps] == [
        ("welcome", pb.STEP_SUCCEEDED, 1, '{"message_id": "m1"}'),
        ("coupon", pb.STEP_SUCCEEDED, 1, "c1"),
    ]
    # exactly once: nothing else was ever enqueued on either topic
    stats = await stub.GetStats(pb.GetStatsRequest(topics=["emails", "coupons"]))
    assert [(t.pending, t.running, t.dead) for t in stats.topics] == [(0, 0, 0), (0, 0, 0)]
    empty = await stub.Retrieve(pb.RetrieveRequest(topic="coupons", wait_ms=200))
    assert not empty.tasks


@on_both
async def test_a_dead_lettered_step_fails_the_run_and_skips_what_waited(wf: Any, stub: Any) -> None:
    steps = [step("a", "t", "x", max_retries=0), step("b", "t", "y", "a")]
    await wf.PutWorkflow(pb.PutWorkflowRequest(workflow=pb.Workflow(name="w", steps=steps)))
    run_id = (await wf.StartRun(pb.StartRunRequest(workflow="w"))).run_id
    a = await take(stub, "t")
    await stub.Nack(pb.NackRequest(id=a.id, lease_token=a.lease_token, error="boom"))
    run = await until_run(wf, run_id, finished)
    assert run.state == pb.RUN_FAILED and run.error == "a: its task dead-lettered: boom"
    assert [(s.name, s.state) for s in run.steps] == [("a", pb.STEP_FAILED), ("b", pb.STEP_SKIPPED)]
    assert not (await stub.Retrieve(pb.RetrieveRequest(topic="t", wait_ms=300))).tasks


@on_both
async def test_cancel_deletes_the_scheduled_step_and_a_running_steps_result_starts_nothing(
    wf: Any, stub: Any
) -> None:
    steps = [step("a", "t"), step("b", "t", "", "a", delay_ms=60_000), step("c", "u", "", "b")]
    await wf.PutWorkflow(pb.PutWorkflowRequest(workflow=pb.Workflow(name="w", steps=steps)))
    run_id = (await wf.StartRun(pb.StartRunRequest(workflow="w", id="r1"))).run_id
    a = await take(stub, "t")
    await stub.Ack(pb.AckRequest(id=a.id, lease_token=a.lease_token))
    await until_run(wf, run_id, lambda r: step_of(r, "b").state == pb.STEP_SCHEDULED)
    assert (await wf.CancelRun(pb.CancelRunRequest(run_id=run_id))).success
    run = await run_state_of(wf, run_id)
    assert run.state == pb.RUN_CANCELED
    assert [s.state for s in run.steps] == [pb.STEP_SUCCEEDED, pb.STEP_CANCELED, pb.STEP_CANCELED]
    b = await stub.GetTask(pb.GetTaskRequest(id="wf:r1:b", topic="t"))
    assert b.state == pb.CANCELED
    assert not (await wf.CancelRun(pb.CancelRunRequest(run_id=run_id))).success  # again: no-op

    # canceled while a step runs: it may finish, its result starts nothing
    run_id = (await wf.StartRun(pb.StartRunRequest(workflow="w", id="r2"))).run_id
    a = await take(stub, "t")
    await wf.CancelRun(pb.CancelRunRequest(run_id=run_id))
    await stub.Ack(pb.AckRequest(id=a.id, lease_token=a.lease_token))
    run = await until_run(wf, run_id, lambda r: step_of(r, "a").state == pb.STEP_SUCCEEDED)
    assert run.state == pb.RUN_CANCELED and step_of(run, "b").state == pb.STEP_CANCELED
    assert not (await stub.Retrieve(pb.RetrieveRequest(topic="t", wait_ms=300))).tasks


async def run_state_of(wf: Any, run_id: str) -> pb.Run:
    return (await wf.GetRun(pb.GetRunRequest(run_id=run_id))).run


@on_both
async def test_a_template_that_fails_to_render_fails_its_step_and_the_run(wf: Any) -> None:
    steps = [step("a", "t", "{{ input.email }}")]
    await wf.PutWorkflow(pb.PutWorkflowRequest(workflow=pb.Workflow(name="w", steps=steps)))
    run_id = (await wf.StartRun(pb.StartRunRequest(workflow="w", input="{}"))).run_id
    run = await until_run(wf, run_id, finished)
    assert run.state == pb.RUN_FAILED and "UndefinedError" in run.error
    assert run.steps[0].state == pb.STEP_FAILED and not run.steps[0].task_id


@on_both
async def test_list_runs_filters_by_workflow_and_state_and_pages(wf: Any, stub: Any) -> None:
    for name in ("w", "v"):
        one = pb.Workflow(name=name, steps=[step("a", "t")])
        await wf.PutWorkflow(pb.PutWorkflowRequest(workflow=one))
    for n in range(5):
        await wf.StartRun(pb.StartRunRequest(workflow="w", id=f"w{n}"))
    await wf.StartRun(pb.StartRunRequest(workflow="v", id="v0"))
    await wf.CancelRun(pb.CancelRunRequest(run_id="w1"))
    seen, token = [], ""
    while True:
        page = await wf.ListRuns(pb.ListRunsRequest(workflow="w", page_size=2, page_token=token))
        seen += [r.id for r in page.runs]
        token = page.next_page_token
        if not token:
            break
    assert sorted(seen) == ["w0", "w1", "w2", "w3", "w4"]
    canceled = await wf.ListRuns(pb.ListRunsRequest(state=pb.RUN_CANCELED))
    assert [r.id for r in canceled.runs] == ["w1"] and not canceled.next_page_token
