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
from appliance.client import common
from appliance.errors import AtpError, Unavailable
from appliance.proto import queue_pb2 as pb

MAX_CALLS = 1000  # calls per message (the server writes them in slices of its batch_max)
MIN_SPLIT = 100  # calls per message at least, when the waiting calls are split (see `_take`)
MAX_BYTES = 1024 * 1024  # per message, well under the server's grpc_max_message_bytes
BIG_PAYLOAD = 64 * 1024  # characters; a larger payload goes by unary Enqueue (see `fits`)
WINDOW = 4  # messages on their way at once: calls arriving meanwhile wait and go out together
MAX_SENDS = 3  # a call goes out at most this often (again only when safe: see the ADR)
SWEEP_S = 1.0  # how often calls past their deadline are failed
STATUS = {c.value[0]: c for c in grpc.StatusCode}
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE.value[0]


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


def fits(request: pb.EnqueueRequest) -> bool:
    """Whether a call goes on the stream. A big payload (up to 4 bytes a character) goes by
    unary Enqueue instead: its transfer outweighs the call's overhead anyway, and one message
    over the server's limit would end the stream for every call on it, where a unary call
    fails alone."""
    return len(request.payload) <= BIG_PAYLOAD


def unsupported(error: AtpError) -> bool:
    """The server predates EnqueueStream (it answered UNIMPLEMENTED, having read nothing): the
    client sends this call, and the following ones, by unary Enqueue."""
    return isinstance(error, common.RpcFailed) and error.status == "UNIMPLEMENTED"


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
        self._ended = False  # the stream ended
        self._closing = False  # the server said it is shutting down
        self._closed = False

    def submit(self, request: pb.EnqueueRequest, future: Future, traceparent: str = "") -> None:
        """Queue one call; `future` gets the task id or the call's error."""
        if self._closed:
            future.set_exception(Unavailable("the client is closed"))
            return
        self._seq += 1
        call = pb.EnqueueCall(seq=self._seq, request=request, traceparent=traceparent)
        self._outbox.append(_Pending(call, future, time.monotonic() + self._timeout_s))
        if self._runner is None or self._runner.done():  # (done: only after a bug in _run)
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
            stream = self._stream = self._open_stream()
            self._ended, self._closing, self._on_way = False, False, 0
            refused = await _accepted(stream)
            if refused is not None:  # refused before anything was written
                self._stream = None
                self._refuse_outbox(refused)
                continue
            receiver = self._receiver = asyncio.get_running_loop().create_task(
                self._receive(stream)
            )
            if await self._send(stream):
                stream.cancel()  # a write failed: the stream is broken
            clean, error = await receiver
            self._receiver = self._stream = None
            self._settle(clean, error)

    async def _send(self, stream: Any) -> bool:
        """Write what waits in the outbox, coalesced, until the stream ends or the server says
        it is closing (then close this side). With WINDOW messages on their way, calls wait
        for an answer: the server's pace sets the batch size. True when a write failed."""
        while True:
            while (not self._outbox or self._on_way >= WINDOW) and not (
                self._ended or self._closing
            ):
                self._wake.clear()
                await self._wake.wait()
            try:
                if self._ended:
                    return False
                if self._closing:
                    await stream.done_writing()
                    return False
                message = self._take()
                self._on_way += 1
                await stream.write(message)
            except (grpc.RpcError, asyncio.InvalidStateError, grpc.aio.UsageError):
                return True

    def _refuse_outbox(self, error: AtpError) -> None:
        """A new stream was refused (no server, a bad token, a server without EnqueueStream):
        the waiting calls fail with its error, as unary calls would; a call sent before on a
        stream that broke keeps the doubt about its first send."""
        while self._outbox:
            pending = self._outbox.popleft()
            _fail(pending, _lost(error) if pending.sends else error)

    def _take(self) -> pb.EnqueueStreamRequest:
        """The next message: the waiting calls, split over the free places of the window
        (not fewer than MIN_SPLIT a message), so that the client answers one message's callers
        while the server writes the next one's tasks: one message of every call in flight
        would make the two take turns, each idle while the other works."""
        calls: list[pb.EnqueueCall] = []
        size = 0
        outbox, sent = self._outbox, self._sent
        free = max(1, WINDOW - self._on_way)
        limit = min(MAX_CALLS, max(MIN_SPLIT, -(-len(outbox) // free)))
        while outbox and len(calls) < limit:
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
                if reply.closing:
                    self._closing = True
                    self._wake.set()
                    continue
                self._on_way -= 1
                if self._outbox:
                    self._wake.set()
                for result in reply.results:
                    pending = self._sent.pop(result.seq, None)
                    if pending is None:
                        continue
                    if self._closing and result.code == UNAVAILABLE:
                        self._sent[result.seq] = pending  # not read: goes again (see _settle)
                    else:
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


async def _accepted(stream: Any) -> AtpError | None:
    """Wait for the server to accept a new stream (its initial metadata): None, or the error
    it was refused with. Nothing is written before, so a refusal never races a write."""
    try:
        await stream.initial_metadata()
        if not stream.done():
            return None
        code = await stream.code()
        details = await stream.details()
    except grpc.RpcError as err:
        return common.map_error(err)
    if code == grpc.StatusCode.OK:
        return Unavailable("the server ended the stream at once")
    return common.error_of(code, details or code.name)


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
        from appliance.proto import queue_pb2_grpc as pb_grpc

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
