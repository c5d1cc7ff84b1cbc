"""A stream worker frozen with SIGSTOP while it holds a task: how long the server takes to give
the task back. Used with the server's keepalive (tests/api/test_work_keepalive.py) and behind
nginx, where only the stream's silence rule can find it (tests/lb/test_timeouts.py)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time

from appliance import AsyncClient
from appliance.model import Task, TaskState

# A worker holding one delivery of the topic argv[2] on a Work stream with a 60 s lease (so
# only the stream's end can release it): prints the task id once delivered, then reads on.
WORKER = """
import asyncio, sys
from appliance import AsyncClient
from appliance.client.work import Delivery

async def main():
    async with AsyncClient(sys.argv[1]) as client:
        stream = await client.open_work({sys.argv[2]: 0}, 1, 60_000)
        async for event in stream.events():
            if isinstance(event, Delivery):
                print(event.tasks[0].id, flush=True)

asyncio.run(main())
"""


async def freeze_holder(
    address: str, topic: str, task_id: str, limit_s: float
) -> tuple[Task, float]:
    """Enqueue `task_id`, let a worker process take it on a stream, SIGSTOP the worker; the
    task as soon as it is no longer RUNNING (or after `limit_s`) and the seconds that took."""
    async with AsyncClient(address) as client:
        await client.enqueue(topic, "x", id=task_id)
        worker = await asyncio.create_subprocess_exec(
            sys.executable, "-c", WORKER, address, topic, stdout=asyncio.subprocess.PIPE
        )
        try:
            assert worker.stdout is not None
            line = await asyncio.wait_for(worker.stdout.readline(), 15)
            assert line.strip() == task_id.encode()
            os.kill(worker.pid, signal.SIGSTOP)
            frozen = time.monotonic()
            task = await client.get_task(task_id)
            while task.state is TaskState.RUNNING and time.monotonic() - frozen < limit_s:
                await asyncio.sleep(0.1)
                task = await client.get_task(task_id)
            return task, time.monotonic() - frozen
        finally:  # SIGKILL ends a stopped process too; a SIGCONT after it could find it reaped
            worker.kill()
            await worker.wait()
