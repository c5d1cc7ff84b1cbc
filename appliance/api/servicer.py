"""DelayQueueService: converts protobuf <-> model and calls the store; nothing else.

Errors are domain exceptions turned into status codes by one decorator (proto/status.py).
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc

from appliance import metrics, validation
from appliance.api import console_rpcs, convert, producing
from appliance.api.enqueue_stream import EnqueueStreamHandler
from appliance.api.interceptors import current_principal, topic_owner
from appliance.api.shares import Shares, Slot
from appliance.api.work_stream import (
    End,
    WorkStream,
    count_delivered,
    open_stream,
    reply_budget,
)
from appliance.config import Settings
from appliance.errors import AtpError, InvalidArgument, PermissionDenied, RateLimited
from appliance.keys import topic_of_token
from appliance.proto import queue_pb2 as pb
from appliance.proto import queue_pb2_grpc as pb_grpc
from appliance.proto.status import status_of
from appliance.store import Store
from appliance.store.browse import Browse
from appliance.store.longpoll import claim_within
from appliance.store.wakeups import Wakeups
from appliance.store.workers import WorkerRegistry

log = logging.getLogger(__name__)
Req = TypeVar("Req")
Resp = TypeVar("Resp")
Handler = Callable[[Any, Req, grpc.aio.ServicerContext], Awaitable[Resp]]


def rpc(method: Handler[Req, Resp]) -> Handler[Req, Resp]:
    """Map domain errors to their status code with the error's message."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Req, context: grpc.aio.ServicerContext) -> Resp:
        try:
            return await method(self, request, context)
        except AtpError as exc:
            await context.abort(status_of(exc), str(exc))
            raise  # unreachable: abort raises

    return wrapper


