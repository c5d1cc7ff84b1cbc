"""One run of a Worker: the Work stream (kept open, reconnected, what it holds adopted), flow
control (slots, what is ready to start, the start rule), handler runs and their settles, and
the drain.

Reaches the queue only through `appliance.client`; must not import grpc, redis or the store.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from appliance import metrics, tracing
from appliance.client import AsyncClient
from appliance.client.work import Delivery, Renewed, Settle, Settled, SettleKind, WorkStream
from appliance.errors import AtpError
from appliance.model import Task
from appliance.waits import wait_event
from appliance.worker.execution import (
    NOT_STARTED,
    RELEASE,
    Backoff,
    HandlerThreads,
    Outcome,
    Route,
    Work,
    call_async_handler,
    transient,
)

log = logging.getLogger(__name__)
QUIET_FAILURES = 5  # connect failures in a row logged at info before they become warnings
SETTLE_GRACE_S = 5.0  # after the drain, how long the last settles may take


@dataclasses.dataclass(frozen=True, slots=True)
class WorkerConfig:
    concurrency: int
    prefetch: int
    visibility_timeout_s: float
    drain_timeout_s: float
    backoff_s: tuple[float, float]  # reconnect backoff: first and longest pause


@dataclasses.dataclass(eq=False, slots=True)
class Held:
    """A task this worker holds: received, maybe running, not yet settled."""

    task: Task
    route: Route
    deadline_ms: int  # the lease deadline by the server's clock, as last heard
    started: bool = False
    running: bool = False  # its handler runs now
    settling: bool = False
    holding: bool = False  # being adopted on a new stream: do not start it yet
    lost: bool = False  # the lease is gone (or given back): its result is not recorded
    job: asyncio.Task[None] | None = None  # an async handler's task


class Session:
    """One run of a Worker: the stream, the slots, the thread pool and what it holds. Built
    inside the running event loop."""

    def __init__(self, config: WorkerConfig, client: AsyncClient, routes: Iterable[Route]) -> None:
        self.config = config
        self.client = client
        self.routes = {r.topic: r for r in routes}
        self.free = config.concurrency
        # Guards what decides a start (free, ready, the Held flags, stream, closing): handler
        # threads start the next ready task themselves (_take), the loop the others.
        self.lock = threading.Lock()
        self.threads = HandlerThreads(
            config.concurrency if any(not r.is_async for r in self.routes.values()) else 0,
            asyncio.get_running_loop(),
            self._finished_sync,
            self._take,
        )
        self.held: dict[str, Held] = {}  # lease token -> held task
        self.ready: collections.deque[Held] = collections.deque()  # received, not started
        self.running: set[Held] = set()
        self.jobs: set[asyncio.Task[None]] = set()  # settles waiting for a stream
        self.stream: WorkStream | None = None
        self.stream_up = asyncio.Event()
        self.closing = False
        self._handler_seconds: dict[tuple[str, str], Any] = {}
        self.traced = tracing.enabled()  # configure tracing before the worker runs

    # -- the stream ------------------------------------------------------------------------

    async def connect(self) -> None:
        """Keep a Work stream open until the session closes; reconnect with backoff."""
        backoff = Backoff(*self.config.backoff_s)
        # A topic's own cap bounds its pushes (no prefetch); 0 = none: the credit window,
        # slots plus prefetch, bounds the rest.
        caps = {
            t: min(r.concurrency, self.config.concurrency) if r.concurrency else 0
            for t, r in self.routes.items()
        }
        credits = self.config.concurrency + self.config.prefetch
        lease_ms = round(self.config.visibility_timeout_s * 1000)
        while not self.closing:
            try:
                stream = await self.client.open_work(caps, credits, lease_ms)
            except AtpError as exc:
                pause = backoff.next()
                # The server may simply not be up yet (all roles start together): quiet at first.
                level = logging.WARNING if backoff.failures > QUIET_FAILURES else logging.INFO
                log.log(level, "work stream failed (%s); again in %.2f s", exc, pause)
                await asyncio.sleep(pause)
                continue
            backoff.reset()
            await self._serve(stream)

    async def _serve(self, stream: WorkStream) -> None:
        # Mark what is to be adopted before anything can start it: a delivery of the last
        # stream may have been released by the server meanwhile.
        with self.lock:
            self.stream = stream
            todo = [h for h in self.held.values() if not h.settling]
            for h in todo:
                h.holding = True
        self.stream_up.set()
        adopting = asyncio.create_task(self._adopt(stream, todo), name="atp-adopt")
        try:
            async for event in stream.events():
                if isinstance(event, Delivery):
                    self._receive(event.tasks)
                elif isinstance(event, Renewed):
                    self._renewed(event)
                self._dispatch()
        except AtpError as exc:
            if not self.closing:
                log.info("work stream ended (%s); reconnecting", exc)
        finally:
            self.stream_up.clear()
            with self.lock:
                self.stream = None
            adopting.cancel()
            await stream.close(clean=False)

    async def _adopt(self, stream: WorkStream, todo: list[Held]) -> None:
        """After a reconnect: HOLD what this worker still holds and is not settling, so the
        new stream keeps its leases alive; what cannot be held is lost."""
        if not todo:
            return
        answers = await asyncio.gather(
            *(stream.settle(Settle(SettleKind.HOLD, h.task)) for h in todo)
        )
        kept = 0
        for h, answer in zip(todo, answers, strict=True):
            with self.lock:
                h.holding = False
            if answer.error is None:
                h.deadline_ms = answer.lease_deadline_ms
                kept += 1
            elif not transient(answer.error):
                self._lose(h)
        log.info("work stream: adopted %d of %d held tasks", kept, len(todo))
        self._dispatch()

    def _receive(self, tasks: list[Task]) -> None:
        for task in tasks:
            route = self.routes.get(task.topic)
            if route is None:  # not subscribed: cannot happen with a correct server
                continue
            held = Held(task, route, task.lease_deadline_ms)
            self.held[task.lease_token] = held
            if self.closing:
                self._settle_soon(held, NOT_STARTED)
            else:
                self.ready.append(held)

    def _renewed(self, renewed: Renewed) -> None:
        """The server renewed what this stream holds: their deadlines move on; the revoked
        ones are lost (not started; a running one's result would be refused)."""
        for held in list(self.held.values()):
            if held.task.lease_token in renewed.revoked:
                self._lose(held)
            elif not held.settling:
                held.deadline_ms = max(held.deadline_ms, renewed.deadline_ms)

    def _lose(self, held: Held) -> None:
        with self.lock:
            held.lost = True
        self.held.pop(held.task.lease_token, None)
        if held.started:
            log.warning("task %s: lease lost, its result will not be recorded", held.task.id)

    # -- starting --------------------------------------------------------------------------

    def _dispatch(self) -> None:
        """Start what is ready while slots are free, the stream is fresh and leases hold."""
        while True:
            with self.lock:
                if not self.ready or self.free <= 0 or self.closing:
                    return
                held = self.ready[0]
                if held.lost:
                    self.ready.popleft()
                    continue
                stream = self.stream
                if held.holding or stream is None:
                    return
                refusal = stream.start_refusal(held.deadline_ms)
                if refusal == "stale stream":
                    return  # wait for the answer to a ping (or for the stream to break)
                self.ready.popleft()
                if refusal is None:
                    self._started(held)
            if refusal is not None:
                log.warning("task %s: held past its lease deadline, not started", held.task.id)
                self._settle_soon(held, NOT_STARTED)
            elif held.route.is_async:
                held.job = asyncio.create_task(self._run_async(held))
            else:
                self.threads.run(held.route, held.task, held)

    def _started(self, held: Held) -> None:
        """Take a slot for `held` (under the lock)."""
        self.free -= 1
        held.started = held.running = True
        self.running.add(held)

    def _ended(self, held: Held) -> None:
        """Give back `held`'s slot (under the lock)."""
        held.running = False
        self.running.discard(held)
        self.free += 1

    def _take(self, done: Held) -> Work | None:
        """On a handler thread that just ran `done`: the next ready task, started at once on
        this thread when it is a sync handler's and may start now (fresh stream, lease
        ahead); else None, the slot given back, and the loop starts or refuses what waits."""
        with self.lock:
            self._ended(done)
            stream = self.stream
            while self.ready and not self.closing and stream is not None:
                held = self.ready[0]
                if held.lost:
                    self.ready.popleft()
                    continue
                if held.holding or held.route.is_async or stream.refusal(held.deadline_ms):
                    break
                self.ready.popleft()
                self._started(held)
                return held.route, held.task, held
            return None

    async def _run_async(self, held: Held) -> None:
        started = time.perf_counter()
        outcome = RELEASE
        try:
            with tracing.execution(held.task) if self.traced else tracing.NO_SPAN:
                outcome = await call_async_handler(held.route, held.task)
        finally:
            self._finished(held, outcome, time.perf_counter() - started)

    def _finished(self, held: Held, outcome: Outcome, seconds: float) -> None:
        """An async handler ended: free its slot, settle, start the next."""
        with self.lock:
            self._ended(held)
        self._finished_sync([(held, outcome, seconds)])

    def _finished_sync(self, ended: list[tuple[Held, Outcome, float]]) -> None:
        """Handlers ended (on the loop; a sync handler's slot was passed on or given back by
        _take): settle each, then start what is ready."""
        for held, outcome, seconds in ended:
            self.observe_handler(held.task.topic, outcome.name, seconds)
            self._settle(held, outcome)
        self._dispatch()

    def observe_handler(self, topic: str, outcome: str, seconds: float) -> None:
        key = (topic, outcome)
        child = self._handler_seconds.get(key)
        if child is None:
            child = self._handler_seconds[key] = metrics.HANDLER.labels(topic, outcome)
        child.observe(seconds)

    # -- settling --------------------------------------------------------------------------

    def _settle_soon(self, held: Held, outcome: Outcome) -> None:
        self._settle(held, outcome)

    def _settle(self, held: Held, outcome: Outcome) -> None:
        """Send the outcome on the stream; its answer comes back to _answered."""
        if held.lost:
            return
        held.settling = True
        settle = _settle_of(held.task, outcome)
        stream = self.stream
        if stream is None:
            self._settle_later(held, settle)
            return
        # While more than half the slots' worth of work is queued here, a settle may wait a
        # little for others, so settles (and the pushes their credits free) travel several per
        # message; with less queued it goes at once, before the slots run dry.
        plenty = len(self.ready) > self.config.concurrency // 2
        answered = functools.partial(self._answered, held, settle)
        stream.settle_then(settle, answered, now=not plenty or self.closing)

    def _answered(self, held: Held, settle: Settle, answer: Settled) -> None:
        if answer.error is None:
            self.held.pop(held.task.lease_token, None)
        elif transient(answer.error):
            self._settle_later(held, settle)
        else:
            log.warning("task %s: result not recorded: %s", held.task.id, answer.error)
            self.held.pop(held.task.lease_token, None)

    def _settle_later(self, held: Held, settle: Settle) -> None:
        job = asyncio.create_task(self._resend(held, settle))
        self.jobs.add(job)
        job.add_done_callback(self.jobs.discard)

    async def _resend(self, held: Held, settle: Settle) -> None:
        """Send a settle again, on the next stream if this one broke (the server answers a
        repeat the way it answered the first: settles are idempotent per lease token)."""
        while True:
            stream = self.stream
            if stream is None:
                if not await self._stream_back():
                    log.warning("task %s: result not recorded (no stream)", held.task.id)
                    break
                continue
            answer = await stream.settle(settle)
            if answer.error is None:
                break
            if not transient(answer.error):
                log.warning("task %s: result not recorded: %s", held.task.id, answer.error)
                break
            if self.stream is stream:  # a transient error on a live stream: pause a little
                await asyncio.sleep(0.1)
        self.held.pop(held.task.lease_token, None)

    async def _stream_back(self) -> bool:
        """Wait for a stream (while closing, only for the settle grace)."""
        return await wait_event(self.stream_up, SETTLE_GRACE_S if self.closing else None)

    # -- stopping --------------------------------------------------------------------------

    async def drain(self, timeout_s: float) -> None:
        """Push nothing more; give back what has not started; let running handlers finish for
        `timeout_s`, then release them; wait for the last settles."""
        with self.lock:
            self.closing = True
            unstarted = [h for h in self.ready if not h.lost]
            self.ready.clear()
        stream = self.stream
        if stream is not None:
            stream.goodbye()
        for held in unstarted:
            self._settle_soon(held, NOT_STARTED)
        if self.running:
            log.info("draining %d in-flight tasks (up to %.1f s)", len(self.running), timeout_s)
            await _until(lambda: not self.running, timeout_s)
        if self.running:
            log.warning(
                "releasing %d tasks still running after the drain timeout", len(self.running)
            )
            self.release_all()
        await _until(lambda: not self.held, SETTLE_GRACE_S)
        stream = self.stream
        if stream is not None:
            await stream.close(clean=True)

    def release_all(self) -> None:
        """Stop waiting for handlers: release their tasks now (second signal). An async
        handler is cancelled; a sync handler's thread runs on, its result unrecorded."""
        for held in list(self.running):
            if held.job is not None:
                held.job.cancel()
            else:
                self._settle(held, RELEASE)
                held.lost = True

    def close(self) -> None:
        self.threads.close()


async def _until(done: Callable[[], bool], timeout_s: float) -> None:
    """Return once done() holds, or after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while not done() and time.monotonic() < deadline:  # noqa: ASYNC110 - drain only, 10 ms
        await asyncio.sleep(0.01)


def _settle_of(task: Task, outcome: Outcome) -> Settle:
    if outcome.ack:
        return Settle(SettleKind.ACK, task, result=outcome.result)
    kind = SettleKind.RELEASE if outcome.release else SettleKind.NACK
    return Settle(kind, task, outcome.error, outcome.retry_after_ms, outcome.dead_letter)
