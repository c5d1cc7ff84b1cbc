"""The blocking Client against a real `atp --role=server` process and a real Redis: every
method, and the gRPC statuses mapped back to the domain errors."""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
import uuid
from collections.abc import Iterator

import pytest

from appliance import Client
from appliance.client import RpcFailed, common, status_name
from appliance.errors import (
    InvalidArgument,
    NotFound,
    StaleLease,
    TooLarge,
    Unavailable,
    WrongState,
)
from appliance.model import TaskState
from tests.conftest import ServerProcess
from tests.redis_server import free_port


@pytest.fixture(scope="module")
def address(redis_url: str) -> Iterator[str]:
    """One server process for the module; tests keep apart by unique topics and ids."""
    proc = ServerProcess(redis_url)
    yield proc.address
    proc.stop()


@pytest.fixture
def client(address: str) -> Iterator[Client]:
    with Client(address) as c:
        yield c


@pytest.fixture
def topic() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


def test_enqueue_payload_kinds_and_get_task(client: Client, topic: str) -> None:
    ids = [
        client.enqueue(topic, p) for p in ("text", b"bytes \xc3\xa9", {"order_id": 1024}, [1, 2])
    ]
    payloads = [client.get_task(i).payload for i in ids]
    assert payloads == ["text", "bytes é", '{"order_id":1024}', "[1,2]"]
    task = client.get_task(ids[0])
    assert task.state == TaskState.PENDING and task.topic == topic and task.lease_token == ""


def test_enqueue_timing_options(client: Client, topic: str) -> None:
    now_ms = int(time.time() * 1000)
    soon = client.get_task(client.enqueue(topic, "p", delay=dt.timedelta(seconds=30)))
    later = client.get_task(client.enqueue(topic, "p", delay_ms=60_000))
    at = client.get_task(client.enqueue(topic, "p", at=now_ms + 90_000))
    at_dt = client.get_task(
        client.enqueue(topic, "p", at=dt.datetime.now() + dt.timedelta(hours=1))
    )
    assert 25_000 < soon.execute_time_ms - now_ms < 35_000
    assert 55_000 < later.execute_time_ms - now_ms < 65_000
    assert abs(at.execute_time_ms - (now_ms + 90_000)) < 5_000
    assert 3_500_000 < at_dt.execute_time_ms - now_ms < 3_700_000
    with pytest.raises(InvalidArgument, match="at most one"):
        client.enqueue(topic, "p", delay=5, at=now_ms)


def test_client_id_is_idempotent_and_max_retries_kept(client: Client, topic: str) -> None:
    task_id = f"job-{topic}"
    assert client.enqueue(topic, "first", id=task_id, max_retries=0) == task_id
    assert client.enqueue(topic, "second", id=task_id) == task_id
    task = client.get_task(task_id)
    assert task.payload == "first" and task.max_retries == 0


def test_enqueue_many_retrieve_and_ack_many(client: Client, topic: str) -> None:
    ids = client.enqueue_many(topic, [f"p{i}" for i in range(5)], max_retries=1)
    assert len(set(ids)) == 5
    tasks = client.retrieve(topic, batch_size=10, visibility_timeout=30)
    assert sorted(t.id for t in tasks) == sorted(ids)
    assert all(t.state == TaskState.RUNNING and t.lease_token and t.attempt == 1 for t in tasks)
    stale = dataclasses.replace(tasks[0], lease_token=f"{topic}/stale.1")
    results = client.ack_many([*tasks, stale])
    assert results[:5] == [None] * 5 and isinstance(results[5], StaleLease)
    assert {client.get_task(i).state for i in ids} == {TaskState.SUCCEEDED}


def test_ack_by_id_and_token(client: Client, topic: str) -> None:
    task_id = client.enqueue(topic, "p")
    (task,) = client.retrieve(topic)
    client.ack(task_id, lease_token=task.lease_token)
    assert client.get_task(task_id).state == TaskState.SUCCEEDED
    with pytest.raises(InvalidArgument, match="lease_token"):
        client.ack(task_id)


def test_retrieve_long_polls_until_a_delayed_task_is_due(client: Client, topic: str) -> None:
    client.enqueue(topic, "p", delay=0.3)
    assert client.retrieve(topic) == []
    started = time.monotonic()
    (task,) = client.retrieve(topic, wait=5)
    assert 0.1 < time.monotonic() - started < 3 and task.payload == "p"


