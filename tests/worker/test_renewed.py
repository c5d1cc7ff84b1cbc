"""A delivery the Worker holds longer than the lease it came with still starts while its stream
lives: the server renews it and says so (WorkRenewed), so the Worker's deadline moves on."""

from __future__ import annotations

import asyncio
from typing import Any

from appliance import AsyncClient, Worker
from appliance.model import Task, TaskState


async def test_a_delivery_held_past_its_first_deadline_starts_on_a_live_stream(
    server: Any,
) -> None:
    worker = Worker(server.address, concurrency=1, prefetch=1, visibility_timeout=0.6)
    started: list[tuple[str, int]] = []

    @worker.task("t")
    async def handle(task: Task) -> None:
        started.append((task.id, task.attempt))
        if task.id == "slow":
            await asyncio.sleep(1.5)  # holds the only slot for 2.5 leases

    async with AsyncClient(server.address) as client:
        await client.enqueue("t", "p", id="slow")
        await asyncio.sleep(0.05)
        await client.enqueue("t", "p", id="next")  # pushed at once, waits for the slot
        runner = asyncio.create_task(worker.run_async())
        try:
            for _ in range(100):
                if len(started) == 2:
                    break
                await asyncio.sleep(0.05)
            assert started == [("slow", 1), ("next", 1)]  # not given back, not started twice
            for task_id in ("slow", "next"):
                for _ in range(50):
                    if (await client.get_task(task_id)).state is TaskState.SUCCEEDED:
                        break
                    await asyncio.sleep(0.05)
                done = await client.get_task(task_id)
                assert done.state is TaskState.SUCCEEDED
                assert done.last_error == ""  # never given back as "held past its lease"
        finally:
            worker.stop()
            await asyncio.wait_for(runner, 10)
