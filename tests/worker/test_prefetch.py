"""The Worker's prefetch: with every slot busy, the server still pushes `prefetch` more
deliveries of a topic without its own cap (so the next task is there when a slot frees), and
none beyond a topic's own cap."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from appliance import AsyncClient, Worker
from appliance.model import Task, TaskState


@pytest.fixture
async def client(server: Any) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(server.address) as c:
        yield c


async def _states_while_busy(
    server: Any, client: AsyncClient, cap: int | None, prefetch: int
) -> list[TaskState]:
    """One slot, busy with "a"; the states of "b" and "c" meanwhile."""
    worker = Worker(server.address, concurrency=1, prefetch=prefetch, drain_timeout=2)
    busy, release = asyncio.Event(), asyncio.Event()

    @worker.task("t", concurrency=cap)
    async def handle(task: Task) -> None:
        busy.set()
        await release.wait()

    await client.enqueue("t", "x", id="a")
    job = asyncio.create_task(worker.run_async())
    try:
        await asyncio.wait_for(busy.wait(), 10)
        await client.enqueue_many("t", ["y", "z"], ids=["b", "c"])
        await asyncio.sleep(0.5)
        return [(await client.get_task(i)).state for i in ("b", "c")]
    finally:
        release.set()
        worker.stop()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(job, 15)


async def test_prefetch_leases_more_than_the_busy_slots(server: Any, client: AsyncClient) -> None:
    states = await _states_while_busy(server, client, cap=None, prefetch=1)
    assert sorted(states) == [TaskState.PENDING, TaskState.RUNNING]  # one prefetched


async def test_a_topic_with_its_own_cap_gets_no_prefetch(server: Any, client: AsyncClient) -> None:
    states = await _states_while_busy(server, client, cap=1, prefetch=1)
    assert states == [TaskState.PENDING, TaskState.PENDING]
