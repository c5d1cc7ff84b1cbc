"""An SDK Worker frozen (SIGSTOP) past the server's keepalive, then resumed, must start none of
the deliveries it held: the server released them ("worker lost") and another worker may be
running them. Keepalive is shortened to 1 s (found dead within about 2 s); the same happens with
the real 5 s + 5 s and an 11 s stop.

Found by this test: when the server sent heartbeats on its own, those buffered during the stop
made the dead stream look fresh on SIGCONT. Freshness is now a round trip started after the
resume: a ping the worker sends, answered (appliance/client/work.py, WorkStream.start_refusal)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from appliance import AsyncClient
from appliance.api import server as server_module
from appliance.config import Settings
from appliance.model import TaskState

# One slot, one prefetched delivery, a 60 s lease (so only the stream's end releases them).
# The handler prints each start; "a" sleeps 1 s, so it ends while the process is stopped.
WORKER = """
import sys, time
from appliance import Worker

worker = Worker(sys.argv[1], concurrency=1, prefetch=1, visibility_timeout=60)

@worker.task("t")
def handle(task):
    print("start", task.id, task.attempt, flush=True)
    time.sleep(float(task.payload))

worker.run()
"""


@pytest_asyncio.fixture
async def quick_keepalive_server(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Any]:
    from appliance.store import Store, connect

    monkeypatch.setattr(server_module, "KEEPALIVE_MS", 1_000)
    store = Store(connect(settings), settings)
    srv = server_module.QueueServer(settings, store)
    await srv.start()
    yield srv
    await srv.stop(0.5)
    await store.close()


async def _line(stream: asyncio.StreamReader, within: float) -> str:
    try:
        return (await asyncio.wait_for(stream.readline(), within)).decode().strip()
    except TimeoutError:
        return ""


async def test_a_resumed_worker_starts_none_of_the_deliveries_it_held(
    quick_keepalive_server: Any,
) -> None:
    stopped_s = 4.0
    address = quick_keepalive_server.address
    async with AsyncClient(address) as client:
        await client.enqueue("t", "1.0", id="a")
        worker = await asyncio.create_subprocess_exec(
            sys.executable, "-c", WORKER, address, stdout=asyncio.subprocess.PIPE
        )
        try:
            assert worker.stdout is not None
            assert await _line(worker.stdout, 15) == "start a 1"
            await client.enqueue("t", "0", id="b")  # pushed at once: held, not started
            await asyncio.sleep(0.3)
            os.kill(worker.pid, signal.SIGSTOP)
            await asyncio.sleep(stopped_s)  # the server finds it dead after about 2 s
            released = await client.get_task("b")
            assert released.state is TaskState.PENDING and "worker lost" in released.last_error
            (taken,) = await client.retrieve("t", batch_size=1, visibility_timeout=60)
            assert taken.id in ("a", "b")  # leased to another worker now
            os.kill(worker.pid, signal.SIGCONT)
            started = await _line(worker.stdout, 3)
        finally:
            with contextlib.suppress(ProcessLookupError):  # it may have ended already
                worker.kill()
                os.kill(worker.pid, signal.SIGCONT)
            await worker.wait()
    # It may get a released task again under a new lease (attempt 2), never the one it held.
    assert not started.endswith(" 1"), f"the resumed worker ran a released delivery: {started!r}"
