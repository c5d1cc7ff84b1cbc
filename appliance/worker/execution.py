"""Running one delivery: call the handler (async on the loop, sync in the thread pool) and say
how it ended (an Outcome: Ack, or Nack with its error and instructions).

Knows handlers and outcomes, nothing of the wire (appliance/worker/session.py sends the
settles). Must not import grpc, redis or the store.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import inspect
import json
import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from appliance import tracing
from appliance.client import RpcFailed
from appliance.errors import AtpError, DeadLetterTask, RateLimited, RetryTask, Unavailable
from appliance.model import Task

log = logging.getLogger("appliance.worker")
Handler = Callable[[Task], Any]
"""Takes the leased Task; a plain function runs in a thread, a coroutine function on the loop."""

TRANSIENT_STATUSES = frozenset({"DEADLINE_EXCEEDED", "CANCELLED", "UNKNOWN", "INTERNAL", "ABORTED"})
ERROR_TEXT_MAX = 2000  # chars of "<ExceptionType>: <message>" sent with a Nack


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
    result: str = ""  # Ack: the handler's return value (a workflow step's output; ADR 0010)

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
NOT_STARTED = Outcome(
    ack=False,
    error="released: the worker held it past its lease and did not start it",
    release=True,
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


def outcome_of_call(route: Route, task: Task) -> Outcome:
    """Run a sync handler here (a handler thread); how it ended decides the outcome."""
    try:
        result = route.handler(task)
        if inspect.isawaitable(result):  # a sync callable that returned a coroutine
            result = asyncio.run(_awaited(result))
    except Exception as exc:
        return _raised(task, exc)
    return acked(result)


async def _awaited(result: Any) -> Any:
    return await result


def acked(value: Any) -> Outcome:
    """Ack with the handler's return value as the task's result: text as is, bytes as UTF-8,
    None as none, anything else as JSON."""
    if value is None:
        return ACK
    if isinstance(value, bytes):
        return Outcome(ack=True, result=value.decode(errors="replace"))
    return Outcome(ack=True, result=value if isinstance(value, str) else json.dumps(value))


async def call_async_handler(route: Route, task: Task) -> Outcome:
    """Run an async handler on the loop; how it ended decides the outcome (cancelled:
    released)."""
    try:
        value = await route.handler(task)
    except asyncio.CancelledError:
        return RELEASE
    except Exception as exc:
        return _raised(task, exc)
    return acked(value)


def _raised(task: Task, exc: Exception) -> Outcome:
    """The outcome of a handler that raised, logged: a retry or dead-letter request at info,
    any other exception at warning with its traceback."""
    if isinstance(exc, RetryTask | DeadLetterTask):
        log.info("task %s of %s: %s", task.id, task.topic, describe(exc))
    else:
        log.warning("task %s of %s failed", task.id, task.topic, exc_info=exc)
    return outcome_of(exc)


Finished = Callable[[list[tuple[Any, Outcome, float]]], None]
"""Called on the event loop with what ran meanwhile: (the caller's item, its outcome, seconds)
for each handler call that ended since the last call."""
Work = tuple[Route, Task, Any]
Take = Callable[[Any], "Work | None"]
"""Called on a handler thread with the item it just ran: the next work to run at once on this
thread (its slot passes on), or None (the slot is given back; the loop starts what waits)."""


class HandlerThreads:
    """The threads that run sync handlers. A thread that finishes a handler asks `take` for the
    next work and runs it at once, without a round through the event loop; only when there is
    none does it wait on the queue that run() fills. Each outcome wakes the loop at once unless
    a wake-up is already on its way (one call_soon_threadsafe for many), so outcomes that end
    together settle as one message and none waits for the next handler to end. Cheaper per
    task than run_in_executor (no future per call, no wake-up per call)."""

    def __init__(
        self,
        count: int,
        loop: asyncio.AbstractEventLoop,
        finished: Finished,
        take: Take | None = None,
    ) -> None:
        self._loop = loop
        self._finished = finished
        self._take = take or _nothing
        self._inbox: queue.SimpleQueue[Work | None] = queue.SimpleQueue()
        self._done: collections.deque[tuple[Any, Outcome, float]] = collections.deque()
        self._lock = threading.Lock()
        self._woken = False
        self._threads = [
            threading.Thread(target=self._serve, name=f"atp-handler-{n}", daemon=True)
            for n in range(count)
        ]
        for thread in self._threads:
            thread.start()

    def run(self, route: Route, task: Task, item: Any) -> None:
        """Queue one handler call; `finished(item, outcome, seconds)` follows on the loop."""
        self._inbox.put((route, task, item))

    def _serve(self) -> None:
        traced = tracing.enabled()
        work = self._inbox.get()
        while work is not None:
            route, task, item = work
            started = time.perf_counter()
            with tracing.execution(task) if traced else tracing.NO_SPAN:
                outcome = outcome_of_call(route, task)
            self._done.append((item, outcome, time.perf_counter() - started))
            self._wake()  # before the next handler: its outcome must not wait for that one
            work = self._take(item)
            if work is None:
                work = self._inbox.get()

    def _wake(self) -> None:
        with self._lock:
            wake, self._woken = not self._woken, True
        if wake:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody listens
                self._loop.call_soon_threadsafe(self._collect)

    def _collect(self) -> None:
        with self._lock:
            self._woken = False
        done = self._done
        batch = [done.popleft() for _ in range(len(done))]  # others may append meanwhile
        if batch:
            self._finished(batch)

    def close(self) -> None:
        """Let the threads end after what they run now (a running handler cannot be stopped)."""
        for _ in self._threads:
            self._inbox.put(None)


def _nothing(item: Any) -> None:
    return None


def is_async(handler: Handler) -> bool:
    call = getattr(handler, "__call__", None)  # noqa: B004 - async callable objects count too
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(call)
