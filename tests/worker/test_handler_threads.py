"""Sync handlers: a handler thread that finishes starts the next prefetched task itself, without
waiting for the event loop, and the outcomes still reach the server (settled in batches)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from appliance import AsyncClient, Worker
from appliance.model import Task, TaskState

TASKS = 10


async def test_handler_threads_start_prefetched_tasks_while_the_loop_is_busy(
    server: Any,
) -> None:
    worker = Worker(server.address, concurrency=2, prefetch=8, drain_timeout=2)
    started: list[float] = []
    lock = threading.Lock()

    @worker.task("t")
    def handle(task: Task) -> None:
        with lock:
            started.append(time.monotonic())
        time.sleep(0.1)  # 2 threads: ~10 tasks fit the 0.5 s block, ~2 the 0.05 s before it

    async with AsyncClient(server.address) as client:
        job = asyncio.create_task(worker.run_async())
        try:
            await client.enqueue_many("t", ["x"] * TASKS, ids=[f"k{n}" for n in range(TASKS)])
            for _ in range(200):
                if started:
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)  # the rest pushed: two running, the others ready
            blocked_at = time.monotonic()
            time.sleep(0.5)  # noqa: ASYNC251 - the event loop (and the server) busy on purpose
            blocked_until = time.monotonic()
            while_blocked = [t for t in started if blocked_at < t < blocked_until]
            # Before: only what the loop had handed to the threads (at most the 2 slots).
            assert len(while_blocked) >= 4, (len(started), len(while_blocked))
            for n in range(TASKS):
                for _ in range(200):
                    if (await client.get_task(f"k{n}")).state is TaskState.SUCCEEDED:
                        break
                    await asyncio.sleep(0.02)
                assert (await client.get_task(f"k{n}")).state is TaskState.SUCCEEDED
            assert len(started) == TASKS  # each once
        finally:
            worker.stop()
            await asyncio.wait_for(job, 15)


async def test_a_finished_task_is_acked_while_its_thread_runs_a_long_next_one(
    server: Any,
) -> None:
    """A thread that takes the next task itself must not sit on the outcome it just made:
    a quick task's ack reaches the server at once, not when the long task after it ends."""
    worker = Worker(server.address, concurrency=2, prefetch=4, drain_timeout=5)

    @worker.task("t")
    def handle(task: Task) -> None:
        if task.payload != "quick":
            time.sleep(2.0)

    async with AsyncClient(server.address) as client:
        await client.enqueue_many("t", ["quick", "slow", "slow"], ids=["quick", "s1", "s2"])
        job = asyncio.create_task(worker.run_async())
        try:
            acked = False
            for _ in range(50):  # 1 s, half the long tasks' run
                if (await client.get_task("quick")).state is TaskState.SUCCEEDED:
                    acked = True
                    break
                await asyncio.sleep(0.02)
            assert acked  # before: held until a long task ended (2 s)
        finally:
            worker.stop()
            await asyncio.wait_for(job, 15)