def test_nack_retry_after_and_dead_letter(client: Client, topic: str) -> None:
    task_id = client.enqueue(topic, "p", max_retries=5)
    (task,) = client.retrieve(topic)
    before_ms = int(time.time() * 1000)
    result = client.nack(task, "boom", retry_after=dt.timedelta(seconds=60))
    assert not result.dead_lettered and result.next_execute_time_ms >= before_ms + 59_000
    assert client.get_task(task_id).last_error == "boom"
    client.enqueue(topic, "q", id=f"dl-{topic}")
    (task,) = client.retrieve(topic)
    assert client.nack(task, "fatal", dead_letter=True).dead_lettered


def test_extend_lease(client: Client, topic: str) -> None:
    client.enqueue(topic, "p")
    (task,) = client.retrieve(topic, visibility_timeout=1)
    deadline = client.extend_lease(task, visibility_timeout=120)
    assert deadline >= task.lease_deadline_ms + 100_000
    assert client.get_task(task.id).lease_deadline_ms == deadline


def test_cancel(client: Client, topic: str) -> None:
    task_id = client.enqueue(topic, "p", delay=60)
    client.cancel(task_id)
    client.cancel(task_id)  # again: still canceled, still fine
    assert client.get_task(task_id).state == TaskState.CANCELED
    client.enqueue(topic, "q")
    (running,) = client.retrieve(topic)
    with pytest.raises(WrongState, match="RUNNING"):
        client.cancel(running.id)
    with pytest.raises(NotFound):
        client.cancel("no-such-task")


def test_dead_letters_list_page_requeue_purge_and_stats(client: Client, topic: str) -> None:
    ids = client.enqueue_many(topic, ["a", "b", "c"], max_retries=0)
    for task in client.retrieve(topic, batch_size=3):
        client.nack(task, f"failed {task.payload}")
    first = client.list_dead_letters(topic, limit=2)
    rest = client.list_dead_letters(topic, limit=2, cursor=first.next_cursor)
    letters = first.letters + rest.letters
    assert sorted(d.task.id for d in letters) == sorted(ids) and rest.next_cursor == ""
    assert all(
        d.task.state == TaskState.DEAD and d.task.last_error.startswith("failed") for d in letters
    )
    assert client.stats([topic]).topics[0].dead == 3
    assert client.requeue_dead_letters(topic, [ids[0]]) == 1
    assert client.purge_dead_letters(topic) == 2
    stats = client.stats([topic])
    (row,) = stats.topics
    assert (row.topic, row.pending, row.due, row.dead) == (topic, 1, 1, 0) and stats.now_ms > 0
    assert topic in {s.topic for s in client.stats().topics}


def test_errors_map_to_domain_exceptions(client: Client, topic: str) -> None:
    with pytest.raises(InvalidArgument, match="topic") as bad:
        client.enqueue("bad topic!", "p")
    assert status_name(bad.value) == "INVALID_ARGUMENT"
    with pytest.raises(NotFound):
        client.get_task("no-such-task")
    with pytest.raises(TooLarge):
        client.enqueue(topic, "x" * (1024 * 1024 + 1))
    client.enqueue(topic, "p")
    (task,) = client.retrieve(topic)
    client.ack(task)
    with pytest.raises(StaleLease) as stale:
        client.nack(task, "late")
    assert status_name(stale.value) == "FAILED_PRECONDITION"


def test_unreachable_server_is_unavailable() -> None:
    with Client(f"127.0.0.1:{free_port()}", timeout=5) as c, pytest.raises(Unavailable):
        c.stats()


def test_deadline_is_rpc_failed(client: Client, topic: str) -> None:
    short = Client(client.address, timeout=0.2)
    with short, pytest.raises(RpcFailed) as exc:
        short.retrieve(topic, wait=0)  # no task: the server answers at once...
        long_poll = common.retrieve(topic, 1, None, wait=2)
        short._run(dataclasses.replace(long_poll, extra_timeout_s=0))  # outlives 0.2 s
    assert exc.value.status == "DEADLINE_EXCEEDED" and status_name(exc.value) == "DEADLINE_EXCEEDED"


def test_stats_lag_of_the_oldest_due_task(client: Client, topic: str) -> None:
    client.enqueue(topic, "p", id=f"{topic}-lag")
    time.sleep(0.05)
    stats = client.stats([topic])
    assert 40 <= stats.now_ms - stats.topics[0].oldest_due_ms < 10_000
