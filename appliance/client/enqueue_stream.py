"""The SDK's fast enqueue path: every Enqueue call of a client travels on one EnqueueStream,
the calls waiting while a message is on its way coalesced into the next message. Each call
keeps its own correlation id, result and error. What happens to calls whose stream breaks is
docs/adr/0007-enqueue-stream.md. Imports grpc; must not import the store, redis or the worker.

`StreamEnqueuer` lives on one asyncio loop: the AsyncClient's, or for the blocking Client a
loop of its own on a background thread (`BackgroundEnqueuer`).
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc

from appliance import tracing
from appliance.api._proto import queue_pb2 as pb
from appliance.client import common
from appliance.errors import AtpError, Unavailable

MAX_CALLS = 1000  # calls per message (the server writes them in slices of its batch_max)
MAX_BYTES = 4 * 1024 * 1024  # per message, well under the server's grpc_max_message_bytes
WINDOW = 2  # messages on their way at once: calls arriving meanwhile wait and go out together
MAX_SENDS = 3  # a call goes out at most this often (again only when safe: see the ADR)
SWEEP_S = 1.0  # how often calls past their deadline are failed
STATUS = {c.value[0]: c for c in grpc.StatusCode}


class Waiter:
    """What a blocking caller waits on: the future-like end of one call, set once on the
    enqueuer's loop; a bare lock (released when set) is the cheapest thing to block on."""

    __slots__ = ("_done", "_error", "_id", "_lock")

    def __init__(self) -> None:
        self._id = ""
        self._error: BaseException | None = None
        self._done = False
        self._lock = threading.Lock()
        self._lock.acquire()

    def done(self) -> bool:
        return self._done

    def set_result(self, task_id: str) -> None:
        self._id, self._done = task_id, True
        self._lock.release()

    def set_exception(self, error: BaseException) -> None:
        self._error, self._done = error, True
        self._lock.release()

    def result(self) -> str:
        self._lock.acquire()
        if self._error is not None:
            raise self._error
        return self._id


Future = asyncio.Future[str] | Waiter


class _Pending:
    """One call: its message entry, the caller's future, and whether sending it again is safe
    after a broken stream (only a client-given id makes a repeat idempotent)."""

    __slots__ = ("call", "deadline", "future", "sends")

    def __init__(self, call: pb.EnqueueCall, future: Future, deadline: float) -> None:
        self.call = call
        self.future = future
        self.deadline = deadline
        self.sends = 0


class StreamEnqueuer:
    """Sends Enqueue calls on one stream at a time, opened on demand; `submit` on its loop."""

    def __init__(self, open_stream: Callable[[], Any], timeout_s: float) -> None:
        """`open_stream()`: a new grpc.aio EnqueueStream call (with the client's metadata)."""
        self._open_stream = open_stream
        self._timeout_s = timeout_s
        self._outbox: collections.deque[_Pending] = collections.deque()
        self._sent: dict[int, _Pending] = {}
        self._seq = 0
        self._wake = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._receiver: asyncio.Task[tuple[bool, AtpError | None]] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._stream: Any = None
        self._on_way = 0  # messages written on the stream and not answered yet
        self._ended = False
        self._closed = False

    def submit(self, request: pb.EnqueueRequest, future: Future, traceparent: str = "") -> None:
        """Queue one call; `future` gets the task id or the call's error."""
        if self._closed:
            future.set_exception(Unavailable("the client is closed"))
            return
        self._seq += 1
        call = pb.EnqueueCall(seq=self._seq, request=request, traceparent=traceparent)
        self._outbox.append(_Pending(call, future, time.monotonic() + self._timeout_s))
        if self._runner is None:
            self._runner = asyncio.get_running_loop().create_task(self._run())
        else:
            self._wake.set()
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    async def close(self) -> None:
        """End the stream; calls not answered yet fail with Unavailable."""
        self._closed = True
        if self._stream is not None:
            self._stream.cancel()
        for task in (self._runner, self._receiver, self._sweeper):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        for pending in (*self._outbox, *self._sent.values()):
            _fail(pending, Unavailable("the client was closed before this call was answered"))
        self._outbox.clear()
        self._sent.clear()

    # -- one stream at a time -------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            while not self._outbox:
                self._wake.clear()
                await self._wake.wait()
            self._stream, self._ended, self._on_way = self._open_stream(), False, 0
            receiver = asyncio.get_running_loop().create_task(self._receive(self._stream))
            self._receiver = receiver
            await self._send(self._stream)
            if not receiver.done():
                self._stream.cancel()  # a write failed: the stream is broken
            clean, error = await receiver
            self._receiver = None
            self._stream = None
            self._settle(clean, error)

    async def _send(self, stream: Any) -> None:
        """Write what waits in the outbox, coalesced, until the stream ends. With WINDOW
        messages on their way, calls wait for an answer: the server's pace sets the batch size."""
        while True:
            while (not self._outbox or self._on_way >= WINDOW) and not self._ended:
                self._wake.clear()
                await self._wake.wait()
            if self._ended:
                return
            message = self._take()
            self._on_way += 1
            try:
                await stream.write(message)
            except (grpc.RpcError, asyncio.InvalidStateError, grpc.aio.UsageError):
                return

    def _take(self) -> pb.EnqueueStreamRequest:
        """The next message: as many waiting calls as fit."""
        calls: list[pb.EnqueueCall] = []
        size = 0
        outbox, sent = self._outbox, self._sent
        while outbox and len(calls) < MAX_CALLS:
            pending = outbox[0]
            if pending.future.done():  # past its deadline already: not worth sending
                outbox.popleft()
                continue
            size += pending.call.ByteSize()
            if calls and size > MAX_BYTES:
                break
            outbox.popleft()
            pending.sends += 1
            sent[pending.call.seq] = pending
            calls.append(pending.call)
        return pb.EnqueueStreamRequest(calls=calls)

    async def _receive(self, stream: Any) -> tuple[bool, AtpError | None]:
        """Answer calls until the stream ends: (ended cleanly, the stream's error if not)."""
        try:
            while True:
                reply = await stream.read()
                if reply is grpc.aio.EOF:
                    code = await stream.code()
                    if code == grpc.StatusCode.OK:
                        return True, None
                    details = await stream.details()
                    return False, common.error_of(code, details or code.name)
                self._on_way -= 1
                if self._outbox:
                    self._wake.set()
                for result in reply.results:
                    pending = self._sent.pop(result.seq, None)
                    if pending is not None:
                        _answer(pending, result)
        except grpc.RpcError as err:
            return False, common.map_error(err)
        finally:
            self._ended = True
            self._wake.set()

    def _settle(self, clean: bool, error: AtpError | None) -> None:
        """After a stream ended: its unanswered calls go out again when that is safe (a clean
        end means the server read none of them; a client-given id makes a repeat harmless),
        else they fail with the stream's error."""
        again = []
        for pending in self._sent.values():
            safe = clean or (
                pending.call.request.id != "" and isinstance(error, Unavailable | common.RpcFailed)
            )
            if pending.future.done():
                continue
            if safe and pending.sends < MAX_SENDS:
                again.append(pending)
            else:
                _fail(pending, _lost(error))
        self._sent.clear()
        self._outbox.extendleft(reversed(again))

    async def _sweep(self) -> None:
        """Fail calls past their deadline (the answer, if it comes, is dropped)."""
        while True:
            await asyncio.sleep(SWEEP_S)
            now = time.monotonic()
            for pending in (*self._outbox, *self._sent.values()):
                if pending.deadline < now and not pending.future.done():
                    _fail(pending, common.RpcFailed("DEADLINE_EXCEEDED", "Deadline Exceeded"))


