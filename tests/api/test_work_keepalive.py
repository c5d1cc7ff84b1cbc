"""The server's keepalive finds a frozen worker (SIGSTOP: its socket open, nothing answered)
and releases the tasks of its Work stream, as docs/API.md promises ("no answer to the
server's keepalive pings for 5 + 5 s"). Keepalive is shortened to 1 s here."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from appliance import AsyncClient
from appliance.api import server as server_module
from appliance.config import Settings
from appliance.model import TaskState

KEEPALIVE_MS = 1_000

# A worker holding one delivery on a Work stream with a 60 s lease (so only the stream's end
# can release it): prints the task id once delivered, then reads on.
WORKER = """
import asyncio, sys
from appliance import AsyncClient
from appliance.client.work import Delivery

async def main():
    async with AsyncClient(sys.argv[1]) as client:
        stream = await client.open_work({"t": 0}, 1, 60_000)
        async for event in stream.events():
            if isinstance(event, Delivery):
                print(event.tasks[0].id, flush=True)

asyncio.run(main())
"""


@pytest_asyncio.fixture
async def quick_keepalive_server(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Any]:
    from appliance.store import Store, connect

    monkeypatch.setattr(server_module, "KEEPALIVE_MS", KEEPALIVE_MS)
    store = Store(connect(settings), settings)
    srv = server_module.QueueServer(settings, store)
    await srv.start()
    yield srv
    await srv.stop(0.5)
    await store.close()


async def test_a_frozen_worker_is_found_dead_and_its_tasks_released(
    quick_keepalive_server: Any,
) -> None:
    address = quick_keepalive_server.address
    async with AsyncClient(address) as client:
        await client.enqueue("t", "x", id="held")
        worker = await asyncio.create_subprocess_exec(
            sys.executable, "-c", WORKER, address, stdout=asyncio.subprocess.PIPE
        )
        try:
            assert worker.stdout is not None
            line = await asyncio.wait_for(worker.stdout.readline(), 15)
            assert line.strip() == b"held"
            os.kill(worker.pid, signal.SIGSTOP)
            frozen = time.monotonic()
            task = await client.get_task("held")
            while task.state is TaskState.RUNNING and time.monotonic() - frozen < 8:
                await asyncio.sleep(0.1)
                task = await client.get_task("held")
            took = time.monotonic() - frozen
        finally:
            worker.kill()
            os.kill(worker.pid, signal.SIGCONT)
            await worker.wait()
    # keepalive time + timeout is 2 s here; the 8 s bound leaves room for a slow machine
    assert task.state is TaskState.PENDING, f"still {task.state.name} {took:.1f} s after SIGSTOP"
    assert "worker lost" in task.last_error and task.attempt == 1
