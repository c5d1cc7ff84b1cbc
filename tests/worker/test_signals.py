"""`worker.run()` in a real process: SIGTERM drains in-flight work, a second signal releases it."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from typing import Any

from appliance import AsyncClient
from appliance.model import TaskState

SCRIPT = """
import asyncio, sys, time
from appliance import Worker

worker = Worker(sys.argv[1], drain_timeout=30)

@worker.task("sync")
def slow(task):
    print("started", flush=True)
    time.sleep(0.5)
    print("finished", flush=True)

@worker.task("async")
async def stuck(task):
    print("started", flush=True)
    await asyncio.sleep(60)

worker.run()
print("exited", flush=True)
"""


async def start_worker(address: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", SCRIPT, address, stdout=asyncio.subprocess.PIPE
    )


async def wait_line(proc: asyncio.subprocess.Process, expected: str) -> None:
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 15)
    assert line.decode().strip() == expected


async def test_sigterm_lets_the_handler_finish(server: Any) -> None:
    async with AsyncClient(server.address) as client:
        await client.enqueue("sync", "p", id="sig1")
        proc = await start_worker(server.address)
        await wait_line(proc, "started")
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 15) == 0
        await wait_line(proc, "finished")
        await wait_line(proc, "exited")
        assert (await client.get_task("sig1")).state == TaskState.SUCCEEDED


async def test_second_signal_releases_at_once(server: Any) -> None:
    async with AsyncClient(server.address) as client:
        await client.enqueue("async", "p", id="sig2")
        proc = await start_worker(server.address)
        await wait_line(proc, "started")
        proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.2)
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 15) == 0
        assert time.monotonic() - started < 5  # not the 30 s drain timeout
        task = await client.get_task("sig2")
        assert task.state == TaskState.PENDING and task.last_error.startswith("released")
