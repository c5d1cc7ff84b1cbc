"""Running one delivery: call the handler (async on the loop, sync in the thread pool) and say
how it ended (an Outcome: Ack, or Nack with its error and instructions).

Knows handlers and outcomes, nothing of the wire (appliance/worker/runtime.py sends the
settles). Must not import grpc, redis or the store.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import dataclasses
import inspect
import logging
import random
from collections.abc import Callable
from typing import Any

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


async def call_handler(
    route: Route, task: Task, pool: concurrent.futures.ThreadPoolExecutor
) -> Outcome:
    """Run the handler; how it ended decides the outcome (cancelled: released)."""
    try:
        if route.is_async:
            result = await route.handler(task)
        else:
            run = contextvars.copy_context().run
            loop = asyncio.get_running_loop()
            result = await loop.run_in_executor(pool, run, route.handler, task)
        if inspect.isawaitable(result):  # a sync callable that returned a coroutine
            await result
    except asyncio.CancelledError:
        return RELEASE
    except (RetryTask, DeadLetterTask) as exc:
        log.info("task %s of %s: %s", task.id, task.topic, describe(exc))
        return outcome_of(exc)
    except Exception as exc:
        log.warning("task %s of %s failed", task.id, task.topic, exc_info=True)
        return outcome_of(exc)
    return ACK


def is_async(handler: Handler) -> bool:
    call = getattr(handler, "__call__", None)  # noqa: B004 - async callable objects count too
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(call)
