"""PutWorkflow/GetWorkflow/ListWorkflows/DeleteWorkflow through the real server: versions, and
every bad definition refused with INVALID_ARGUMENT naming the field, changing nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import redis

from appliance.proto import queue_pb2 as pb
from tests.store.helpers import snapshot
from tests.workflows.helpers import lifecycle, step, workflows_stub


@pytest.fixture
async def wf(server: Any) -> AsyncIterator[Any]:
    stub, channel = workflows_stub(server)
    yield stub
    await channel.close()


async def test_put_get_list_delete_keep_versions(wf: Any) -> None:
    assert (await wf.PutWorkflow(pb.PutWorkflowRequest(workflow=lifecycle()))).version == 1
    changed = lifecycle()
    changed.steps[1].delay_ms = 5
    assert (await wf.PutWorkflow(pb.PutWorkflowRequest(workflow=changed))).version == 2
    got = await wf.GetWorkflow(pb.GetWorkflowRequest(name="user-lifecycle"))
    assert (
        got.version == 2 and got.steps[1].delay_ms == 5 and list(got.steps[1].after) == ["welcome"]
    )
    first = await wf.GetWorkflow(pb.GetWorkflowRequest(name="user-lifecycle", version=1))
    assert first.steps[1].delay_ms == lifecycle().steps[1].delay_ms
    listed = await wf.ListWorkflows(pb.ListWorkflowsRequest())
    assert [(w.name, w.version) for w in listed.workflows] == [("user-lifecycle", 2)]
    assert (await wf.DeleteWorkflow(pb.DeleteWorkflowRequest(name="user-lifecycle"))).success
    assert not (await wf.ListWorkflows(pb.ListWorkflowsRequest())).workflows
    for call in (
        wf.GetWorkflow(pb.GetWorkflowRequest(name="user-lifecycle")),
        wf.StartRun(pb.StartRunRequest(workflow="user-lifecycle")),
        wf.DeleteWorkflow(pb.DeleteWorkflowRequest(name="user-lifecycle")),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as gone:
            await call
        assert gone.value.code() == grpc.StatusCode.NOT_FOUND


BAD = {
    "a cycle": (
        [step("a", "t", "", "b"), step("b", "t", "", "a")],
        "cycle",
    ),
    "a step its own parent": ([step("a", "t", "", "a")], "cycle"),
    "an unknown parent": ([step("a", "t"), step("b", "t", "", "nope")], "unknown parent 'nope'"),
    "a template that does not parse": ([step("a", "t", "{{ input.email ")], "bad template"),
    "a template naming something else": ([step("a", "t", "{{ os.system }}")], "not ['os']"),
    "a negative delay": ([step("a", "t", "", delay_ms=-1)], "delay_ms"),
    "a delay over ten years": ([step("a", "t", "", delay_ms=10**13)], "delay_ms"),
    "a bad topic": ([step("a", "no spaces")], "topic"),
    "a bad step name": ([step("a:b", "t")], "name"),
    "a step name used twice": ([step("a", "t"), step("a", "t")], "used twice"),
    "no steps": ([], "1 to 100 steps"),
    "a signal step with a topic": (
        [pb.WorkflowStep(name="a", topic="t", signal="paid")],
        "no topic and no payload",
    ),
    "a timeout on a task step": ([step("a", "t", timeout_ms=5)], "only a signal step"),
    "two on_failure steps": (
        [step("a", "t"), step("x", "t", on_failure=True), step("y", "t", on_failure=True)],
        "at most one on_failure",
    ),
    "an on_failure step with parents": (
        [step("a", "t"), step("x", "t", "", "a", on_failure=True)],
        "no parents",
    ),
    "an on_failure step as a parent": (
        [step("x", "t", on_failure=True), step("a", "t", "", "x")],
        "is on_failure",
    ),
}


@pytest.mark.parametrize("why", list(BAD))
async def test_a_bad_definition_is_refused_and_changes_nothing(
    wf: Any, redis_client: redis.Redis, why: str
) -> None:
    await wf.PutWorkflow(pb.PutWorkflowRequest(workflow=lifecycle()))
    before = snapshot(redis_client)
    steps, words = BAD[why]
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await wf.PutWorkflow(pb.PutWorkflowRequest(workflow=pb.Workflow(name="w", steps=steps)))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert words in refused.value.details()
    assert snapshot(redis_client) == before


async def test_bad_run_requests_are_refused(wf: Any) -> None:
    await wf.PutWorkflow(pb.PutWorkflowRequest(workflow=lifecycle()))
    for request, code in (
        (pb.StartRunRequest(workflow="user-lifecycle", id="no spaces"), "INVALID_ARGUMENT"),
        (pb.StartRunRequest(workflow="bad name"), "INVALID_ARGUMENT"),
        (pb.StartRunRequest(workflow="user-lifecycle", input="x" * (1 << 21)), "RESOURCE"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await wf.StartRun(request)
        assert refused.value.code().name.startswith(code)
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await wf.GetRun(pb.GetRunRequest(run_id="nope"))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
