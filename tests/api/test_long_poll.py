"""Long-poll Retrieve: answers within milliseconds of the due time, woken across processes."""

from __future__ import annotations

import asyncio
import time

import grpc

from appliance.proto import queue_pb2 as pb
from appliance.proto import queue_pb2_grpc as pb_grpc
from tests.conftest import on_both


@on_both
async def test_waits_for_a_delayed_task_and_never_returns_it_early(stub) -> None:
    reply = await stub.Enqueue(pb.EnqueueRequest(topic="t", payload="p", delay_ms=300))
    due = (await stub.GetTask(pb.GetTaskRequest(id=reply.id))).task.execute_time_ms
    got = await stub.Retrieve(pb.RetrieveRequest(topic="t", wait_ms=5000))
    received = time.time() * 1000
    (task,) = got.tasks
    assert task.id == reply.id
    assert task.lease_deadline_ms - 30_000 >= due  # leased (Redis clock) not before due
    assert received - due < 250  # generous for a noisy CI box; measured ~2 ms (see docs)


@on_both
async def test_wait_ends_empty_after_wait_ms(stub) -> None:
    start = time.monotonic()
    got = await stub.Retrieve(pb.RetrieveRequest(topic="empty", wait_ms=300))
    elapsed = time.monotonic() - start
    assert not got.tasks and 0.28 <= elapsed < 2


@on_both
async def test_enqueue_wakes_a_waiting_retrieve(stub) -> None:
    waiting = asyncio.ensure_future(stub.Retrieve(pb.RetrieveRequest(topic="w", wait_ms=10_000)))
    await asyncio.sleep(0.2)
    start = time.monotonic()
    await stub.Enqueue(pb.EnqueueRequest(topic="w", payload="now"))
    got = await asyncio.wait_for(waiting, 5)
    assert [t.payload for t in got.tasks] == ["now"]
    assert time.monotonic() - start < 1


@on_both
def test_wake_up_crosses_server_processes(redis_url, redis_client) -> None:
    """A Retrieve waiting on server A gets a task enqueued through server B at once."""
    from tests.conftest import ServerProcess

    a, b = ServerProcess(redis_url), ServerProcess(redis_url)
    try:
        with grpc.insecure_channel(a.address) as ca, grpc.insecure_channel(b.address) as cb:
            stub_a, stub_b = pb_grpc.DelayQueueServiceStub(ca), pb_grpc.DelayQueueServiceStub(cb)
            future = stub_a.Retrieve.future(pb.RetrieveRequest(topic="x", wait_ms=20_000))
            time.sleep(0.5)
            start = time.monotonic()
            stub_b.Enqueue(pb.EnqueueRequest(topic="x", payload="hello"))
            got = future.result(timeout=10)
            assert [t.payload for t in got.tasks] == ["hello"]
            assert time.monotonic() - start < 1
    finally:
        a.stop()
        b.stop()
