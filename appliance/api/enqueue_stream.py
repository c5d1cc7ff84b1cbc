"""EnqueueStream: many Enqueue calls on one gRPC stream. Each message carries calls with their
own correlation id (`seq`); each call is admitted exactly as a unary Enqueue (producing.admit,
the per-message rate limit of interceptors.rate_check) and answered with its own result or
status once its task is written to Redis. The admitted calls of one message are written in one
store.enqueue. Imports grpc and the store's interface; must not import redis.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence

import grpc

from appliance import metrics
from appliance.api import producing
from appliance.api.interceptors import current_principal, rate_check, topic_owner
from appliance.config import Settings
from appliance.errors import AtpError, RateLimited, Unavailable
from appliance.model import NewTask
from appliance.proto import queue_pb2 as pb
from appliance.proto.status import status_of
from appliance.store import Store

METHOD = "EnqueueStream"
RATE_LIMITED = RateLimited("rate limit exceeded")  # the unary guard's words (interceptors)
SHUTTING_DOWN = Unavailable("the server is shutting down: not enqueued, send it again")
CLOSING = pb.EnqueueStreamResponse(closing=True)
MAX_AHEAD = 4  # messages read and not yet answered, per stream
Reply = pb.EnqueueStreamResponse | asyncio.Future[pb.EnqueueStreamResponse]


class EnqueueStreamHandler:
    """Serves EnqueueStream for one QueueServicer, and ends its streams cleanly on shutdown."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.closing = False
        self._open: set[asyncio.Queue[Reply | None]] = set()  # each open stream's replies

    def close(self) -> None:
        """Shutdown: each stream answers the messages it has read, then says `closing`,
        answers later calls with UNAVAILABLE, and ends with OK when the client closes its side
        (docs/adr/0007-enqueue-stream.md). Nothing is interrupted: a read cancelled in grpc
        Python ends the stream's receiving side for good."""
        self.closing = True
        for replies in list(self._open):
            replies.put_nowait(CLOSING)

    async def serve(
        self, requests: AsyncIterator[pb.EnqueueStreamRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.EnqueueStreamResponse]:
        """One reply per request message, with one result per call, until the client closes
        its side. Messages are answered in order; results carry their seq. A reader admits
        the next message while the previous one's Redis write is on its way."""
        await context.send_initial_metadata(())  # accepted: the client may write
        replies: asyncio.Queue[Reply | None] = asyncio.Queue()
        self._open.add(replies)
        if self.closing:
            replies.put_nowait(CLOSING)
        ahead = asyncio.Semaphore(MAX_AHEAD)
        reader = asyncio.get_running_loop().create_task(
            self._read(requests, context, replies, ahead)
        )
        try:
            while (reply := await replies.get()) is not None:
                if reply is CLOSING:
                    yield reply
                    continue
                yield (await reply) if isinstance(reply, asyncio.Future) else reply
                ahead.release()
            await reader  # its error, if it failed
        finally:
            self._open.discard(replies)
            reader.cancel()

    async def _read(
        self,
        requests: AsyncIterator[pb.EnqueueStreamRequest],
        context: grpc.aio.ServicerContext,
        replies: asyncio.Queue[Reply | None],
        ahead: asyncio.Semaphore,
    ) -> None:
        """Queue each message's reply (being made) in order, refusals once closing; None at
        the end (the client closed its side). At most MAX_AHEAD replies wait to be sent: a
        client that writes without reading is held by flow control."""
        stream_trace = producing.traceparent(context)
        allow = rate_check()
        try:
            while True:
                await ahead.acquire()
                request = await anext(requests, None)
                if request is None:
                    return
                if self.closing:  # read after close() queued CLOSING: not enqueued
                    results = [_refused(call.seq, SHUTTING_DOWN) for call in request.calls]
                    replies.put_nowait(pb.EnqueueStreamResponse(results=results))
                else:
                    reply = self._reply(request.calls, stream_trace, allow)
                    replies.put_nowait(asyncio.ensure_future(reply))
        finally:
            replies.put_nowait(None)

    async def _reply(
        self, calls: Sequence[pb.EnqueueCall], stream_trace: str, allow: Callable[[], bool]
    ) -> pb.EnqueueStreamResponse:
        started = time.perf_counter()
        results = await self.answer(calls, stream_trace, allow)
        _count(results, time.perf_counter() - started)
        return pb.EnqueueStreamResponse(results=results)

    async def answer(
        self, calls: Sequence[pb.EnqueueCall], stream_trace: str, allow: Callable[[], bool]
    ) -> list[pb.EnqueueStreamResult]:
        """A result per call: admitted calls enqueued together, refused ones with their
        status, every one as a unary Enqueue of the same request would have ended."""
        results: list[pb.EnqueueStreamResult] = []
        admitted: list[tuple[pb.EnqueueStreamResult, NewTask, bool]] = []
        principal, settings, valid = current_principal(), self.settings, producing.valid_traceparent
        for call in calls:
            result = pb.EnqueueStreamResult(seq=call.seq)
            results.append(result)
            try:
                if not allow():
                    raise RATE_LIMITED
                trace = (call.traceparent and valid(call.traceparent)) or stream_trace
                task, client_id = producing.admit(call.request, settings, trace, principal)
            except AtpError as exc:
                _refuse(result, exc)
                continue
            admitted.append((result, task, client_id))
        cap = self.settings.batch_max
        for start in range(0, len(admitted), cap):
            await self._enqueue(admitted[start : start + cap])
        return results

    async def _enqueue(self, admitted: list[tuple[pb.EnqueueStreamResult, NewTask, bool]]) -> None:
        tasks = [task for _, task, _ in admitted]
        try:
            client_ids = [client_id for _, _, client_id in admitted]
            written = await self.store.enqueue(tasks, client_ids, topic_owner())
        except AtpError as exc:  # Redis unreachable: each of these calls fails as unary would
            for result, _, _ in admitted:
                _refuse(result, exc)
            return
        producing.count_enqueued(tasks, written)
        for (result, _, _), outcome in zip(admitted, written, strict=True):
            result.id = outcome.id
            result.duplicate = not outcome.created


def _refuse(result: pb.EnqueueStreamResult, exc: AtpError) -> None:
    result.code = status_of(exc).value[0]
    result.message = str(exc)


def _refused(seq: int, exc: AtpError) -> pb.EnqueueStreamResult:
    result = pb.EnqueueStreamResult(seq=seq)
    _refuse(result, exc)
    return result


def _count(results: list[pb.EnqueueStreamResult], elapsed_s: float) -> None:
    """atp_grpc_requests counts each call of the stream as one EnqueueStream request."""
    codes: dict[int, int] = {}
    for r in results:
        codes[r.code] = codes.get(r.code, 0) + 1
    for code, count in codes.items():
        metrics.GRPC_REQUESTS.labels(METHOD, _NAME_OF[code]).inc(count)
    metrics.GRPC_LATENCY.labels(METHOD).observe(elapsed_s)


_NAME_OF = {c.value[0]: c.name for c in grpc.StatusCode}
