"""Calls of concurrent coroutines gathered into one Redis round trip: the workflow advancer
hands many runs off at once under load (one coroutine per run), and each hand-off's pipeline
and task write would otherwise be a round trip of its own (docs/adr/0010, "batched").

A call joins the batch of the event loop's current turn: the first call of a turn schedules
the flush for the next one, so a lone call waits no longer than that turn. Every call's
commands keep their order on the pipeline, and each caller gets its own replies, or the
batch's error. Nothing here knows a key or a script.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

from appliance.model import NewTask

T = TypeVar("T")
Build = Callable[[Any], None]  # queues commands on a pipeline


class Gather(Generic[T]):
    """Items from concurrent callers, sent by `send` as one batch; each caller gets its
    slice of the answers (`send` answers one result per item, in order)."""

    def __init__(self, send: Callable[[list[T]], Awaitable[list[Any]]]) -> None:
        self._send = send
        self._queued: list[tuple[list[T], asyncio.Future[list[Any]]]] = []
        self._flushes: set[asyncio.Task[None]] = set()

    async def settle(self) -> None:
        """Until the batches under way are answered (a stop waits for them)."""
        await asyncio.gather(*self._flushes, return_exceptions=True)

    async def call(self, items: Sequence[T]) -> list[Any]:
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._queued.append((list(items), future))
        if len(self._queued) == 1:  # the flush's first step runs in the loop's next turn
            self._start()
        return await future

    def _start(self) -> None:
        task = asyncio.create_task(self._flush())
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _flush(self) -> None:
        queued, self._queued = self._queued, []
        try:
            answers = await self._send([item for items, _ in queued for item in items])
        except BaseException as exc:  # every caller of the batch gets it
            for _, future in queued:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        start = 0
        for items, future in queued:
            if not future.done():
                future.set_result(answers[start : start + len(items)])
            start += len(items)


class Pipelines:
    """Pipelines of concurrent callers as one: `run(build, n)` queues `build` (n commands)
    and answers its n replies. `run_many`: the store's (scripts and NOSCRIPT handled there)."""

    def __init__(self, run_many: Callable[[Build], Awaitable[list[Any]]]) -> None:
        self._gather: Gather[tuple[Build, int]] = Gather(self._send)
        self._run_many = run_many

    async def settle(self) -> None:
        await self._gather.settle()

    async def run(self, build: Build, commands: int) -> list[Any]:
        (replies,) = await self._gather.call([(build, commands)])
        return list(replies)

    async def _send(self, calls: list[tuple[Build, int]]) -> list[Any]:
        def build(pipe: Any) -> None:
            for one, _ in calls:
                one(pipe)

        replies = await self._run_many(build)
        out, start = [], 0
        for _, n in calls:
            out.append(replies[start : start + n])
            start += n
        return out


class TaskWrites:
    """Tasks of concurrent callers written by one `enqueue` call (a script call per topic,
    all in one pipeline)."""

    def __init__(self, enqueue: Callable[[list[NewTask]], Awaitable[Any]]) -> None:
        self._gather: Gather[NewTask] = Gather(self._send)
        self._enqueue = enqueue

    async def settle(self) -> None:
        await self._gather.settle()

    async def write(self, tasks: Sequence[NewTask]) -> None:
        await self._gather.call(tasks)

    async def _send(self, tasks: list[NewTask]) -> list[Any]:
        await self._enqueue(tasks)
        return [None] * len(tasks)
