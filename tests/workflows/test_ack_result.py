"""Ack's `result` (the output a workflow step passes on): unary Ack, AckBatch and the Work
stream's settle (through the SDK Worker: a handler's return value) keep it on the task record,
GetTask shows it; an oversized result is refused and changes nothing."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from appliance import AsyncClient, Worker
from appliance.model import Task, TaskState
from appliance.proto import queue_pb2 as pb
from tests.conftest import on_both
from tests.worker.test_worker import FAST, eventually, in_state, running

pytestmark = on_both  # every test here also on the Redis Cluster (ADR 0010)


async def test_unary_ack_and_ack_batch_keep_the_result(stub: Any) -> None:
    for n in range(3):
        await stub.Enqueue(pb.EnqueueRequest(topic="t", payload="p", id=f"r{n}"))
    tasks = (await stub.Retrieve(pb.RetrieveRequest(topic="t", batch_size=3))).tasks
    first, *rest = sorted(tasks, key=lambda t: t.id)
    await stub.Ack(pb.AckRequest(id=first.id, lease_token=first.lease_token, result='{"a":1}'))
    acks = [pb.AckRequest(id=t.id, lease_token=t.lease_token, result=f"out-{t.id}") for t in rest]
    assert list((await stub.AckBatch(pb.AckBatchRequest(acks=acks))).success) == [True, True]
    results = [(await stub.GetTask(pb.GetTaskRequest(id=f"r{n}"))).result for n in range(3)]
    assert results == ['{"a":1}', "out-r1", "out-r2"]


async def test_an_oversized_result_is_refused_and_the_task_stays_running(
    stub: Any, settings: Any
) -> None:
    await stub.Enqueue(pb.EnqueueRequest(topic="t", payload="p", id="big"))
    (task,) = (await stub.Retrieve(pb.RetrieveRequest(topic="t"))).tasks
    too_big = "x" * (settings.payload_max_bytes + 1)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.Ack(pb.AckRequest(id=task.id, lease_token=task.lease_token, result=too_big))
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert (await stub.GetTask(pb.GetTaskRequest(id="big"))).state == pb.RUNNING


async def test_a_worker_handlers_return_value_is_the_result(server: Any) -> None:
    worker = Worker(server.address, **FAST)

    @worker.task("emails")
    def send(task: Task) -> dict[str, str]:
        return {"message_id": "m-" + task.id}

    @worker.task("texts")
    async def text(task: Task) -> str:
        await asyncio.sleep(0)
        return "sent"

    async with AsyncClient(server.address) as client:
        await client.enqueue("emails", {"to": "a@example.com"}, id="e1")
        await client.enqueue("texts", "hi", id="s1")
        async with running(worker):
            await eventually(in_state(client, "e1", TaskState.SUCCEEDED))
            await eventually(in_state(client, "s1", TaskState.SUCCEEDED))
        assert (await client.get_task("e1")).result == '{"message_id": "m-e1"}'
        assert (await client.get_task("s1")).result == "sent"
