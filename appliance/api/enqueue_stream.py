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
from typing import Any

import grpc

from appliance import metrics
from appliance.api import producing
from appliance.api._proto import queue_pb2 as pb
from appliance.api.interceptors import rate_check, topic_owner
from appliance.api.status import status_of
from appliance.config import Settings
from appliance.errors import AtpError, RateLimited, Unavailable
from appliance.model import NewTask
from appliance.store import Store

METHOD = "EnqueueStream"
RATE_LIMITED = RateLimited("rate limit exceeded")  # the unary guard's words (interceptors)
SHUTTING_DOWN = Unavailable("the server is shutting down: not enqueued, send it again")
INTERRUPTED = pb.EnqueueStreamRequest()  # close() ended a stream's wait for its next message


class EnqueueStreamHandler:
    """Serves EnqueueStream for one QueueServicer, and ends its streams cleanly on shutdown."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.closing = False
        self._waiting: set[asyncio.Task[Any]] = set()  # streams waiting for their next message

    def close(self) -> None:
        """Shutdown: each stream answers the message it is working on, then says `closing`,
        answers later calls with UNAVAILABLE, and ends with OK when the client closes its side
        (docs/adr/0007-enqueue-stream.md)."""
        self.closing = True
        for task in list(self._waiting):
            task.cancel()

    async def serve(
        self, requests: AsyncIterator[pb.EnqueueStreamRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.EnqueueStreamResponse]:
        """One reply per request message, with one result per call, until the client closes
        its side. Messages are answered in order; results carry their seq."""
        await context.send_initial_metadata(())  # accepted: the client may write
        stream_trace = producing.traceparent(context)
        allow = rate_check()
        said_closing = False
        while True:
            if self.closing and not said_closing:
                said_closing = True
                yield pb.EnqueueStreamResponse(closing=True)
            request = await self._next(requests)
            if request is None:
                return
            if request is INTERRUPTED:
                continue
            started = time.perf_counter()
            if said_closing:
                results = [_refused(call.seq, SHUTTING_DOWN) for call in request.calls]
            else:
                results = await self.answer(request.calls, stream_trace, allow)
            _count(results, time.perf_counter() - started)
            yield pb.EnqueueStreamResponse(results=results)

    async def _next(
        self, requests: AsyncIterator[pb.EnqueueStreamRequest]
    ) -> pb.EnqueueStreamRequest | None:
        """The next message; None when the client closed its side; INTERRUPTED when close()
        ended the wait (the caller says `closing`, then reads on)."""
        task = asyncio.current_task()
        assert task is not None
        self._waiting.add(task)
        try:
            return await anext(requests)
        except StopAsyncIteration:
            return None
        except asyncio.CancelledError:
            if not self.closing:
                raise
            task.uncancel()
            return INTERRUPTED
        finally:
            self._waiting.discard(task)

    async def answer(
        self, calls: Sequence[pb.EnqueueCall], stream_trace: str, allow: Callable[[], bool]
    ) -> list[pb.EnqueueStreamResult]:
        """A result per call: admitted calls enqueued together, refused ones with their
        status, every one as a unary Enqueue of the same request would have ended."""
        results: list[pb.EnqueueStreamResult] = []
        admitted: list[tuple[pb.EnqueueStreamResult, NewTask, bool]] = []
        for call in calls:
            result = pb.EnqueueStreamResult(seq=call.seq)
            results.append(result)
            try:
                if not allow():
                    raise RATE_LIMITED
                trace = producing.valid_traceparent(call.traceparent) or stream_trace
                task, client_id = producing.admit(call.request, self.settings, trace)
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
