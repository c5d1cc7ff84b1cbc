"""The server's keepalive finds a frozen worker (SIGSTOP: its socket open, nothing answered)
and releases the tasks of its Work stream, as docs/API.md promises ("no answer to the
server's keepalive pings for 5 + 5 s"). Keepalive is shortened to 1 s here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from appliance.api import server as server_module
from appliance.config import Settings
from appliance.model import TaskState
from tests.frozen_worker import freeze_holder

KEEPALIVE_MS = 1_000


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
    task, took = await freeze_holder(quick_keepalive_server.address, "t", "held", 8)
    # keepalive time + timeout is 2 s here; the 8 s bound leaves room for a slow machine
    assert task.state is TaskState.PENDING, f"still {task.state.name} {took:.1f} s after SIGSTOP"
    assert "worker lost" in task.last_error and task.attempt == 1
