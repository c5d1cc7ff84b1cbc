"""Every bad input gets a clear status code and changes nothing in Redis."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import grpc
import pytest
import redis

from appliance import validation
from appliance.proto import queue_pb2 as pb
from tests.store.helpers import snapshot

INVALID = grpc.StatusCode.INVALID_ARGUMENT

CASES = [
    ("Enqueue", pb.EnqueueRequest(topic="", payload="x"), INVALID, "topic is empty"),
    ("Enqueue", pb.EnqueueRequest(topic="bad topic", payload="x"), INVALID, "must be 1-128"),
    ("Enqueue", pb.EnqueueRequest(topic="a" * 129, payload="x"), INVALID, "must be 1-128"),
    ("Enqueue", pb.EnqueueRequest(topic="t{x}", payload="x"), INVALID, "must be 1-128"),
    (
        "Enqueue",
        pb.EnqueueRequest(topic="t", payload="x", delay_seconds=-1),
        INVALID,
        "delay_seconds",
    ),
    ("Enqueue", pb.EnqueueRequest(topic="t", payload="x", delay_ms=-5), INVALID, "delay_ms"),
    (
        "Enqueue",
        pb.EnqueueRequest(topic="t", payload="x", execute_at_ms=-5),
        INVALID,
        "execute_at_ms",
    ),
    (
        "Enqueue",
        pb.EnqueueRequest(topic="t", payload="x", execute_at_ms=253_402_300_800_000),  # year 10000
        INVALID,
        "execute_at_ms",
    ),
    (
        "Enqueue",
        pb.EnqueueRequest(topic="t", payload="x", execute_at_ms=2**63 - 1),
        INVALID,
        "more than ten years ahead",
    ),
    ("Enqueue", pb.EnqueueRequest(topic="t", payload="x", max_retries=-1), INVALID, "max_retries"),
    ("Enqueue", pb.EnqueueRequest(topic="t", payload="x", id="has space"), INVALID, "id"),
    # a workflow step's id: its run writes it (ADR 0010), and it is never indexed
    ("Enqueue", pb.EnqueueRequest(topic="t", payload="x", id="wf:r1:s"), INVALID, "workflow"),
    (
        "Enqueue",
        pb.EnqueueRequest(topic="t", payload="x" * (1024 * 1024 + 1)),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "over the limit",
    ),
    (
        "EnqueueBatch",
        pb.EnqueueBatchRequest(
            requests=[
                pb.EnqueueRequest(topic="t", payload="ok"),
                pb.EnqueueRequest(topic="", payload="x"),
            ]
        ),
        INVALID,
        "requests[1]",
    ),
    (
        "EnqueueBatch",
        pb.EnqueueBatchRequest(requests=[pb.EnqueueRequest(topic="t")] * 1001),
        INVALID,
        "batch cap",
    ),
    ("Retrieve", pb.RetrieveRequest(topic="", batch_size=1), INVALID, "topic"),
    ("Retrieve", pb.RetrieveRequest(topic="t", batch_size=-1), INVALID, "batch_size"),
    ("Retrieve", pb.RetrieveRequest(topic="t", batch_size=1001), INVALID, "cap"),
    ("Retrieve", pb.RetrieveRequest(topic="t", wait_ms=-1), INVALID, "wait_ms"),
    (
        "Retrieve",
        pb.RetrieveRequest(topic="t", visibility_timeout_ms=-1),
        INVALID,
        "visibility_timeout_ms",
    ),
    ("Delete", pb.DeleteRequest(id=""), INVALID, "id is empty"),
    ("Delete", pb.DeleteRequest(id="unknown"), grpc.StatusCode.NOT_FOUND, "no task"),
    ("GetTask", pb.GetTaskRequest(id="unknown"), grpc.StatusCode.NOT_FOUND, "no task"),
    ("Ack", pb.AckRequest(id="unknown", lease_token="t/x.1"), grpc.StatusCode.NOT_FOUND, "no task"),
    ("Ack", pb.AckRequest(id="x", lease_token=""), INVALID, "lease_token"),
    ("Ack", pb.AckRequest(id="x", lease_token="no-topic"), INVALID, "lease_token is not one"),
    (
        "AckBatch",
        pb.AckBatchRequest(acks=[pb.AckRequest(id="x", lease_token="no-topic")]),
        INVALID,
        "acks[0].lease_token is not one atp handed out",
    ),
    (
        "Nack",
        pb.NackRequest(id="x", lease_token="t/x.1", retry_after_ms=-1),
        INVALID,
        "retry_after_ms",
    ),
    (
        "ExtendLease",
        pb.ExtendLeaseRequest(id="x", lease_token="t/x.1", visibility_timeout_ms=-1),
        INVALID,
        "visibility",
    ),
    ("ListDeadLetters", pb.ListDeadLettersRequest(topic="t", limit=-1), INVALID, "limit"),
    ("ListDeadLetters", pb.ListDeadLettersRequest(topic="t", cursor="garbage"), INVALID, "cursor"),
    ("RequeueDeadLetters", pb.RequeueDeadLettersRequest(topic=""), INVALID, "topic"),
    ("PurgeDeadLetters", pb.PurgeDeadLettersRequest(topic="t", ids=["bad id"]), INVALID, "ids"),
    ("GetStats", pb.GetStatsRequest(topics=["no spaces"]), INVALID, "topics"),
]


@pytest.mark.parametrize(
    ("method", "request_", "code", "text"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)]
)
async def test_bad_input_is_refused_and_changes_nothing(
    stub, redis_client: redis.Redis, method: str, request_: object, code: grpc.StatusCode, text: str
) -> None:
    await stub.Enqueue(pb.EnqueueRequest(topic="t", payload="existing", id="x"))
    before = snapshot(redis_client)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await getattr(stub, method)(request_)
    assert err.value.code() == code
    assert text in (err.value.details() or "")
    assert snapshot(redis_client) == before


async def test_running_task_cannot_be_deleted(stub) -> None:
    await stub.Enqueue(pb.EnqueueRequest(topic="t", payload="p", id="r1"))
    await stub.Retrieve(pb.RetrieveRequest(topic="t"))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Delete(pb.DeleteRequest(id="r1"))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_stale_token_is_failed_precondition(stub) -> None:
    await stub.Enqueue(pb.EnqueueRequest(topic="t", payload="p", id="s1"))
    (task,) = (await stub.Retrieve(pb.RetrieveRequest(topic="t"))).tasks
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Ack(pb.AckRequest(id="s1", lease_token=task.lease_token + "x"))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "lease token" in (err.value.details() or "")


async def test_a_server_made_id_cannot_move_to_another_topic(stub) -> None:
    made = (await stub.Enqueue(pb.EnqueueRequest(topic="t", payload="p"))).id
    again = await stub.Enqueue(pb.EnqueueRequest(topic="t", payload="p", id=made))
    assert again.id == made and again.duplicate
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Enqueue(pb.EnqueueRequest(topic="u", payload="p", id=made))
    assert err.value.code() == INVALID and "was made for topic" in (err.value.details() or "")


async def test_the_latest_allowed_due_time_reads_back(stub) -> None:
    """Ten years ahead is accepted and GetTask answers it (2^63-1 used to make it UNKNOWN)."""
    at = int(time.time() * 1000) + validation.MAX_DELAY_MS - 60_000
    await stub.Enqueue(pb.EnqueueRequest(topic="t", payload="p", id="far", execute_at_ms=at))
    reply = await stub.GetTask(pb.GetTaskRequest(id="far"))
    assert reply.task.execute_time_ms == at


@pytest.mark.parametrize(
    "body",
    [b"\xff\xff\xff", b"\x0a\x02\xff\xfe"],  # corrupt wire format; topic with invalid UTF-8
    ids=["corrupt", "bad-utf8"],
)
async def test_undecodable_request_is_invalid_argument_without_a_traceback(
    server, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture, body: bytes
) -> None:
    before = snapshot(redis_client)
    async with grpc.aio.insecure_channel(server.address) as channel:
        for method in ("DelayQueueService/Enqueue", "ScheduleService/CreateSchedule"):
            call = channel.unary_unary(f"/api.queue.{method}")
            with caplog.at_level(logging.WARNING), pytest.raises(grpc.aio.AioRpcError) as err:
                await call(body)
            assert err.value.code() == INVALID
            assert "not a valid" in (err.value.details() or "")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert snapshot(redis_client) == before


@pytest.mark.parametrize("method", ["EnqueueStream", "Work"])
async def test_an_undecodable_stream_message_ends_the_stream_invalid_argument(
    server, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture, method: str
) -> None:
    before = snapshot(redis_client)

    async def messages() -> AsyncIterator[bytes]:
        yield b"\x0a\x02\xff\xfe"
        await asyncio.sleep(5)  # the server ends the call first

    async with grpc.aio.insecure_channel(server.address) as channel:
        call = channel.stream_stream(f"/api.queue.DelayQueueService/{method}")
        with caplog.at_level(logging.WARNING), pytest.raises(grpc.aio.AioRpcError) as err:
            async for _ in call(messages()):
                pass
    assert err.value.code() == INVALID
    assert "not a valid" in (err.value.details() or "")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert snapshot(redis_client) == before
