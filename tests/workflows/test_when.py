"""`when` conditions through the real server: a false one skips its step, the skip reaches the
step's children (all parents, or every parent with after_any), and the run still succeeds; a
bad expression is refused at PutWorkflow."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from appliance.proto import queue_pb2 as pb
from tests.conftest import on_both
from tests.workflows.helpers import step, take, until_run, workflows_stub

pytestmark = on_both  # every test here also on the Redis Cluster (ADR 0010)


@pytest.fixture
async def wf(server: Any) -> AsyncIterator[Any]:
    stub, channel = workflows_stub(server)
    steps = [
        step("check", "t"),
        step("vip", "vip", "", "check", when="steps.check.output.vip"),
        step("gift", "gift", "", "vip"),
        step("thanks", "t", "{{ steps.check.output.vip }}", "vip", "check", after_any=True),
    ]
    await stub.PutWorkflow(pb.PutWorkflowRequest(workflow=pb.Workflow(name="w", steps=steps)))
    yield stub
    await channel.close()


def finished(run: pb.Run) -> bool:
    return run.state in (pb.RUN_SUCCEEDED, pb.RUN_FAILED, pb.RUN_CANCELED)


@pytest.mark.parametrize("vip", [False, True])
async def test_a_false_when_skips_the_step_and_its_children(wf: Any, stub: Any, vip: bool) -> None:
    run_id = (await wf.StartRun(pb.StartRunRequest(workflow="w"))).run_id
    check = await take(stub, "t")
    result = '{"vip": true}' if vip else '{"vip": false}'
    await stub.Ack(pb.AckRequest(id=check.id, lease_token=check.lease_token, result=result))
    thanks = await take(stub, "t")
    assert thanks.payload == str(vip)
    await stub.Ack(pb.AckRequest(id=thanks.id, lease_token=thanks.lease_token))
    if vip:
        for topic in ("vip", "gift"):
            task = await take(stub, topic)
            await stub.Ack(pb.AckRequest(id=task.id, lease_token=task.lease_token))
    run = await until_run(wf, run_id, finished)
    assert run.state == pb.RUN_SUCCEEDED
    want = pb.STEP_SUCCEEDED if vip else pb.STEP_SKIPPED
    assert [s.state for s in run.steps] == [pb.STEP_SUCCEEDED, want, want, pb.STEP_SUCCEEDED]
    if not vip:
        assert run.steps[1].error.startswith("when is false")
        assert run.steps[2].error == "parent skipped: vip"
        assert not (await stub.Retrieve(pb.RetrieveRequest(topic="vip", wait_ms=100))).tasks


async def test_a_bad_when_is_refused(wf: Any) -> None:
    for when in ("steps.check.output ==", "secret.x"):
        bad = pb.Workflow(name="w", steps=[step("a", "t", when=when)])
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await wf.PutWorkflow(pb.PutWorkflowRequest(workflow=bad))
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "when" in refused.value.details()
