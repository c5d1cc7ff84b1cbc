"""The client side of the worker stream (appliance/client/work.py) against the in-process
server and a real Redis: what each settle's answer carries."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from appliance import AsyncClient
from appliance.client.work import Delivery, Settle, SettleKind, WorkStream
from appliance.model import Task


@pytest.fixture
async def client(server: Any) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(server.address) as c:
        yield c


async def _delivered(stream: WorkStream, count: int) -> list[Task]:
    got: list[Task] = []
    async for event in stream.events():
        if isinstance(event, Delivery):
            got += event.tasks
            if len(got) >= count:
                return got
    raise AssertionError("the stream ended")


async def test_nack_answer_carries_dead_lettered_and_next_due(client: AsyncClient) -> None:
    await client.enqueue("t", "retry", id="r", max_retries=3)
    await client.enqueue("t", "dead", id="d", max_retries=3)
    stream = await client.open_work({"t": 0}, credits=2, lease_ms=5000)
    try:
        tasks = {t.id: t for t in await asyncio.wait_for(_delivered(stream, 2), 5)}
        reading = asyncio.create_task(_delivered(stream, 99))
        retry = stream.settle(Settle(SettleKind.NACK, tasks["r"], "boom", retry_after_ms=60_000))
        dead = stream.settle(Settle(SettleKind.NACK, tasks["d"], "boom", dead_letter=True))
        retried, dead_lettered = await asyncio.wait_for(asyncio.gather(retry, dead), 5)
        reading.cancel()
    finally:
        await stream.close(clean=False)
    assert retried.error is None and not retried.dead_lettered
    assert retried.next_execute_time_ms >= stream.clock.now_ms() - 5_000 + 55_000
    assert dead_lettered.error is None and dead_lettered.dead_lettered
    assert dead_lettered.next_execute_time_ms == 0
