"""rpc Work against the real server and Redis, through the generated stub: subscribe, pushes
under the credit window, settles by seq, leases kept alive, a lost stream's tasks released at
once, goodbye, adoption after a reconnect, message size bounds."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import redis

from appliance.keys import Keys
from appliance.proto import queue_pb2 as pb
from appliance.proto import queue_pb2_grpc as pb_grpc
from tests.conftest import on_both

KEYS = Keys("atp")


class Stream:
    """One Work call driven by hand."""

    def __init__(self, stub: pb_grpc.DelayQueueServiceStub) -> None:
        self.call: Any = stub.Work()
        self.seq = 0
        self.inbox: asyncio.Queue[Any] = asyncio.Queue()
        self.reader: asyncio.Task[None] | None = None
        self.sizes: list[int] = []  # of every message received
        self.skipped: list[pb.WorkResponse] = []

    async def _read(self) -> None:
        """Read in a task of its own: cancelling a read would cancel the whole call."""
        while True:
            try:
                message = await self.call.read()
            except grpc.aio.AioRpcError as exc:
                await self.inbox.put(exc)
                return
            if message is grpc.aio.EOF:
                await self.inbox.put(message)
                return
            self.sizes.append(message.ByteSize())
            for field, value in message.ListFields():  # one part at a time for next()
                part = pb.WorkResponse()
                getattr(part, field.name).CopyFrom(value)
                await self.inbox.put(part)

    async def subscribe(self, *topics: str, credits: int = 10, lease_ms: int = 0, **kw: Any) -> Any:
        sub = pb.WorkSubscribe(
            topics=[pb.WorkTopic(topic=t) for t in topics],
            credits=credits,
            visibility_timeout_ms=lease_ms,
            **kw,
        )
        await self.call.write(pb.WorkRequest(subscribe=sub))
        self.reader = asyncio.create_task(self._read())
        return await self.next("welcome")

    async def next(self, kind: str, within: float = 5.0) -> Any:
        """The next part of `kind`; parts of other kinds wait for their own next()."""
        for n, part in enumerate(self.skipped):
            if part.HasField(kind):
                del self.skipped[n]
                return getattr(part, kind)
        deadline = time.monotonic() + within
        while True:
            left = deadline - time.monotonic()
            try:
                message = await asyncio.wait_for(self.inbox.get(), max(left, 0.001))
            except TimeoutError:
                raise AssertionError(f"no {kind} message within {within} s") from None
            if isinstance(message, Exception):
                raise message
            assert message is not grpc.aio.EOF, f"stream ended waiting for {kind}"
            if message.HasField(kind):
                return getattr(message, kind)
            self.skipped.append(message)

    async def eof(self) -> bool:
        while True:
            message = await asyncio.wait_for(self.inbox.get(), 5)
            if message is grpc.aio.EOF:
                return True

    async def tasks(self, count: int, within: float = 5.0) -> list[pb.Task]:
        got: list[pb.Task] = []
        while len(got) < count:
            got += (await self.next("delivery", within)).tasks
        return got

    async def settle(self, *settles: pb.WorkSettle) -> list[pb.WorkSettled]:
        for s in settles:
            self.seq += 1
            s.seq = self.seq
        await self.call.write(pb.WorkRequest(settle=pb.WorkSettleBatch(settles=settles)))
        answers: list[pb.WorkSettled] = []
        while len(answers) < len(settles):
            answers += (await self.next("settled")).settled
        return answers


def ack(task: pb.Task) -> pb.WorkSettle:
    return pb.WorkSettle(kind=pb.ACK, id=task.id, lease_token=task.lease_token)


@pytest.fixture
async def stream(stub: pb_grpc.DelayQueueServiceStub) -> AsyncIterator[Stream]:
    s = Stream(stub)
    yield s
    s.call.cancel()


async def enqueue(stub: pb_grpc.DelayQueueServiceStub, topic: str, n: int, **kw: Any) -> None:
    requests = [pb.EnqueueRequest(topic=topic, payload=f"p{i}", **kw) for i in range(n)]
    await stub.EnqueueBatch(pb.EnqueueBatchRequest(requests=requests))


def state(r: redis.Redis, topic: str, task_id: str) -> dict[bytes, bytes]:
    return r.hgetall(KEYS.topic(topic).task(task_id))  # type: ignore[return-value]


@on_both
async def test_pushes_due_tasks_within_the_window_and_more_as_settles_free_credits(
    stub: Any, stream: Stream
) -> None:
    welcome = await stream.subscribe("t", credits=3)
    assert welcome.now_ms > 0 and welcome.visibility_timeout_ms == 30_000
    await enqueue(stub, "t", 5)
    first = await stream.tasks(3)
    assert len({t.lease_token for t in first}) == 3
    with pytest.raises(AssertionError, match="no delivery"):
        await stream.next("delivery", within=0.3)  # the window is full
    answers = await stream.settle(ack(first[0]), ack(first[1]))
    assert [a.success for a in answers] == [True, True]
    rest = await stream.tasks(2)
    assert {t.id for t in first + rest} == {t.id for t in first} | {t.id for t in rest}
    assert len({t.id for t in first + rest}) == 5


@on_both
async def test_a_task_enqueued_later_is_pushed_when_due(stub: Any, stream: Stream) -> None:
    await stream.subscribe("t")
    started = time.monotonic()
    await enqueue(stub, "t", 1, delay_ms=300)
    (task,) = await stream.tasks(1)
    waited = time.monotonic() - started
    assert 0.28 <= waited < 1.0
    assert task.lease_deadline_ms > task.execute_time_ms


async def test_settle_errors_come_back_by_seq_and_change_nothing(
    stub: Any, stream: Stream, redis_client: redis.Redis
) -> None:
    await stream.subscribe("t")
    await enqueue(stub, "t", 1)
    (task,) = await stream.tasks(1)
    stale = pb.WorkSettle(kind=pb.ACK, id=task.id, lease_token=task.lease_token[:-1] + "#")
    bad = pb.WorkSettle(kind=pb.NACK, id=task.id, lease_token="nonsense")
    answers = await stream.settle(stale, bad)
    assert [(a.success, a.code) for a in answers] == [
        (False, "FAILED_PRECONDITION"),
        (False, "FAILED_PRECONDITION"),
    ]
    assert state(redis_client, "t", task.id)[b"state"] == b"RUNNING"
    nack = pb.WorkSettle(kind=pb.NACK, id=task.id, lease_token=task.lease_token, error="boom")
    (answer,) = await stream.settle(nack)
    assert answer.success and not answer.dead_lettered and answer.next_execute_time_ms > 0
    assert state(redis_client, "t", task.id)[b"err"] == b"boom"


async def test_bad_subscriptions_are_refused(stub: Any) -> None:
    for sub, match in [
        (pb.WorkSubscribe(credits=1), "topics"),
        (pb.WorkSubscribe(topics=[pb.WorkTopic(topic="t")], credits=0), "credits"),
        (pb.WorkSubscribe(topics=[pb.WorkTopic(topic="bad topic")], credits=1), "topic"),
        (
            pb.WorkSubscribe(topics=[pb.WorkTopic(topic="t")], credits=1, max_message_bytes=1000),
            "max_message_bytes",
        ),
    ]:
        call = stub.Work()
        await call.write(pb.WorkRequest(subscribe=sub))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call.read()
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert match in (refused.value.details() or "")


async def test_the_server_keeps_the_leases_of_a_live_stream(
    stub: Any, stream: Stream, redis_client: redis.Redis
) -> None:
    await stream.subscribe("t", lease_ms=600)
    await enqueue(stub, "t", 1)
    (task,) = await stream.tasks(1)
    await asyncio.sleep(1.5)  # 2.5 leases: the server renewed it
    record = state(redis_client, "t", task.id)
    assert record[b"state"] == b"RUNNING" and record[b"token"].decode() == task.lease_token
    (answer,) = await stream.settle(ack(task))
    assert answer.success


@on_both
async def test_a_lost_stream_releases_its_tasks_at_once_with_the_attempt_counted(
    stub: Any, redis_client: redis.Redis
) -> None:
    stream = Stream(stub)
    await stream.subscribe("t")
    await enqueue(stub, "t", 3)
    tasks = await stream.tasks(3)
    stream.call.cancel()  # the worker vanished
    deadline = time.monotonic() + 1.0
    while any(state(redis_client, "t", t.id)[b"state"] != b"PENDING" for t in tasks):
        assert time.monotonic() < deadline, "not released within 1 s"
        await asyncio.sleep(0.02)
    for t in tasks:
        record = state(redis_client, "t", t.id)
        assert record[b"attempt"] == b"1" and record[b"err"].startswith(b"worker lost")
    again = Stream(stub)
    await again.subscribe("t")
    redelivered = await again.tasks(3)
    assert {t.attempt for t in redelivered} == {2}
    again.call.cancel()


@pytest.mark.parametrize("lost_before_stop", [False, True])
async def test_stop_returns_only_after_every_stream_ending(
    server: Any, stub: Any, redis_client: redis.Redis, lost_before_stop: bool
) -> None:
    """The worker vanishes just as the server stops. A call the stop cancels reaches its
    ending on a later turn of the loop; stop() waits for it all the same, or the release
    would run into a closed store and its task be destroyed pending. Lost well before the
    stop: released. At the same moment, either end may come first: released, or kept for
    the worker to adopt; never half of each."""
    stream = Stream(stub)
    await stream.subscribe("t")
    await enqueue(stub, "t", 2)
    tasks = await stream.tasks(2)
    stream.call.cancel()
    if lost_before_stop:
        await asyncio.sleep(0.2)
    await server.stop(0.5)
    assert [t for t in asyncio.all_tasks() if t.get_name() == "atp-work-end"] == []
    states = {state(redis_client, "t", t.id)[b"state"] for t in tasks}
    assert states == {b"PENDING"} if lost_before_stop else states in ({b"PENDING"}, {b"RUNNING"})


async def test_a_stream_cancelled_while_the_server_sends_releases_its_tasks_at_once(
    stub: Any, redis_client: redis.Redis
) -> None:
    """The worker stops reading, so the server's send waits on flow control with the stream's
    generator suspended at its `yield`, then vanishes. The call's end (gRPC's done callback or
    the generator's `finally`, whichever runs first; the cyclic garbage collector kept off)
    stops the lease renewals and releases what the stream held, within 1 s."""
    requests = [pb.EnqueueRequest(topic="t", payload="x" * 60_000) for _ in range(100)]
    for _ in range(3):
        await stub.EnqueueBatch(pb.EnqueueBatchRequest(requests=requests))
    call = stub.Work()
    subscribe = pb.WorkSubscribe(topics=[pb.WorkTopic(topic="t")], credits=60)
    await call.write(pb.WorkRequest(subscribe=subscribe))
    assert (await call.read()).HasField("welcome")
    running = KEYS.topic("t").running
    leased, deadline = -1, time.monotonic() + 5
    while (now := redis_client.zcard(running)) != leased or not now:  # until pushing stops:
        leased = now  # the server's send waits on the window the worker does not read
        assert time.monotonic() < deadline, "pushing never stopped"
        await asyncio.sleep(0.3)
    gc.disable()
    try:
        call.cancel()
        deadline = time.monotonic() + 1.0
        while redis_client.zcard(KEYS.topic("t").running):
            assert time.monotonic() < deadline, "not released within 1 s"
            await asyncio.sleep(0.02)
    finally:
        gc.enable()


async def test_goodbye_then_half_close_releases_without_counting(
    stub: Any, redis_client: redis.Redis
) -> None:
    stream = Stream(stub)
    await stream.subscribe("t", credits=2)
    await enqueue(stub, "t", 4)
    first, second = await stream.tasks(2)
    await stream.call.write(pb.WorkRequest(goodbye=pb.WorkGoodbye()))
    (answer,) = await stream.settle(ack(first))  # settles go on after the goodbye
    assert answer.success
    with pytest.raises(AssertionError):
        await stream.next("delivery", within=0.3)  # nothing more is pushed
    await stream.call.done_writing()
    assert await stream.eof()
    await asyncio.sleep(0.1)
    record = state(redis_client, "t", second.id)
    assert record[b"state"] == b"PENDING" and record[b"attempt"] == b"0"


async def test_a_new_stream_adopts_held_leases(stub: Any, redis_client: redis.Redis) -> None:
    server_stream = Stream(stub)
    await server_stream.subscribe("t", lease_ms=800)
    await enqueue(stub, "t", 1)
    (task,) = await server_stream.tasks(1)
    second = Stream(stub)
    await second.subscribe("t", lease_ms=800)
    hold = pb.WorkSettle(kind=pb.HOLD, id=task.id, lease_token=task.lease_token)
    (answer,) = await second.settle(hold)
    assert answer.success and answer.lease_deadline_ms > task.lease_deadline_ms - 800
    stale = pb.WorkSettle(kind=pb.HOLD, id=task.id, lease_token=task.lease_token + "x")
    (refused,) = await second.settle(stale)
    assert refused.code == "FAILED_PRECONDITION"
    (done,) = await second.settle(ack(task))
    assert done.success
    server_stream.call.cancel()
    second.call.cancel()
    await asyncio.sleep(0.2)
    assert state(redis_client, "t", task.id)[b"state"] == b"SUCCEEDED"


async def test_pushes_never_exceed_the_workers_message_limit(
    stub: Any, stream: Stream, redis_client: redis.Redis
) -> None:
    big = "x" * 900_000
    requests = [pb.EnqueueRequest(topic="t", payload=big) for _ in range(6)]
    await stub.EnqueueBatch(pb.EnqueueBatchRequest(requests=requests))
    limit = 2 * 1024 * 1024 + 64 * 1024 + 100  # room for 2 such tasks, not 3
    await stream.subscribe("t", credits=6, max_message_bytes=limit)
    got = 0
    while got < 6:
        got += len((await stream.next("delivery")).tasks)
    assert max(stream.sizes) <= limit
    assert len(stream.sizes) >= 4  # the welcome, then at least 3 deliveries


async def test_unary_retrieve_leases_only_what_fits_in_the_reply(
    stub: Any, redis_client: redis.Redis
) -> None:
    """20 payloads of ~1 MiB in a batch of 20: a reply within 4 MiB, the rest left pending
    with no attempt used (it used to lease all 20, fail to send, and burn their retries)."""
    big = "x" * (1024 * 1024 - 1000)
    for _ in range(2):
        requests = [pb.EnqueueRequest(topic="t", payload=big) for _ in range(10)]
        await stub.EnqueueBatch(pb.EnqueueBatchRequest(requests=requests))
    reply = await stub.Retrieve(pb.RetrieveRequest(topic="t", batch_size=20))
    assert 1 <= len(reply.tasks) <= 4  # 4 fit in 4 MiB, not 20
    assert reply.ByteSize() <= 4 * 1024 * 1024
    assert reply.now_ms > 0
    assert redis_client.zcard(KEYS.topic("t").pending) == 20 - len(reply.tasks)
    assert redis_client.zcard(KEYS.topic("t").running) == len(reply.tasks)


async def test_a_server_without_a_watchdog_recovers_expired_leases(stub: Any) -> None:
    await enqueue(stub, "t", 1)
    (first,) = (await stub.Retrieve(pb.RetrieveRequest(topic="t", visibility_timeout_ms=200))).tasks
    again = await stub.Retrieve(pb.RetrieveRequest(topic="t", wait_ms=3000))
    assert [t.id for t in again.tasks] == [first.id]
    assert again.tasks[0].attempt == 2


async def test_a_ping_is_answered_by_a_heartbeat_with_its_seq(stream: Stream) -> None:
    welcome = await stream.subscribe("t")
    await stream.call.write(pb.WorkRequest(ping=pb.WorkPing(seq=41)))
    beat = await stream.next("heartbeat")
    assert beat.ping_seq == 41 and beat.now_ms >= welcome.now_ms
    with pytest.raises(AssertionError, match="no heartbeat"):
        await stream.next("heartbeat", within=1.5)  # none unasked


async def test_renewals_tell_the_worker_new_deadlines_and_revoked_leases(
    stub: Any, stream: Stream
) -> None:
    await stream.subscribe("t", lease_ms=600)
    await enqueue(stub, "t", 2)
    kept, taken = await stream.tasks(2)
    await stub.Ack(pb.AckRequest(id=taken.id, lease_token=taken.lease_token))  # settled elsewhere
    renewed = await stream.next("renewed", within=2)
    assert renewed.lease_deadline_ms > kept.lease_deadline_ms
    assert list(renewed.revoked) == [taken.lease_token]
    later = await stream.next("renewed", within=2)
    assert later.lease_deadline_ms > renewed.lease_deadline_ms and not later.revoked


def script_calls(r: redis.Redis) -> int:
    return int(r.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))


async def test_an_ack_with_nothing_left_pending_is_one_round_trip(
    stub: Any, stream: Stream, redis_client: redis.Redis
) -> None:
    """The ack and the claim of the room it frees go in one pipeline; with nothing pending
    after it, neither the answer nor the push loop claims again (the hand-off's next step
    waits on none of that), and a task written later is still pushed at once."""
    await stream.subscribe("t")
    await enqueue(stub, "t", 1)
    (task,) = await stream.tasks(1)
    await asyncio.sleep(0.2)  # the push loop's look after the delivery is done
    before = script_calls(redis_client)
    (answer,) = await stream.settle(ack(task))
    assert answer.success
    await asyncio.sleep(0.3)  # a claim the ack set off would have run by now
    assert script_calls(redis_client) - before == 2  # ack.lua, claim.lua
    await enqueue(stub, "t", 1)
    assert len(await stream.tasks(1, within=1.0)) == 1
