"""The client side of the worker stream (rpc Work): open it, read what the server sends as
plain events, send settles (those queued together go out as one message).

Knows the wire, nothing of handlers or slots (that is appliance/worker). Imports grpc and the
generated code; must not import the store, redis or the worker.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import grpc

from appliance.client.common import map_error, task_from_pb
from appliance.errors import (
    AtpError,
    InvalidArgument,
    NotFound,
    StaleLease,
    Unavailable,
    WrongState,
)
from appliance.model import Task, TaskState
from appliance.proto import queue_pb2 as pb

SETTLE_BATCH_MAX = 500  # settles per message
PING_S = 1.0  # the worker asks the server whether the stream lives this often
FRESH_S = 2.5  # a delivery starts only if a ping sent at most this long ago was answered
DEADLINE_MARGIN_MS = 100  # ... and its lease has at least this long to go
SETTLE_DELAY_S = 0.005  # the longest a settle waits for company (settle(now=False))
CLOSE_WAIT_S = 1.0  # a clean close waits this long for the last settles to go out


class SettleKind:
    ACK = pb.ACK
    NACK = pb.NACK
    RELEASE = pb.RELEASE
    HOLD = pb.HOLD


@dataclasses.dataclass(frozen=True, slots=True)
class Settle:
    """One settle to send: what to do with the lease of `task`."""

    kind: int
    task: Task
    error: str = ""
    retry_after_ms: int = 0
    dead_letter: bool = False
    result: str = ""  # ACK: the task's output


@dataclasses.dataclass(frozen=True, slots=True)
class Settled:
    """The server's answer to one settle: None when it worked, else the error."""

    error: AtpError | None
    lease_deadline_ms: int = 0  # HOLD: the renewed deadline
    dead_lettered: bool = False  # NACK: the task went to the dead-letter queue
    next_execute_time_ms: int = 0  # NACK: when it is due again (0 when dead)


DONE = Settled(None)  # the answer to a settle that worked and carries nothing more


@dataclasses.dataclass(frozen=True, slots=True)
class Delivery:
    tasks: list[Task]


@dataclasses.dataclass(frozen=True, slots=True)
class Renewed:
    """The server renewed what the stream holds: all of it runs to at least `deadline_ms`
    (server clock; 0: none was renewed) but the `revoked` lease tokens, which are gone."""

    deadline_ms: int
    revoked: frozenset[str]


class ServerClock:
    """The server's clock as seen from here: every message it sends carries its time, which is a
    lower bound of its time when the message arrives. `now_ms()` estimates the server's time
    from the monotonic clock, so a process that was stopped sees the time it lost."""

    def __init__(self) -> None:
        self.offset_ms = -float("inf")  # server ms - local monotonic ms, lower bound

    def saw(self, server_ms: int) -> None:
        self.offset_ms = max(self.offset_ms, server_ms - time.monotonic() * 1000)

    def now_ms(self) -> float:
        return time.monotonic() * 1000 + self.offset_ms


def deadline_refusal(deadline_ms: int, server_now_ms: float) -> str | None:
    """'lease deadline' when a delivery's lease has less than DEADLINE_MARGIN_MS to go."""
    if server_now_ms + DEADLINE_MARGIN_MS >= deadline_ms:
        return "lease deadline"
    return None


_CODES: Mapping[str, type[AtpError]] = {
    "FAILED_PRECONDITION": StaleLease,
    "NOT_FOUND": NotFound,
    "INVALID_ARGUMENT": InvalidArgument,
    "UNAVAILABLE": Unavailable,
}


