"""The AsyncClient against the in-process gRPC server and a real Redis: every method, and the
gRPC statuses mapped back to the domain errors."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from appliance import AsyncClient
from appliance.errors import InvalidArgument, NotFound, StaleLease, Unavailable, WrongState
from appliance.model import TaskState
from tests.redis_server import free_port


@pytest.fixture
async def client(server: Any) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(server.address) as c:
        yield c


async def test_produce_consume_ack(client: AsyncClient) -> None:
    task_id = await client.enqueue("orders", {"order_id": 1024}, id="o-1024", max_retries=2)
    assert await client.enqueue("orders", "again", id="o-1024") == "o-1024"
    pending = await client.get_task(task_id)
    assert (pending.state, pending.payload, pending.max_retries) == (
        TaskState.PENDING,
        '{"order_id":1024}',
        2,
    )
    (task,) = await client.retrieve("orders", visibility_timeout=10)
    assert task.id == task_id and task.state == TaskState.RUNNING and task.lease_token
    await client.ack(task)
    assert (await client.get_task(task_id)).state == TaskState.SUCCEEDED


async def test_enqueue_many_and_ack_many(client: AsyncClient) -> None:
    ids = await client.enqueue_many("t", [b"a", "b", ["c"]], delay_ms=1, ids=["m1", "m2", "m3"])
    assert ids == ["m1", "m2", "m3"]
    await asyncio.sleep(0.01)
    tasks = await client.retrieve("t", batch_size=3)
    assert sorted(t.payload for t in tasks) == ['["c"]', "a", "b"]
    assert await client.ack_many(tasks) == [None, None, None]
    with pytest.raises(InvalidArgument, match="2 ids for 3 payloads"):
        await client.enqueue_many("t", ["a", "b", "c"], ids=["x", "y"])


async def test_long_poll_is_woken_by_enqueue(client: AsyncClient, server: Any) -> None:
    async with AsyncClient(server.address) as producer:
        poll = asyncio.create_task(client.retrieve("t", wait=5))
        await asyncio.sleep(0.2)
        started = time.monotonic()
        await producer.enqueue("t", "p")
        (task,) = await poll
    assert task.payload == "p" and time.monotonic() - started < 1.0


async def test_nack_extend_cancel(client: AsyncClient) -> None:
    await client.enqueue("t", "p", id="n1", max_retries=3)
    (task,) = await client.retrieve("t", visibility_timeout=1)
    deadline = await client.extend_lease(task, visibility_timeout=60)
    assert deadline >= task.lease_deadline_ms + 58_000
    result = await client.nack(task, "boom", retry_after=0.2)
    assert not result.dead_lettered
    again = await client.retrieve("t", wait=3)
    assert [t.attempt for t in again] == [2]
    assert (await client.nack(again[0], "fatal", dead_letter=True)).dead_lettered
    await client.enqueue("t", "later", id="c1", delay=60)
    await client.cancel("c1")
    assert (await client.get_task("c1")).state == TaskState.CANCELED


async def test_dead_letters_and_stats(client: AsyncClient) -> None:
    await client.enqueue_many("t", ["a", "b"], max_retries=0, ids=["d1", "d2"])
    for task in await client.retrieve("t", batch_size=2):
        await client.nack(task, "nope")
    page = await client.list_dead_letters("t")
    assert sorted(d.task.id for d in page.letters) == ["d1", "d2"] and page.next_cursor == ""
    assert all(d.dead_at_ms > 0 and d.task.last_error == "nope" for d in page.letters)
    assert (await client.stats(["t"])).topics[0].dead == 2
    assert await client.requeue_dead_letters("t", ["d1"]) == 1
    assert await client.purge_dead_letters("t", ["d2"]) == 1
    (row,) = (await client.stats()).topics
    assert (row.topic, row.pending, row.dead) == ("t", 1, 0)


async def test_errors_map_to_domain_exceptions(client: AsyncClient) -> None:
    with pytest.raises(InvalidArgument, match="topic"):
        await client.retrieve("")
    with pytest.raises(NotFound):
        await client.get_task("missing")
    await client.enqueue("t", "p", id="s1")
    (task,) = await client.retrieve("t")
    with pytest.raises(StaleLease):
        await client.extend_lease(dataclasses.replace(task, lease_token="t/old.1"))
    with pytest.raises(WrongState):
        await client.cancel("s1")
    await client.ack(task)
    with pytest.raises(StaleLease):
        await client.ack(task.id, lease_token="t/old.1")


async def test_unreachable_server_is_unavailable() -> None:
    async with AsyncClient(f"127.0.0.1:{free_port()}", timeout=5) as c:
        with pytest.raises(Unavailable):
            await c.stats()
