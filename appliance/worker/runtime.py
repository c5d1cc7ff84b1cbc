"""The Worker runtime: one long-poll fetch loop per topic, bounded concurrency, handlers (async
on the event loop, sync in a thread pool), batched acks, lease heartbeats and a graceful drain.

Reaches the queue only through `appliance.client.AsyncClient`, like any external worker; must
not import grpc, redis or the store.

Delivery notes: a handler still running at 2/3 of its visibility timeout gets its lease
extended, so it is never handed to a second consumer while this worker is alive. On stop the
fetch loops end at once (a long poll cut off after the server leased tasks leaves those tasks
to the watchdog, after their visibility timeout); in-flight handlers get `drain_timeout` to
finish, then their tasks are released (Nack with release: due again at once, the attempt not
counted, so a restart never uses up a task's retries). A sync handler's thread cannot be
interrupted: it runs on, its result unrecorded.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import dataclasses
import datetime as dt
import inspect
import logging
import random
import signal
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from appliance import metrics, tracing, validation
from appliance.client import AsyncClient, RpcFailed, Tls
from appliance.client.common import Duration, to_ms
from appliance.errors import AtpError, DeadLetterTask, RateLimited, RetryTask, Unavailable
from appliance.model import Task

log = logging.getLogger(__name__)
Handler = Callable[[Task], Any]
"""Takes the leased Task; a plain function runs in a thread, a coroutine function on the loop."""
H = TypeVar("H", bound=Handler)

TRANSIENT_STATUSES = frozenset({"DEADLINE_EXCEEDED", "CANCELLED", "UNKNOWN", "INTERNAL", "ABORTED"})
ERROR_TEXT_MAX = 2000  # chars of "<ExceptionType>: <message>" sent with a Nack
QUIET_FAILURES = 5  # fetch failures in a row logged at info before they become warnings
SETTLE_GRACE_S = 5.0  # after the drain, how long releases may take
IDLE_PAUSE_S = 0.2  # an empty Retrieve answered faster than this waits out the rest
POLL_SETTLE_S = 0.05  # a Retrieve is not cancelled younger than this (see settle_left)
ACK_BATCH_MAX = 500
ACKS_IN_FLIGHT = 2  # AckBatch calls at once
MAX_POLLS_PER_TOPIC = 4  # Retrieves in flight per topic with a backlog, at most (see _polls)


@dataclasses.dataclass(frozen=True, slots=True)
class WorkerConfig:
    concurrency: int
    batch_size: int
    visibility_timeout_s: float
    wait_s: float
    drain_timeout_s: float
    backoff_s: tuple[float, float]  # reconnect backoff: first and longest pause


@dataclasses.dataclass(frozen=True, slots=True)
class Route:
    topic: str
    handler: Handler
    concurrency: int | None  # this topic's own cap under the worker's
    is_async: bool


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """How a delivery ends: Ack, or Nack with the error text and instructions."""

    ack: bool
    error: str = ""
    retry_after_ms: int = 0  # 0: the task's backoff
    dead_letter: bool = False
    release: bool = False  # given back unfinished: due at once, the attempt not counted

    @property
    def name(self) -> str:
        """For metrics: ack, retry, dead_letter or release."""
        if self.ack:
            return "ack"
        return "release" if self.release else "dead_letter" if self.dead_letter else "retry"


ACK = Outcome(ack=True)
RELEASE = Outcome(
    ack=False, error="released: the worker stopped before the handler finished", release=True
)


def transient(exc: AtpError) -> bool:
    """The server may be restarting or unreachable: worth another try. Other errors are final."""
    return isinstance(exc, Unavailable | RateLimited) or (
        isinstance(exc, RpcFailed) and exc.status in TRANSIENT_STATUSES
    )


def describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text[:ERROR_TEXT_MAX]


def outcome_of(exc: Exception) -> Outcome:
    if isinstance(exc, RetryTask):
        return Outcome(ack=False, error=describe(exc), retry_after_ms=max(exc.after_ms, 0))
    if isinstance(exc, DeadLetterTask):
        return Outcome(ack=False, error=describe(exc), dead_letter=True)
    return Outcome(ack=False, error=describe(exc))


class Backoff:
    """Doubling pauses with jitter, from `low` up to `high` seconds."""

    def __init__(self, low: float, high: float) -> None:
        self.low, self.high = low, high
        self._next = low
        self.failures = 0  # in a row

    def next(self) -> float:
        pause = self._next
        self._next = min(self.high, self._next * 2)
        self.failures += 1
        return pause * random.uniform(0.5, 1.0)

    def reset(self) -> None:
        self._next = self.low
        self.failures = 0


class Slots:
    """A counting semaphore that hands out several slots at once, first come first served."""

    def __init__(self, total: int) -> None:
        self._sem = asyncio.Semaphore(total)

    async def take(self, want: int) -> int:
        """Wait for one free slot, then take up to `want` without waiting any more."""
        await self._sem.acquire()
        taken = 1
        while taken < want and not self._sem.locked():
            await self._sem.acquire()  # returns at once: a slot is free and nobody queues
            taken += 1
        return taken

    def give(self, count: int) -> None:
        for _ in range(count):
            self._sem.release()


class _Acker:
    """Acks that finish together go out as one AckBatch; each caller learns its own result."""

    def __init__(self, client: AsyncClient) -> None:
        self.client = client
        self._queue: list[tuple[Task, asyncio.Future[AtpError | None]]] = []
        self._senders = 0  # _flush() calls running; counted down before each one returns
        self._tasks: set[asyncio.Task[None]] = set()

    async def ack(self, task: Task) -> None:
        done: asyncio.Future[AtpError | None] = asyncio.get_running_loop().create_future()
        self._queue.append((task, done))
        if self._senders < ACKS_IN_FLIGHT and len(self._queue) == 1:
            self._senders += 1
            sender = asyncio.create_task(self._flush(), name="atp-acks")
            self._tasks.add(sender)
            sender.add_done_callback(self._tasks.discard)
        error = await done
        if error is not None:
            raise error

    async def _flush(self) -> None:
        """Send what is queued, as long as anything is: up to ACKS_IN_FLIGHT of these run, so
        a batch's acks go out while the last batch's AckBatch is still on its way."""
        try:
            await asyncio.sleep(0)  # let the handlers finishing in this loop turn join in
            while self._queue:
                batch, self._queue = self._queue[:ACK_BATCH_MAX], self._queue[ACK_BATCH_MAX:]
                await self._send(batch)
        finally:
            self._senders -= 1  # at once: an ack queued from now on starts a new sender

    async def _send(self, batch: list[tuple[Task, asyncio.Future[AtpError | None]]]) -> None:
        tasks = [task for task, _ in batch]
        results: list[AtpError | None]
        try:
            if len(tasks) == 1:
                await self.client.ack(tasks[0])
                results = [None]
            else:
                results = await self.client.ack_many(tasks)
        except AtpError as exc:
            results = [exc] * len(tasks)
        for (_, done), result in zip(batch, results, strict=True):
            if not done.done():
                done.set_result(result)


class _Session:
    """One run of a Worker: the client, the slots, the thread pool and the in-flight tasks.
    Built inside the running event loop."""

    def __init__(self, config: WorkerConfig, client: AsyncClient, routes: Iterable[Route]) -> None:
        self.config = config
        self.client = client
        self.slots = Slots(config.concurrency)
        self.topic_slots = {r.topic: Slots(r.concurrency) for r in routes if r.concurrency}
        self.pool = concurrent.futures.ThreadPoolExecutor(
            config.concurrency, thread_name_prefix="atp-handler"
        )
        self.acker = _Acker(client)
        self.jobs: set[asyncio.Task[None]] = set()
        # Executions whose lease renewal is not due yet, oldest lease first (they all have the
        # same lease length): keep_leases() starts their heartbeat when it is due.
        self.unrenewed: dict[_Execution, None] = {}
        self._handler_seconds: dict[tuple[str, str], Any] = {}
        self.traced = tracing.enabled()  # configure tracing before the worker runs

    async def keep_leases(self) -> None:
        """Start the lease heartbeat of every handler still running at 2/3 of its lease; one
        sweep for all of them instead of a timer per task (most finish long before)."""
        lease_s = self.config.visibility_timeout_s
        while True:
            await asyncio.sleep(min(1.0, lease_s / 10))
            now = time.monotonic()
            due = []
            for execution in self.unrenewed:
                if execution.renew_at() > now:
                    break
                due.append(execution)
            for execution in due:
                del self.unrenewed[execution]
                execution.start_heartbeat()

    def observe_handler(self, topic: str, outcome: str, seconds: float) -> None:
        key = (topic, outcome)
        child = self._handler_seconds.get(key)
        if child is None:
            child = self._handler_seconds[key] = metrics.HANDLER.labels(topic, outcome)
        child.observe(seconds)

    async def reserve(self, topic: str, want: int) -> int:
        """Slots for up to `want` tasks of `topic`: at least one, waiting if none is free."""
        own = self.topic_slots.get(topic)
        if own is not None:
            want = await own.take(want)
        try:
            taken = await self.slots.take(want)
        except BaseException:
            if own is not None:
                own.give(want)
            raise
        if own is not None:
            own.give(want - taken)
        return taken

    def give(self, topic: str, count: int) -> None:
        self.slots.give(count)
        own = self.topic_slots.get(topic)
        if own is not None:
            own.give(count)

    def start(self, task: Task, route: Route, leased_at: float) -> None:
        """Run `task` (it holds one reserved slot until it is settled)."""
        job = asyncio.create_task(self._job(_Execution(self, route, task, leased_at)))
        self.jobs.add(job)
        job.add_done_callback(self.jobs.discard)

    async def _job(self, execution: _Execution) -> None:
        try:
            await execution.run()
        except Exception:  # a bug here must not cost a slot or the loop
            log.exception("task %s: worker error", execution.task.id)
        finally:
            self.give(execution.route.topic, 1)

    async def drain(self, timeout_s: float) -> None:
        """Let in-flight tasks finish for `timeout_s`, then release the rest."""
        if not self.jobs:
            return
        log.info("draining %d in-flight tasks (up to %.1f s)", len(self.jobs), timeout_s)
        _, late = await asyncio.wait(set(self.jobs), timeout=timeout_s)
        if late:
            log.warning("releasing %d tasks still running after the drain timeout", len(late))
            for job in late:
                job.cancel()
            await asyncio.wait(late, timeout=SETTLE_GRACE_S)

    def release_all(self) -> None:
        """Stop waiting for handlers: release their tasks now (second signal)."""
        for job in self.jobs:
            job.cancel()

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


class _Execution:
    """One delivery: call the handler under a renewed lease, then Ack or Nack it."""

    def __init__(self, session: _Session, route: Route, task: Task, leased_at: float) -> None:
        self.session = session
        self.client = session.client
        self.route = route
        self.task = task
        self.lease_s = session.config.visibility_timeout_s
        self.expires = leased_at + self.lease_s  # monotonic, like every local deadline here
        self.lost = False
        self.heartbeat: asyncio.Task[None] | None = None

    async def run(self) -> None:
        session = self.session
        session.unrenewed[self] = None  # session.keep_leases() renews it if it runs long
        started = time.perf_counter()
        try:
            with tracing.execution(self.task) if session.traced else tracing.NO_SPAN:
                outcome = await self._call()
        finally:
            session.unrenewed.pop(self, None)
            if self.heartbeat is not None:
                self.heartbeat.cancel()
        session.observe_handler(self.task.topic, outcome.name, time.perf_counter() - started)
        if not self.lost:
            await self._settle(outcome)

    def renew_at(self) -> float:
        """When the lease is due for renewal (monotonic): at 2/3 of it."""
        return self.expires - self.lease_s / 3

    def start_heartbeat(self) -> None:
        self.heartbeat = asyncio.get_running_loop().create_task(self._heartbeat())

    async def _call(self) -> Outcome:
        """Run the handler; how it ended decides the outcome (cancelled: released)."""
        try:
            await self._invoke()
        except asyncio.CancelledError:
            return RELEASE
        except (RetryTask, DeadLetterTask) as exc:
            log.info("task %s of %s: %s", self.task.id, self.task.topic, describe(exc))
            return outcome_of(exc)
        except Exception as exc:
            log.warning("task %s of %s failed", self.task.id, self.task.topic, exc_info=True)
            return outcome_of(exc)
        return ACK

    async def _invoke(self) -> None:
        handler, task = self.route.handler, self.task
        if self.route.is_async:
            result = await handler(task)
        else:
            run = contextvars.copy_context().run
            loop = asyncio.get_running_loop()
            result = await loop.run_in_executor(self.session.pool, run, handler, task)
        if inspect.isawaitable(result):  # a sync callable that returned a coroutine
            await result

    async def _heartbeat(self) -> None:
        """Renew now (the first renewal is due), then whenever the next one is."""
        pause = await self._renew()
        while pause is not None:
            await asyncio.sleep(pause)
            pause = await self._renew()

    def _until_renewal(self) -> float:
        return max(self.renew_at() - time.monotonic(), 0.0)

    async def _renew(self) -> float | None:
        """ExtendLease; seconds until the next renewal, None when the lease is lost."""
        sent = time.monotonic()
        try:
            await self.client.extend_lease(self.task, visibility_timeout=self.lease_s)
        except AtpError as exc:
            if not transient(exc):
                log.warning(
                    "task %s: lease lost, its result is not recorded: %s", self.task.id, exc
                )
                self.lost = True
                return None
            if time.monotonic() < self.expires:
                return min(1.0, self.lease_s / 10)
            log.warning("task %s: lease ran out, server unreachable: %s", self.task.id, exc)
            return None  # the Ack/Nack may still land if nobody took the task over
        self.expires = sent + self.lease_s
        return self._until_renewal()

    async def _settle(self, outcome: Outcome) -> None:
        """Ack or Nack; retried while the server is unreachable and the lease still holds."""
        backoff = Backoff(*self.session.config.backoff_s)
        while True:
            try:
                await self._send(outcome)
                return
            except AtpError as exc:
                left = self.expires - time.monotonic()
                if not transient(exc) or left <= 0:
                    log.warning("task %s: result not recorded: %s", self.task.id, exc)
                    return
                await asyncio.sleep(min(backoff.next(), left))

    async def _send(self, outcome: Outcome) -> None:
        if outcome.ack:
            await self.session.acker.ack(self.task)
            return
        after = (
            dt.timedelta(milliseconds=outcome.retry_after_ms) if outcome.retry_after_ms else None
        )
        await self.client.nack(
            self.task, outcome.error, after, outcome.dead_letter, release=outcome.release
        )


class _Fetcher:
    """A fetch loop of one topic: reserve free slots, long-poll Retrieve, start the tasks.

    A topic has one long-polling fetcher, and while it has a backlog (a Retrieve came back
    full) up to MAX_POLLS_PER_TOPIC - 1 extra ones that Retrieve full batches without waiting on
    the server; they pause while the topic is idle, so an idle worker holds one long poll per
    topic and a due task wakes one Retrieve, not several."""

    def __init__(
        self, session: _Session, route: Route, backlog: asyncio.Event, extra: bool = False
    ) -> None:
        self.session = session
        self.route = route
        self.backlog = backlog  # shared by the topic's fetchers: its last Retrieve came back full
        self.extra = extra
        self.backoff = Backoff(*session.config.backoff_s)
        self.hungry = False  # the last Retrieve filled every slot it asked for
        self.closing = False  # set on stop: start no more Retrieves
        self.polling_since = 0.0  # monotonic start of the Retrieve in flight

    async def run(self) -> None:
        while not self.closing:
            if self.extra:
                await self.backlog.wait()
            await self.tick()

    def settle_left(self) -> float:
        """How long the Retrieve in flight needs before cancelling it reaches the server.
        Measured with grpcio 1.85: a unary call cancelled within its first milliseconds may
        still be sent, and the server never hears of the cancel, so the orphaned long poll
        goes on to lease tasks to nobody (until their visibility timeout)."""
        return max(self.polling_since + POLL_SETTLE_S - time.monotonic(), 0.0)

    async def tick(self) -> None:
        """One Retrieve; errors are logged and paused on, never raised (only cancellation)."""
        config, topic = self.session.config, self.route.topic
        want = config.batch_size if self.hungry or self.extra else 1  # idle: one slot only
        count = await self.session.reserve(topic, want)
        if self.closing:
            self.session.give(topic, count)
            return
        tasks: list[Task] = []
        started = self.polling_since = time.monotonic()
        try:
            wait_s = 0.0 if self.extra else config.wait_s
            tasks = await self.session.client.retrieve(
                topic, count, config.visibility_timeout_s, wait_s
            )
            pause = 0.0 if tasks else IDLE_PAUSE_S - (time.monotonic() - started)
            self.backoff.reset()
        except AtpError as exc:
            pause = self.backoff.next()
            # The server may simply not be up yet (all roles start together): quiet at first.
            level = logging.WARNING if self.backoff.failures > QUIET_FAILURES else logging.INFO
            log.log(level, "retrieve %s failed (%s); again in %.2f s", topic, exc, pause)
        finally:
            self.session.give(topic, count - len(tasks))
        self.hungry = len(tasks) == count
        if self.hungry:
            self.backlog.set()
        else:
            self.backlog.clear()
        leased_at = time.monotonic()  # the server leased them just before it answered
        for task in tasks:
            self.session.start(task, self.route, leased_at)
        if pause > 0:
            await asyncio.sleep(pause)


class Worker:
    """Runs handlers for topics: `@worker.task("topic")`, then `worker.run()`."""

    def __init__(
        self,
        address: str,
        *,
        concurrency: int = 10,
        batch_size: int | None = None,
        visibility_timeout: Duration = 30.0,
        wait: Duration = 20.0,
        drain_timeout: Duration = 30.0,
        reconnect_backoff: tuple[float, float] = (0.1, 5.0),
        token: str | None = None,
        tls: Tls | None = None,
    ) -> None:
        """`concurrency`: handlers at once, all topics together; `batch_size`: most tasks per
        Retrieve (default min(concurrency, 100)); while a topic has a backlog it keeps up to
        concurrency // batch_size Retrieves in flight (at most 4), so fetching overlaps
        handling, and one long poll while idle; durations in seconds or timedeltas;
        `token`/`tls`: as for AsyncClient."""
        self.address = address
        self.config = _config(
            concurrency, batch_size, visibility_timeout, wait, drain_timeout, reconnect_backoff
        )
        self.token, self.tls = token, tls
        self.routes: dict[str, Route] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._session: _Session | None = None
        self._stop_requested = False
        self._signals = 0

    def task(self, topic: str, *, concurrency: int | None = None) -> Callable[[H], H]:
        """Decorator: `handler` (sync or async, taking the Task) runs the tasks of `topic`."""

        def decorate(handler: H) -> H:
            self.register(topic, handler, concurrency)
            return handler

        return decorate

    def register(self, topic: str, handler: Handler, concurrency: int | None = None) -> None:
        """Route `topic` to `handler`, optionally at most `concurrency` of its tasks at once."""
        validation.topic(topic)
        if topic in self.routes:
            raise ValueError(f"topic {topic!r} has a handler already")
        if concurrency is not None and concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        if self._loop is not None:
            raise RuntimeError("register handlers before the worker runs")
        self.routes[topic] = Route(topic, handler, concurrency, _is_async(handler))

    def run(self) -> None:
        """Block until stop() or SIGTERM/SIGINT (handled when called in the main thread)."""
        asyncio.run(self._run_with_signals())

    async def run_async(self) -> None:
        """Run in the current event loop until stop(); returns after the drain."""
        if not self.routes:
            raise RuntimeError("no handlers: register one with @worker.task(topic) first")
        if self._loop is not None:
            raise RuntimeError("this worker is running already")
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        if self._stop_requested:
            self._stop.set()
        try:
            async with AsyncClient(self.address, token=self.token, tls=self.tls) as client:
                await self._serve(client, self._stop)
        finally:
            self._loop = self._stop = self._session = None
            self._stop_requested, self._signals = False, 0

    def stop(self) -> None:
        """Stop fetching at once and drain; safe from any thread and from signal handlers."""
        self._stop_requested = True
        loop, event = self._loop, self._stop
        if loop is None or event is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            event.set()
        elif not loop.is_closed():
            loop.call_soon_threadsafe(event.set)

    async def _serve(self, client: AsyncClient, stop: asyncio.Event) -> None:
        session = self._session = _Session(self.config, client, self.routes.values())
        fetchers: dict[_Fetcher, str] = {}
        for route in self.routes.values():
            backlog = asyncio.Event()
            for n in range(_polls(self.config, route)):
                fetchers[_Fetcher(session, route, backlog, extra=n > 0)] = route.topic
        loops = [asyncio.create_task(f.run(), name=f"atp-fetch-{t}") for f, t in fetchers.items()]
        keeper = asyncio.create_task(session.keep_leases(), name="atp-leases")
        topics = ", ".join(self.routes)
        log.info("worker on %s: %s, concurrency %d", self.address, topics, self.config.concurrency)
        try:
            await stop.wait()
        finally:
            await _stop_fetching(list(fetchers), loops)
            await session.drain(self.config.drain_timeout_s)
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)
            session.close()
            log.info("worker stopped")

    async def _run_with_signals(self) -> None:
        loop = asyncio.get_running_loop()
        handled = threading.current_thread() is threading.main_thread()
        sigs = (signal.SIGTERM, signal.SIGINT) if handled else ()
        for sig in sigs:
            loop.add_signal_handler(sig, self._on_signal, sig)
        try:
            await self.run_async()
        finally:
            for sig in sigs:
                loop.remove_signal_handler(sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        self._signals += 1
        if self._signals == 1:
            drain = self.config.drain_timeout_s
            log.info("%s: stopping, in-flight tasks may take %.1f s", sig.name, drain)
            self.stop()
        elif self._session is not None:
            log.warning("%s again: releasing in-flight tasks now", sig.name)
            self._session.release_all()


async def _stop_fetching(fetchers: list[_Fetcher], loops: list[asyncio.Task[None]]) -> None:
    """No new Retrieves; cut the long polls in flight (once the server has surely seen them)."""
    for fetcher in fetchers:
        fetcher.closing = True
    await asyncio.sleep(max((f.settle_left() for f in fetchers), default=0.0))
    for loop in loops:
        loop.cancel()
    await asyncio.gather(*loops, return_exceptions=True)


def _polls(config: WorkerConfig, route: Route) -> int:
    """Fetchers of one topic: as many full batches as its slots allow, at most
    MAX_POLLS_PER_TOPIC. With a backlog, a batch's round trip (the server leasing it, the
    reply) then overlaps the handling of the last one; each holds its own reserved slots."""
    slots = min(route.concurrency or config.concurrency, config.concurrency)
    return max(1, min(MAX_POLLS_PER_TOPIC, slots // config.batch_size))


def _is_async(handler: Handler) -> bool:
    call = getattr(handler, "__call__", None)  # noqa: B004 - async callable objects count too
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(call)


def _seconds(value: Duration, field: str) -> float:
    return to_ms(value, field) / 1000


def _config(
    concurrency: int,
    batch_size: int | None,
    visibility_timeout: Duration,
    wait: Duration,
    drain_timeout: Duration,
    backoff: tuple[float, float],
) -> WorkerConfig:
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    batch = min(concurrency, 100) if batch_size is None else batch_size
    if batch < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch}")
    lease = _seconds(visibility_timeout, "visibility_timeout")
    if lease <= 0:
        raise ValueError("visibility_timeout must be > 0")
    low, high = backoff
    if not 0 < low <= high:
        raise ValueError(
            f"reconnect_backoff must be (low, high) with 0 < low <= high, got {backoff}"
        )
    wait_s, drain_s = _seconds(wait, "wait"), _seconds(drain_timeout, "drain_timeout")
    return WorkerConfig(concurrency, batch, lease, wait_s, drain_s, (low, high))