class WorkStream:
    """One open Work stream. `events()` yields Delivery lists and settle answers; `settle()`
    queues a settle and returns a future for its answer."""

    def __init__(self, call: Any, clock: ServerClock) -> None:
        self._call = call
        self.clock = clock
        self._seq = itertools.count(1)
        self._waiting: dict[int, Callable[[Settled], None]] = {}  # seq -> its answer's taker
        self._outbox: list[pb.WorkSettle] = []
        self._wake_sender = asyncio.Event()
        self._sender = asyncio.create_task(self._send_loop(), name="atp-work-send")
        self.welcome: pb.WorkWelcome | None = None
        self._leaving = 0  # 1: goodbye asked for, 2: sent
        self._half_close = False
        self._pings: dict[int, float] = {}  # ping seq -> monotonic time it was sent
        self._ping_due = False
        self.answered_at = time.monotonic()  # send time of the latest answered ping
        self._pinger = asyncio.create_task(self._ping_loop(), name="atp-work-ping")
        self._flush_timer: asyncio.TimerHandle | None = None

    @classmethod
    async def open(
        cls,
        stub: Any,
        metadata: Iterable[tuple[str, str]],
        topics: Mapping[str, int],
        credits: int,
        lease_ms: int,
        name: str = "",
    ) -> WorkStream:
        """Subscribe and wait for the welcome (errors as the domain's exceptions)."""
        call = stub.Work(metadata=list(metadata) or None)
        subscribe = pb.WorkSubscribe(
            topics=[pb.WorkTopic(topic=t, max_in_flight=cap) for t, cap in topics.items()],
            credits=credits,
            visibility_timeout_ms=lease_ms,
            max_message_bytes=0,
            worker_name=name,
        )
        clock = ServerClock()
        try:
            await call.write(pb.WorkRequest(subscribe=subscribe))
            first = await call.read()
        except grpc.RpcError as err:
            raise map_error(err) from err
        if first is grpc.aio.EOF or not first.HasField("welcome"):
            call.cancel()
            raise Unavailable("the server ended the Work stream before welcoming it")
        clock.saw(first.welcome.now_ms)
        stream = cls(call, clock)
        stream.welcome = first.welcome
        return stream

    def settle(self, settle: Settle, now: bool = True) -> asyncio.Future[Settled]:
        """Queue a settle; its answer comes in the future. `now=False` lets it wait up to
        SETTLE_DELAY_S for more to go in the same message (or for flush())."""
        done: asyncio.Future[Settled] = asyncio.get_running_loop().create_future()

        def answer(settled: Settled) -> None:
            if not done.done():
                done.set_result(settled)

        self.settle_then(settle, answer, now)
        return done

    def settle_then(
        self, settle: Settle, then: Callable[[Settled], None], now: bool = True
    ) -> None:
        """settle() for the hot path: `then(answer)` is called on the loop, no future made."""
        seq = next(self._seq)
        self._waiting[seq] = then
        self._outbox.append(
            pb.WorkSettle(
                seq=seq,
                kind=settle.kind,  # type: ignore[arg-type]
                id=settle.task.id,
                lease_token=settle.task.lease_token,
                error=settle.error,
                retry_after_ms=settle.retry_after_ms,
                dead_letter=settle.dead_letter,
                result=settle.result,
            )
        )
        if now:
            self._wake_sender.set()
        elif self._flush_timer is None:
            loop = asyncio.get_running_loop()
            self._flush_timer = loop.call_later(SETTLE_DELAY_S, self.flush)

    def start_refusal(self, deadline_ms: int) -> str | None:
        """Why a delivery held on this stream must not start now (None: it may): 'stale
        stream' while no ping sent within FRESH_S has been answered — the server may have
        declared this worker lost and released its tasks (after a SIGSTOP, a partition) — or
        'lease deadline'. A stale stream asks the server at once."""
        refusal = self.refusal(deadline_ms)
        if refusal == "stale stream":
            self.ping()
        return refusal

    def refusal(self, deadline_ms: int) -> str | None:
        """start_refusal() without the ping: safe on any thread (reads only)."""
        if time.monotonic() - self.answered_at > FRESH_S:
            return "stale stream"
        return deadline_refusal(deadline_ms, self.clock.now_ms())

    def ping(self) -> None:
        """Ask the server whether the stream lives (answered by a heartbeat)."""
        self._ping_due = True
        self._wake_sender.set()

    async def _ping_loop(self) -> None:
        """Ping at once, then every PING_S: the first ping tells the server this worker pings,
        so that its silence is a verdict from the start (behind a proxy, the only one)."""
        while True:
            self.ping()
            await asyncio.sleep(PING_S)

    def _ponged(self, seq: int) -> None:
        sent = self._pings.pop(seq, None)
        if sent is not None:
            self.answered_at = max(self.answered_at, sent)
            for old in [s for s in self._pings if s < seq]:
                del self._pings[old]

    def flush(self) -> None:
        """Send the queued settles now."""
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        if self._outbox:
            self._wake_sender.set()

    async def _send_loop(self) -> None:
        """The one writer of the stream: what is queued goes out as one message per turn
        (settles finishing together batch), then the goodbye, then the half-close."""
        while True:
            await self._wake_sender.wait()
            self._wake_sender.clear()
            await asyncio.sleep(0)  # let the settles of this loop turn join
            if self._flush_timer is not None:
                self._flush_timer.cancel()
                self._flush_timer = None
            try:
                while self._outbox:
                    batch = self._outbox[:SETTLE_BATCH_MAX]
                    del self._outbox[:SETTLE_BATCH_MAX]
                    settles = pb.WorkSettleBatch(settles=batch)
                    await self._call.write(pb.WorkRequest(settle=settles))
                if self._ping_due:
                    self._ping_due = False
                    seq = next(self._seq)
                    self._pings[seq] = time.monotonic()
                    await self._call.write(pb.WorkRequest(ping=pb.WorkPing(seq=seq)))
                if self._leaving == 1:
                    self._leaving = 2
                    await self._call.write(pb.WorkRequest(goodbye=pb.WorkGoodbye()))
                if self._half_close:
                    await self._call.done_writing()
                    return
            except (grpc.RpcError, asyncio.InvalidStateError, RuntimeError):
                return  # the stream broke: events() ends and fails the waiting settles

    async def events(self) -> Any:
        """Async iterator: per message a Renewed when it renews leases, then a Delivery, or
        None for a message without tasks (settle answers, heartbeats), until the stream ends;
        then raises the reason (Unavailable for a clean end by the server)."""
        try:
            while True:
                message = await self._call.read()
                if message is grpc.aio.EOF:
                    raise Unavailable("the server ended the Work stream")
                if message.HasField("heartbeat"):
                    self.clock.saw(message.heartbeat.now_ms)
                    self._ponged(message.heartbeat.ping_seq)
                if message.HasField("settled"):
                    self._answer(message.settled.settled)
                if message.HasField("renewed"):
                    renewed = message.renewed
                    yield Renewed(renewed.lease_deadline_ms, frozenset(renewed.revoked))
                if message.HasField("delivery"):
                    self.clock.saw(message.delivery.now_ms)
                    tasks = [task_from_pb(t, TaskState.RUNNING) for t in message.delivery.tasks]
                    yield Delivery(tasks)
                else:
                    yield None
        except grpc.RpcError as err:
            raise map_error(err) from err

    def _answer(self, results: Iterable[pb.WorkSettled]) -> None:
        waiting = self._waiting
        for r in results:
            then = waiting.pop(r.seq, None)
            if then is None:
                continue
            if r.success and not (r.lease_deadline_ms or r.dead_lettered or r.next_execute_time_ms):
                then(DONE)  # a plain ACK's answer (the hot path): one shared object
                continue
            error = None if r.success else _CODES.get(r.code, WrongState)(r.error or r.code)
            then(Settled(error, r.lease_deadline_ms, r.dead_lettered, r.next_execute_time_ms))

    def goodbye(self) -> None:
        """Tell the server to push no more (after what is queued); settles still go through
        until close()."""
        self._leaving = max(self._leaving, 1)
        self._wake_sender.set()

    async def close(self, clean: bool) -> None:
        """End the stream: half-close once what is queued is sent (clean), else cancel it.
        Settles still waiting for an answer fail with Unavailable."""
        if clean and not self._sender.done():
            self._half_close = True
            self._wake_sender.set()
            await asyncio.wait({self._sender}, timeout=CLOSE_WAIT_S)  # never raises
        self._sender.cancel()
        self._pinger.cancel()
        if self._flush_timer is not None:
            self._flush_timer.cancel()
        if not clean:
            self._call.cancel()
        self.fail_waiting()

    def fail_waiting(self) -> None:
        waiting, self._waiting = self._waiting, {}
        for then in waiting.values():
            then(Settled(Unavailable("the Work stream ended before the answer")))
