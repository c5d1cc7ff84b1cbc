"""The Worker against the in-process gRPC server and a real Redis: acks, failures, retries,
dead letters, lease heartbeats, graceful stop, concurrency limits and reconnects."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from appliance import AsyncClient, Worker
from appliance.errors import DeadLetterTask, InvalidArgument, RetryTask, Unavailable
from appliance.model import Task, TaskState
from tests.redis_server import free_port

FAST = {"drain_timeout": 2, "reconnect_backoff": (0.05, 0.2)}


@pytest.fixture
async def client(server: Any) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(server.address) as c:
        yield c


@contextlib.asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[asyncio.Task[None]]:
    job = asyncio.create_task(worker.run_async())
    try:
        yield job
    finally:
        worker.stop()
        await asyncio.wait_for(job, 15)


async def eventually(check: Callable[[], Awaitable[bool]], within_s: float = 8.0) -> None:
    deadline = time.monotonic() + within_s
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def in_state(client: AsyncClient, task_id: str, state: TaskState) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        try:
            return (await client.get_task(task_id)).state == state
        except Unavailable:  # a server (re)starting in the test
            return False

    return check


async def test_sync_handler_success_is_acked(server: Any, client: AsyncClient) -> None:
    worker = Worker(server.address, **FAST)
    seen: list[tuple[str, str]] = []

    @worker.task("emails")
    def send(task: Task) -> None:
        seen.append((task.payload, threading.current_thread().name))

    await client.enqueue("emails", {"to": "a@example.com"}, id="e1")
    async with running(worker):
        await eventually(in_state(client, "e1", TaskState.SUCCEEDED))
    assert seen[0][0] == '{"to":"a@example.com"}' and seen[0][1].startswith("atp-handler")


async def test_async_handler_runs_on_the_loop(server: Any, client: AsyncClient) -> None:
    worker = Worker(server.address, **FAST)
    loops: list[asyncio.AbstractEventLoop] = []

    @worker.task("t")
    async def handle(task: Task) -> None:
        await asyncio.sleep(0.01)
        loops.append(asyncio.get_running_loop())

    await client.enqueue_many("t", ["a", "b"], ids=["a1", "a2"])
    async with running(worker):
        await eventually(in_state(client, "a2", TaskState.SUCCEEDED))
        await eventually(in_state(client, "a1", TaskState.SUCCEEDED))
    assert loops == [asyncio.get_running_loop()] * 2


async def test_exception_is_retried_then_dead_lettered(server: Any, client: AsyncClient) -> None:
    worker = Worker(server.address, **FAST)
    attempts: list[int] = []

    @worker.task("t")
    def fail(task: Task) -> None:
        attempts.append(task.attempt)
        raise ValueError(f"boom {task.attempt}")

    await client.enqueue("t", "p", id="f1", max_retries=2)
    async with running(worker):
        await eventually(in_state(client, "f1", TaskState.DEAD))
    assert attempts == [1, 2, 3]
    assert (await client.get_task("f1")).last_error == "ValueError: boom 3"


async def test_retry_task_honours_after_ms(server: Any, client: AsyncClient) -> None:
    worker = Worker(server.address, **FAST)
    calls: list[float] = []

    @worker.task("t")
    async def later(task: Task) -> None:
        calls.append(time.monotonic())
        if task.attempt == 1:
            raise RetryTask("not yet", after_ms=400)

    await client.enqueue("t", "p", id="r1")
    async with running(worker):
        await eventually(in_state(client, "r1", TaskState.SUCCEEDED))
    assert len(calls) == 2 and calls[1] - calls[0] >= 0.38
    assert (await client.get_task("r1")).last_error == "RetryTask: not yet"


async def test_dead_letter_task_skips_the_retries(server: Any, client: AsyncClient) -> None:
    worker = Worker(server.address, **FAST)
    calls: list[int] = []

    @worker.task("t")
    def refuse(task: Task) -> None:
        calls.append(task.attempt)
        raise DeadLetterTask("bad payload")

    await client.enqueue("t", "p", id="d1", max_retries=5)
    async with running(worker):
        await eventually(in_state(client, "d1", TaskState.DEAD))
    assert calls == [1]
    page = await client.list_dead_letters("t")
    assert [d.task.last_error for d in page.letters] == ["DeadLetterTask: bad payload"]


async def test_long_handler_keeps_its_lease(server: Any, client: AsyncClient, store: Any) -> None:
    """Visibility timeout 0.6 s, handler 1.5 s, a watchdog recovering expired leases every
    50 ms: the heartbeat extends the lease, so the task runs once and is acked."""
    worker = Worker(server.address, visibility_timeout=0.6, **FAST)
    calls: list[int] = []

    @worker.task("slow")
    def slow(task: Task) -> None:
        calls.append(task.attempt)
        time.sleep(1.5)

    async def watchdog() -> None:
        while True:
            await store.recover_expired("slow")
            await asyncio.sleep(0.05)

    await client.enqueue("slow", "p", id="s1")
    guard = asyncio.create_task(watchdog())
    try:
        async with running(worker):
            await eventually(in_state(client, "s1", TaskState.SUCCEEDED))
    finally:
        guard.cancel()
    assert calls == [1]
    assert (await client.get_task("s1")).attempt == 1


async def test_stop_lets_in_flight_tasks_finish(server: Any, client: AsyncClient) -> None:
    worker = Worker(server.address, **FAST)
    started, finished = asyncio.Event(), asyncio.Event()

    @worker.task("t")
    async def handle(task: Task) -> None:
        started.set()
        await asyncio.sleep(0.5)
        finished.set()

    await client.enqueue("t", "p", id="g1")
    job = asyncio.create_task(worker.run_async())
    await asyncio.wait_for(started.wait(), 5)
    worker.stop()
    await asyncio.wait_for(job, 5)
    assert finished.is_set()
    assert (await client.get_task("g1")).state == TaskState.SUCCEEDED


async def test_stop_releases_tasks_past_the_drain_timeout(server: Any, client: AsyncClient) -> None:
    """A sync handler still blocked after drain_timeout: its task is released at once and the
    next worker gets it, still attempt 1 (a release does not count); the blocked thread's late
    result is not recorded."""
    worker = Worker(server.address, drain_timeout=0.2)
    started, unblock = threading.Event(), threading.Event()

    @worker.task("t")
    def stuck(task: Task) -> None:
        started.set()
        unblock.wait(10)

    await client.enqueue("t", "p", id="h1")
    job = asyncio.create_task(worker.run_async())
    await asyncio.to_thread(started.wait, 5)
    worker.stop()
    await asyncio.wait_for(job, 5)
    unblock.set()
    released = await client.get_task("h1")
    assert released.state == TaskState.PENDING and released.last_error.startswith("released"), (
        released
    )

    second = Worker(server.address, **FAST)
    attempts: list[int] = []
    second.register("t", lambda task: attempts.append(task.attempt))
    async with running(second):
        await eventually(in_state(client, "h1", TaskState.SUCCEEDED))
    assert attempts == [1]


async def test_concurrency_limits(server: Any, client: AsyncClient) -> None:
    """At most `concurrency` handlers at once in all, and a topic's own cap within that."""
    worker = Worker(server.address, concurrency=3, **FAST)
    lock = threading.Lock()
    now: dict[str, int] = {"all": 0, "u": 0}
    peak: dict[str, int] = {"all": 0, "u": 0}

    def tracked(task: Task) -> None:
        with lock:
            for key in ("all", task.topic):
                if key in now:
                    now[key] += 1
                    peak[key] = max(peak[key], now[key])
        time.sleep(0.05)
        with lock:
            for key in ("all", task.topic):
                if key in now:
                    now[key] -= 1

    worker.register("t", tracked)
    worker.register("u", tracked, concurrency=1)
    ids = await client.enqueue_many("t", [str(i) for i in range(12)])
    ids += await client.enqueue_many("u", [str(i) for i in range(4)])

    async def all_done() -> bool:
        stats = await client.stats(["t", "u"])
        return all(s.pending == 0 and s.running == 0 for s in stats.topics)

    async with running(worker):
        await eventually(all_done)
    assert peak["all"] == 3 and peak["u"] == 1
    states = {(await client.get_task(i)).state for i in ids}
    assert states == {TaskState.SUCCEEDED}


