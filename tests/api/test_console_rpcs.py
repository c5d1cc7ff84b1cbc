"""The console's RPCs (docs/adr/0017) through the AsyncClient against the in-process server and
a real Redis: GetTaskHistory, ListTasks, filtered ListDeadLetters, RedriveDeadLetters, a
requeue with an edited payload, ListWorkers and FireSchedule; bad input changes nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis

from appliance import AsyncClient
from appliance.client.browse import DeadLetterFilter
from appliance.errors import InvalidArgument, NotFound
from appliance.model import TaskState, WorkerStream
from appliance.proto import queue_pb2 as pb
from tests.conftest import on_both
from tests.store.helpers import snapshot


@pytest.fixture
async def client(server: Any) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(server.address) as c:
        yield c


async def seed_dead(client: AsyncClient, topic: str, errors: dict[str, int]) -> list[str]:
    ids = []
    for error, count in errors.items():
        for i in range(count):
            ids.append(await client.enqueue(topic, "{}", id=f"{error.split()[0]}-{i}"))
        for task in await client.retrieve(topic, batch_size=count):
            await client.nack(task, error, dead_letter=True)
    return ids


@on_both
async def test_history_of_a_task(client: AsyncClient) -> None:
    task_id = await client.enqueue("orders", "p")
    (task,) = await client.retrieve("orders")
    await client.nack(task, "boom", dead_letter=True)
    history = await client.task_history(task_id)
    assert (history.id, history.topic, history.state) == (task_id, "orders", TaskState.DEAD)
    assert [e.kind for e in history.events] == ["enqueue", "lease", "nack", "dead"]
    assert history.events[1].detail.startswith("retrieve ")  # who leased it
    assert (history.events[2].detail, history.events[3].detail) == ("boom", "asked")
    with pytest.raises(NotFound):
        await client.task_history("nope", "orders")
    with pytest.raises(InvalidArgument):
        await client.task_history("")


@on_both
async def test_list_tasks_by_state_in_pages_and_by_id(client: AsyncClient) -> None:
    for i in range(5):
        await client.enqueue("jobs", "x" * 500, id=f"a-{i}", delay=i)
    await client.enqueue("jobs", "b", id="b-0", delay=60)
    (running,) = await client.retrieve("jobs")
    assert running.id == "a-0"
    first = await client.list_tasks("jobs", TaskState.PENDING, limit=3)
    assert [t.id for t in first.tasks] == ["a-1", "a-2", "a-3"] and first.next_cursor
    assert len(first.tasks[0].payload) == 200  # a preview
    rest = await client.list_tasks("jobs", TaskState.PENDING, limit=3, cursor=first.next_cursor)
    assert [t.id for t in rest.tasks] == ["a-4", "b-0"] and not rest.next_cursor
    found = await client.list_tasks("jobs", TaskState.PENDING, id_prefix="b-")
    assert [t.id for t in found.tasks] == ["b-0"]
    held = await client.list_tasks("jobs", TaskState.RUNNING)
    assert [(t.id, t.state) for t in held.tasks] == [("a-0", TaskState.RUNNING)]
    with pytest.raises(InvalidArgument):
        await client.list_tasks("jobs", TaskState.DEAD)


async def test_redrive_by_filter_is_one_call(
    client: AsyncClient, redis_client: redis.Redis
) -> None:
    await seed_dead(client, "bill", {"card declined": 3, "timeout at bank": 2})
    page = await client.list_dead_letters("bill", wanted=DeadLetterFilter("CARD"))
    assert sorted(d.task.id for d in page.letters) == ["card-0", "card-1", "card-2"]
    before = snapshot(redis_client)
    future = DeadLetterFilter("card", from_ms=2**50)
    assert (await client.redrive_dead_letters("bill", True, future)).count == 0
    assert snapshot(redis_client) == before
    done = await client.redrive_dead_letters("bill", True, DeadLetterFilter("card"))
    assert (done.count, done.scanned, done.next_cursor) == (3, 5, "")
    left = await client.list_dead_letters("bill")
    assert sorted(d.task.id for d in left.letters) == ["timeout-0", "timeout-1"]
    assert (await client.get_task("card-1")).state == TaskState.PENDING
    # bounded per call: one dead letter looked at, then on with the cursor
    step = await client.redrive_dead_letters(
        "bill", False, DeadLetterFilter("timeout"), scan_limit=1
    )
    assert (step.count, step.scanned) == (1, 1) and step.next_cursor
    rest = await client.redrive_dead_letters(
        "bill", False, DeadLetterFilter("timeout"), cursor=step.next_cursor
    )
    assert (rest.count, rest.next_cursor) == (1, "")
    assert (await client.list_dead_letters("bill")).letters == []
    with pytest.raises(InvalidArgument):
        await client.redrive_dead_letters("bill", True, DeadLetterFilter(), scan_limit=-1)


async def test_requeue_with_an_edited_payload(
    client: AsyncClient, redis_client: redis.Redis
) -> None:
    (one, two) = await seed_dead(client, "mail", {"bounce": 2})
    before = snapshot(redis_client)
    with pytest.raises(InvalidArgument):
        await client.requeue_dead_letters("mail", [one, two], payload='{"fixed": 1}')
    assert snapshot(redis_client) == before
    assert await client.requeue_dead_letters("mail", [one], payload='{"fixed": 1}') == 1
    task = await client.get_task(one)
    assert (task.state, task.payload) == (TaskState.PENDING, '{"fixed": 1}')
    history = await client.task_history(one)
    assert (history.events[-1].kind, history.events[-1].detail) == ("requeue", "payload edited")


@on_both
async def test_list_workers_shows_a_connected_stream(client: AsyncClient) -> None:
    await client.enqueue("jobs", "p")
    stream = await client.open_work({"jobs": 0, "other": 0}, 3, 30_000, name="w-test")
    try:

        async def listed() -> WorkerStream | None:
            found = [w for w in (await client.list_workers()).streams if w.worker_name == "w-test"]
            return found[0] if found and found[0].in_flight == 1 else None

        worker = None
        for _ in range(50):
            worker = await listed()
            if worker:
                break
            await asyncio.sleep(0.1)
        assert worker is not None
        assert (list(worker.topics), worker.credits) == (["jobs", "other"], 3)
        assert worker.peer and worker.server and worker.last_seen_ms >= worker.connected_ms
        history = await client.task_history(
            (await client.list_tasks("jobs", TaskState.RUNNING)).tasks[0].id
        )
        assert history.events[1].detail == f"stream {worker.stream_id} w-test"
    finally:
        await stream.close(clean=False)
    for _ in range(50):
        if not any(w.worker_name == "w-test" for w in (await client.list_workers()).streams):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the ended stream is still listed")


async def test_fire_schedule(client: AsyncClient, redis_client: redis.Redis) -> None:
    await client.create_schedule(pb.Schedule(id="s", topic="t", payload="{}", interval_ms=60_000))
    fired = await client.fire_schedule("s")
    assert fired.task_id == f"sched:s:{fired.fire_time_ms}:now"
    assert (await client.get_schedule("s")).last_fire_time_ms == fired.fire_time_ms
    before = snapshot(redis_client)
    with pytest.raises(NotFound):
        await client.fire_schedule("nope")
    assert snapshot(redis_client) == before