class QueueServicer(pb_grpc.DelayQueueServiceServicer):
    def __init__(self, store: Store, wakeups: Wakeups, settings: Settings) -> None:
        self.store = store
        self.wakeups = wakeups
        self.settings = settings
        self.shares = Shares(settings.max_long_polls)  # fair long-poll slots per token
        self.stream_shares = Shares(settings.max_work_streams, "worker streams", "max_work_streams")
        self.stopping = asyncio.Event()  # the server drains: worker streams end, leases kept
        self._serving: set[asyncio.Task[Any]] = set()  # the calls of open worker streams
        self._afterwards: set[asyncio.Task[None]] = set()  # stream endings still settling
        self._finished = False  # finish() ran: a stream ending later keeps its leases
        self.enqueue_stream = EnqueueStreamHandler(store, settings)
        self.browse = Browse(store)
        self.workers = WorkerRegistry(store)

    @property
    def _lease_bounds(self) -> tuple[int, int]:
        """A lease's default and cap (ms)."""
        return self.settings.visibility_timeout_ms, self.settings.max_visibility_timeout_ms

    @property
    def long_polls(self) -> int:
        """Retrieve calls waiting right now."""
        return self.shares.used

    # -- producers -------------------------------------------------------------------------

    @rpc
    async def Enqueue(
        self, request: pb.EnqueueRequest, context: grpc.aio.ServicerContext
    ) -> pb.EnqueueResponse:
        task, client_id = producing.admit(request, self.settings, producing.traceparent(context))
        (result,) = await self.store.enqueue([task], [client_id], topic_owner())
        if result.created:
            metrics.ENQUEUED.labels(task.topic).inc()
        return pb.EnqueueResponse(success=True, id=result.id, duplicate=not result.created)

    @rpc
    async def EnqueueBatch(
        self, request: pb.EnqueueBatchRequest, context: grpc.aio.ServicerContext
    ) -> pb.EnqueueBatchResponse:
        validation.batch_length(len(request.requests), self.settings.batch_max, "requests")
        trace = producing.traceparent(context)
        tasks, client_ids = [], []
        for n, req in enumerate(request.requests):
            try:
                task, client_id = producing.admit(req, self.settings, trace)
            except PermissionDenied:
                raise
            except AtpError as exc:
                raise type(exc)(f"requests[{n}]: {exc}") from exc
            tasks.append(task)
            client_ids.append(client_id)
        results = await self.store.enqueue(tasks, client_ids, topic_owner())
        producing.count_enqueued(tasks, results)
        return pb.EnqueueBatchResponse(
            responses=[
                pb.EnqueueResponse(success=True, id=r.id, duplicate=not r.created) for r in results
            ]
        )

    async def EnqueueStream(
        self,
        requests: AsyncIterator[pb.EnqueueStreamRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[pb.EnqueueStreamResponse]:
        """Enqueue calls on one stream, each answered on its own (api/enqueue_stream.py)."""
        async for reply in self.enqueue_stream.serve(requests, context):
            yield reply

    @rpc
    async def Delete(
        self, request: pb.DeleteRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteResponse:
        task_id, topic = validation.task_id(request.id), _optional_topic(request.topic)
        topic, canceled = await self.store.cancel(task_id, topic, current_principal().topics)
        if canceled:  # a task is counted once, however often it is deleted
            metrics.CANCELED.labels(topic).inc()
        return pb.DeleteResponse(success=True)

    @rpc
    async def GetTask(
        self, request: pb.GetTaskRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetTaskResponse:
        task_id, topic = validation.task_id(request.id), _optional_topic(request.topic)
        task = await self.store.get(task_id, topic, current_principal().topics)
        return pb.GetTaskResponse(
            task=convert.task_to_pb(task),
            state=convert.STATE_TO_PB[task.state],
            last_error=task.last_error,
            result=task.result,
        )

    # -- workers ---------------------------------------------------------------------------

    @rpc
    async def Retrieve(
        self, request: pb.RetrieveRequest, context: grpc.aio.ServicerContext
    ) -> pb.RetrieveResponse:
        topic = _topic(request.topic)
        limit = validation.batch_size(request.batch_size, self.settings.batch_max)
        lease = validation.lease_ms(request.visibility_timeout_ms, *self._lease_bounds)
        wait_s = validation.wait_ms(request.wait_ms, self.settings.max_wait_ms) / 1000
        budget = reply_budget(request.max_response_bytes, self.settings, "max_response_bytes")
        who = f"retrieve {current_principal().name or '-'} {context.peer()}"
        if wait_s <= 0:
            claim = await self.store.claim(topic, limit, lease, max_bytes=budget, who=who)
        else:
            with self.shares.hold(current_principal().name) as slot:
                claim = await claim_within(
                    self.store, self.wakeups, topic, limit, lease, wait_s, slot, budget, who
                )
        count_delivered(topic, claim)
        return pb.RetrieveResponse(
            tasks=convert.leased_to_pb(topic, claim.rows), now_ms=claim.now_ms
        )

    async def Work(
        self, request_iterator: AsyncIterator[pb.WorkRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.WorkResponse]:
        """The worker stream (api/work_stream.py). What it still holds when it ends is settled
        in a task of its own, so a cancelled call (the worker vanished) still releases it."""
        try:  # a fair share per token (api/shares.py); a slot taken back ends the stream
            slot = self.stream_shares.acquire(current_principal().name)
        except RateLimited as exc:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
        try:
            subscription = await open_stream(request_iterator, context, self.settings)
        except BaseException:
            self.stream_shares.release(slot)
            raise
        stream = WorkStream(self.store, self.wakeups, self.settings, subscription, self.stopping)
        stream.peer = context.peer()
        serving = asyncio.current_task()
        assert serving is not None  # grpc.aio runs each call in a task of its own
        self._serving.add(serving)
        end = functools.partial(self._end_stream, stream, slot, serving)
        context.add_done_callback(end)  # also if the generator is left suspended (halt())
        slot.on_evict = functools.partial(stream.close, End.SERVER_STOP)  # the worker reconnects
        if slot.evicted:
            slot.evict()
        try:
            async for message in stream.serve(request_iterator):
                yield message
        finally:
            end()

    def _end_stream(
        self, stream: WorkStream, slot: Slot, serving: asyncio.Task[Any], *_: object
    ) -> None:
        """The call ended (its `finally`, or gRPC's done callback: the first one counts): stop
        the stream's loops, give back its slot, settle what it held in a task of its own."""
        if serving not in self._serving:
            return
        self._serving.discard(serving)
        stream.halt()
        self.stream_shares.release(slot)
        if not self._finished:  # else its leases stay, as on a stop: the worker adopts them
            ending = asyncio.create_task(stream.settle_held(), name="atp-work-end")
            self._afterwards.add(ending)
            ending.add_done_callback(self._afterwards.discard)

    async def finish(self, timeout_s: float = 5.0) -> None:
        """Wait for the endings of worker streams still settling what they held, then end
        what is left. A call the server's stop cancelled reaches its `finally` (which starts
        its ending) only on a later turn of the loop, so the open calls are waited for first;
        a call whose generator is only closed later (by the garbage collector) starts no
        ending at all: its leases are kept, as on any stop, and its registry entry expires."""
        deadline = time.monotonic() + timeout_s  # the loop's clock (asyncio uses monotonic)
        for pending in (self._serving, self._afterwards):
            left = deadline - time.monotonic()
            if pending and left > 0:
                await asyncio.wait(set(pending), timeout=left)
        self._finished = True
        late = set(self._afterwards)  # stuck on an unreachable Redis: the leases run out
        for ending in late:
            ending.cancel()
        await asyncio.gather(*late, return_exceptions=True)

    @rpc
    async def Ack(
        self, request: pb.AckRequest, context: grpc.aio.ServicerContext
    ) -> pb.AckResponse:
        task_id, token = _lease(request.id, request.lease_token)
        result = validation.payload(request.result, self.settings.payload_max_bytes)
        await self.store.ack(task_id, token, result)
        metrics.ACKED.labels(topic_of_token(token)).inc()
        return pb.AckResponse(success=True)

    @rpc
    async def AckBatch(
        self, request: pb.AckBatchRequest, context: grpc.aio.ServicerContext
    ) -> pb.AckBatchResponse:
        validation.batch_length(len(request.acks), self.settings.batch_max, "acks")
        pairs = [_lease(a.id, a.lease_token, f"acks[{i}].") for i, a in enumerate(request.acks)]
        limit = self.settings.payload_max_bytes
        results = [validation.payload(a.result, limit) for a in request.acks]
        outcome = await self.store.ack_many(pairs, results)
        acked = collections.Counter(
            topic_of_token(token) for (_, token), e in zip(pairs, outcome, strict=True) if e is None
        )
        for topic, count in acked.items():
            metrics.ACKED.labels(topic).inc(count)
        return pb.AckBatchResponse(
            success=[e is None for e in outcome],
            errors=["" if e is None else str(e) for e in outcome],
        )

    @rpc
    async def Nack(
        self, request: pb.NackRequest, context: grpc.aio.ServicerContext
    ) -> pb.NackResponse:
        validation.non_negative(request.retry_after_ms, "retry_after_ms", validation.MAX_DELAY_MS)
        task_id, token = _lease(request.id, request.lease_token)
        error, topic = validation.error_text(request.error), topic_of_token(token)
        if request.release:
            result = await self.store.release(task_id, token, request.retry_after_ms, error)
            metrics.RELEASED.labels(topic).inc()
            return pb.NackResponse(success=True, next_execute_time_ms=result.next_execute_time_ms)
        result = await self.store.nack(
            task_id, token, error, request.retry_after_ms, request.dead_letter
        )
        metrics.NACKED.labels(topic).inc()
        if result.dead_lettered:
            metrics.DEAD_LETTERED.labels(topic).inc()
        return pb.NackResponse(
            success=True,
            dead_lettered=result.dead_lettered,
            next_execute_time_ms=result.next_execute_time_ms,
        )

    @rpc
    async def ExtendLease(
        self, request: pb.ExtendLeaseRequest, context: grpc.aio.ServicerContext
    ) -> pb.ExtendLeaseResponse:
        lease = validation.lease_ms(request.visibility_timeout_ms, *self._lease_bounds)
        deadline = await self.store.extend(*_lease(request.id, request.lease_token), lease)
        return pb.ExtendLeaseResponse(success=True, lease_deadline_ms=deadline)

    # -- dead letters and stats ------------------------------------------------------------

    @rpc
    async def ListDeadLetters(
        self, request: pb.ListDeadLettersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListDeadLettersResponse:
        topic = _topic(request.topic)
        limit = validation.dead_letter_limit(request.limit)
        validation.dead_letter_cursor(request.cursor)
        if request.HasField("filter"):
            wanted = console_rpcs.dead_filter(request.filter)
            letters, cursor = await self.browse.dead(topic, wanted, limit, request.cursor)
        else:
            letters, cursor = await self.store.list_dead(topic, limit, request.cursor)
        return pb.ListDeadLettersResponse(
            dead_letters=[
                pb.DeadLetter(
                    task=convert.task_to_pb(d.task),
                    last_error=d.task.last_error,
                    dead_at_ms=d.dead_at_ms,
                )
                for d in letters
            ],
            next_cursor=cursor,
        )

    @rpc
    async def RequeueDeadLetters(
        self, request: pb.RequeueDeadLettersRequest, context: grpc.aio.ServicerContext
    ) -> pb.RequeueDeadLettersResponse:
        topic = _topic(request.topic)
        ids = validation.task_ids(request.ids)
        payload = request.payload if request.HasField("payload") else None
        if payload is not None:
            if len(ids) != 1:
                raise InvalidArgument("payload: requeue exactly one id with a new payload")
            validation.payload(payload, self.settings.payload_max_bytes)
        count = await self.store.requeue_dead(topic, ids, payload)
        return pb.RequeueDeadLettersResponse(requeued=count)

    @rpc
    async def PurgeDeadLetters(
        self, request: pb.PurgeDeadLettersRequest, context: grpc.aio.ServicerContext
    ) -> pb.PurgeDeadLettersResponse:
        topic = _topic(request.topic)
        count = await self.store.purge_dead(topic, validation.task_ids(request.ids))
        return pb.PurgeDeadLettersResponse(purged=count)

    # -- the console's reads and bulk actions (api/console_rpcs.py) --------------------------

    @rpc
    async def GetTaskHistory(
        self, request: pb.GetTaskHistoryRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetTaskHistoryResponse:
        return await console_rpcs.get_task_history(
            self.store, request, _optional_topic(request.topic)
        )

    @rpc
    async def ListTasks(
        self, request: pb.ListTasksRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListTasksResponse:
        return await console_rpcs.list_tasks(self.browse, request, _topic(request.topic))

    @rpc
    async def RedriveDeadLetters(
        self, request: pb.RedriveDeadLettersRequest, context: grpc.aio.ServicerContext
    ) -> pb.RedriveDeadLettersResponse:
        return await console_rpcs.redrive(self.browse, request, _topic(request.topic))

    @rpc
    async def ListWorkers(
        self, request: pb.ListWorkersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListWorkersResponse:
        return await console_rpcs.list_workers(self.workers)

    @rpc
    async def GetStats(
        self, request: pb.GetStatsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetStatsResponse:
        topics = validation.stats_topics(request.topics)
        allowed = current_principal().topics
        for topic in topics:
            current_principal().check_topic(topic)
        next_token = ""
        if not topics:
            size, after = validation.stats_page(request.page_size, request.page_token)
            every = sorted(allowed) if allowed is not None else await self.store.topics()
            topics, next_token = convert.page_of(every, size, after)
            if not topics:
                return pb.GetStatsResponse(now_ms=await self.store.now_ms())
        now, stats = await self.store.stats(topics)
        return pb.GetStatsResponse(
            topics=[convert.stats_to_pb(s) for s in stats], now_ms=now, next_page_token=next_token
        )


def _lease(task_id: str, token: str, field: str = "") -> tuple[str, str]:
    """A validated (id, lease token) whose topic (named by the token) the caller may use; a
    token atp cannot have handed out is bad input (INVALID_ARGUMENT), not a stale lease."""
    task_id, token = validation.task_id(task_id), validation.lease_token(token)
    try:
        topic = topic_of_token(token)
    except AtpError:
        raise InvalidArgument(f"{field}lease_token is not one atp handed out") from None
    current_principal().check_topic(topic)
    return task_id, token


def _topic(value: str) -> str:
    """A validated topic the caller may use."""
    topic = validation.topic(value)
    current_principal().check_topic(topic)
    return topic


def _optional_topic(value: str) -> str:
    """A validated topic, or "" when none was given. Not checked against the caller's topics:
    the store answers NOT_FOUND outside them, as for an id that does not exist (ADR 0006)."""
    return validation.topic(value) if value else ""