async def test_reconnects_when_the_server_comes_back(settings: Any, store: Any) -> None:
    from appliance.api.server import QueueServer

    address = f"127.0.0.1:{free_port()}"
    worker = Worker(address, **FAST)
    done: list[str] = []
    worker.register("t", lambda task: done.append(task.id))
    async with running(worker) as job:
        await asyncio.sleep(0.5)  # nothing listens: retrieve fails, the loop backs off
        assert not job.done()
        srv = QueueServer(settings.replace(grpc_addr=address), store)
        await srv.start()
        try:
            async with AsyncClient(address) as client:
                await eventually(lambda: _enqueued(client, "c1"))  # the channel reconnects too
                await eventually(in_state(client, "c1", TaskState.SUCCEEDED))
        finally:
            worker.stop()
            await asyncio.wait_for(job, 10)
            await srv.stop(0.5)
    assert done == ["c1"]


async def test_ack_is_retried_across_a_server_restart(settings: Any, store: Any) -> None:
    """The server goes away while a handler runs: its Ack waits for the server to return."""
    from appliance.api.server import QueueServer

    address = f"127.0.0.1:{free_port()}"
    first = QueueServer(settings.replace(grpc_addr=address), store)
    await first.start()
    worker = Worker(address, visibility_timeout=10, **FAST)
    started, proceed = asyncio.Event(), asyncio.Event()

    @worker.task("t")
    async def handle(task: Task) -> None:
        started.set()
        await proceed.wait()

    async with AsyncClient(address) as client:
        await client.enqueue("t", "p", id="k1")
    async with running(worker):
        await asyncio.wait_for(started.wait(), 5)
        await first.stop(0)
        proceed.set()
        await asyncio.sleep(0.3)  # the Ack fails and is retried with backoff
        second = QueueServer(settings.replace(grpc_addr=address), store)
        await second.start()
        try:
            async with AsyncClient(address) as client:
                await eventually(in_state(client, "k1", TaskState.SUCCEEDED))
                assert (await client.get_task("k1")).attempt == 1
        finally:
            worker.stop()
            await second.stop(0.5)


async def test_run_blocks_in_a_thread_until_stop(server: Any, client: AsyncClient) -> None:
    worker = Worker(server.address, **FAST)
    worker.register("t", lambda task: None)
    thread = asyncio.create_task(asyncio.to_thread(worker.run))
    await client.enqueue("t", "p", id="b1")
    await eventually(in_state(client, "b1", TaskState.SUCCEEDED))
    assert not thread.done()
    worker.stop()
    await asyncio.wait_for(thread, 10)


async def _enqueued(client: AsyncClient, task_id: str) -> bool:
    try:
        await client.enqueue("t", "p", id=task_id)
    except Unavailable:
        return False
    return True


def test_registration_is_checked() -> None:
    worker = Worker("127.0.0.1:1")
    with pytest.raises(InvalidArgument):
        worker.register("bad topic", lambda task: None)
    worker.register("t", lambda task: None)
    with pytest.raises(ValueError, match="already"):
        worker.register("t", lambda task: None)
    with pytest.raises(ValueError, match="concurrency"):
        Worker("127.0.0.1:1", concurrency=0)
    with pytest.raises(RuntimeError, match="no handlers"):
        asyncio.run(Worker("127.0.0.1:1").run_async())