def _answer(pending: _Pending, result: pb.EnqueueStreamResult) -> None:
    future = pending.future
    if future.done():
        return
    if result.code == 0:
        future.set_result(result.id)
    else:
        code = STATUS.get(result.code, grpc.StatusCode.UNKNOWN)
        future.set_exception(common.error_of(code, result.message or code.name))


def _fail(pending: _Pending, error: AtpError) -> None:
    if not pending.future.done():
        pending.future.set_exception(error)


def _lost(error: AtpError | None) -> AtpError:
    """The error of a call whose stream ended before its answer came."""
    if error is None or isinstance(error, Unavailable):
        reason = f" ({error})" if error is not None else ""
        return Unavailable(
            "the stream to the server ended before this call was answered; the task may or "
            f"may not have been created{reason}"
        )
    return error


class BackgroundEnqueuer:
    """A StreamEnqueuer on an asyncio loop of its own (a daemon thread), for blocking callers:
    `enqueue()` hands the call to the loop and waits for its answer."""

    def __init__(self, open_channel: Callable[[], Any], metadata: Any, timeout_s: float) -> None:
        """`open_channel()`: a new grpc.aio channel (made on the background loop)."""
        self._open_channel = open_channel
        self._metadata = metadata
        self._timeout_s = timeout_s
        self._inbox: collections.deque[tuple[pb.EnqueueRequest, Waiter, str]] = collections.deque()
        self._draining = False  # a drain is scheduled on the loop: no need to wake it again
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="atp-enqueue", daemon=True
        )
        self._thread.start()
        self._channel: Any = None
        self._enqueuer = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result()

    async def _start(self) -> StreamEnqueuer:
        from appliance.api._proto import queue_pb2_grpc as pb_grpc

        self._channel = self._open_channel()
        stub = pb_grpc.DelayQueueServiceStub(self._channel)
        metadata = self._metadata or None
        return StreamEnqueuer(lambda: stub.EnqueueStream(metadata=metadata), self._timeout_s)

    def enqueue(self, request: pb.EnqueueRequest) -> str:
        """The task id, once the server wrote the task (or the call's error). Calls from many
        threads meet in the inbox; the loop is woken once per drain, not once per call."""
        waiter = Waiter()
        self._inbox.append((request, waiter, tracing.current_traceparent()))
        if not self._draining:
            self._draining = True
            self._loop.call_soon_threadsafe(self._drain)
        return waiter.result()

    def _drain(self) -> None:
        self._draining = False  # before emptying: a call added from now on schedules a drain
        inbox, submit = self._inbox, self._enqueuer.submit
        while inbox:
            request, waiter, trace = inbox.popleft()
            submit(request, waiter, trace)

    def close(self) -> None:
        async def stop() -> None:
            self._drain()
            await self._enqueuer.close()
            await self._channel.close()

        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(stop(), self._loop).result()
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
        self._loop.close()
