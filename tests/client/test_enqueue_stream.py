"""The SDK's enqueue() over EnqueueStream, against a real `atp --role=server` process and a
real Redis: each call gets its own id (in call order) and its own error, with the unary
path's error class, from many threads and many asyncio tasks at once."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator

import grpc
import pytest

from appliance import AsyncClient, Client
from appliance.client import common, enqueue_stream
from appliance.errors import AtpError, InvalidArgument, TooLarge
from appliance.proto import queue_pb2 as pb
from appliance.proto import queue_pb2_grpc as pb_grpc
from tests.conftest import ServerProcess

BAD = [
    ("bad topic!", "x", InvalidArgument),
    ("", "x", InvalidArgument),
    ("ok", "x" * (1024 * 1024 + 1), TooLarge),
]


@pytest.fixture(scope="module")
def address(redis_url: str) -> Iterator[str]:
    proc = ServerProcess(redis_url)
    yield proc.address
    proc.stop()


@pytest.fixture
def topic() -> str:
    return f"s-{uuid.uuid4().hex[:10]}"


def pending(address: str, topic: str) -> int:
    with Client(address) as c:
        (stats,) = c.stats([topic]).topics
        return stats.pending


def unary_error(address: str, topic: str, payload: str) -> type[AtpError]:
    """The class of the error the unary Enqueue RPC gives this request."""
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.DelayQueueServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.Enqueue(pb.EnqueueRequest(topic=topic, payload=payload))
    return type(common.map_error(caught.value))


def test_ids_come_back_in_call_order(address: str, topic: str) -> None:
    with Client(address) as c:
        given = [f"{topic}-{n}" for n in range(50)]
        assert [c.enqueue(topic, "p", id=i) for i in given] == given
        made = [c.enqueue(topic, f"p{n}") for n in range(50)]
        assert len(set(made)) == 50
        assert [c.get_task(i).payload for i in made] == [f"p{n}" for n in range(50)]
        assert c.enqueue(topic, "again", id=given[0]) == given[0]  # idempotent, as unary
    assert pending(address, topic) == 100


def test_a_bad_call_fails_alone_with_the_unary_error(address: str, topic: str) -> None:
    with Client(address) as c:
        for bad_topic, payload, cls in BAD:
            assert unary_error(address, bad_topic, payload) is cls
            with pytest.raises(cls):
                c.enqueue(bad_topic, payload)
            assert c.get_task(c.enqueue(topic, "after")).payload == "after"  # stream lives on
    assert pending(address, topic) == len(BAD)


def test_threads_share_one_client(address: str, topic: str) -> None:
    results: dict[str, str] = {}
    errors: list[BaseException] = []
    with Client(address) as c:

        def caller(k: int) -> None:
            try:
                for n in range(40):
                    payload = f"{k}-{n}"
                    if n % 10 == 3:  # bad calls mixed in: they fail alone
                        with pytest.raises(InvalidArgument):
                            c.enqueue("bad topic!", payload)
                    else:
                        results[c.enqueue(topic, payload)] = payload
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        threads = [threading.Thread(target=caller, args=(k,)) for k in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert len(results) == 16 * 36
        for task_id in list(results)[::37]:
            assert c.get_task(task_id).payload == results[task_id]
    assert pending(address, topic) == 16 * 36


async def test_asyncio_tasks_share_one_client(address: str, topic: str) -> None:
    async with AsyncClient(address) as c:

        async def one(n: int) -> tuple[str, str] | AtpError:
            payload = f"p{n}"
            try:
                return await c.enqueue(topic if n % 7 else "bad topic!", payload), payload
            except AtpError as exc:
                return exc

        outcomes = await asyncio.gather(*(one(n) for n in range(700)))
        errors = [o for o in outcomes if isinstance(o, AtpError)]
        made = dict(o for o in outcomes if not isinstance(o, AtpError))
        assert len(errors) == 100 and all(isinstance(e, InvalidArgument) for e in errors)
        assert len(made) == 600
        for task_id in list(made)[::29]:
            assert (await c.get_task(task_id)).payload == made[task_id]
        too_big = c.enqueue(topic, "x" * (1024 * 1024 + 1))
        assert isinstance((await asyncio.gather(too_big, return_exceptions=True))[0], TooLarge)
    assert pending(address, topic) == 600


async def test_async_one_at_a_time_with_client_ids(address: str, topic: str) -> None:
    async with AsyncClient(address) as c:
        given = [f"{topic}-{n}" for n in range(30)]
        assert [await c.enqueue(topic, "p", id=i, delay_ms=60_000) for i in given] == given
        task = await c.get_task(given[-1])
        assert task.execute_time_ms - task.created_at_ms >= 59_000


async def test_a_message_too_big_for_the_server_fails_alone(address: str, topic: str) -> None:
    """Over the server's 16 MiB message limit: on a shared stream it would end the stream for
    every call on it; the SDK sends big payloads by unary Enqueue, so it fails alone."""
    async with AsyncClient(address) as c:
        huge = c.enqueue(topic, "x" * (17 * 1024 * 1024))
        small = [c.enqueue(topic, f"p{n}") for n in range(300)]
        big = c.enqueue(topic, "y" * 100_000)  # under payload_max_bytes, over the stream's cut
        outcomes = await asyncio.gather(huge, big, *small, return_exceptions=True)
        assert isinstance(outcomes[0], TooLarge)
        assert all(isinstance(o, str) for o in outcomes[1:])
        assert (await c.get_task(str(outcomes[1]))).payload == "y" * 100_000
    assert pending(address, topic) == 301


def test_closed_client_refuses_and_a_new_one_works(address: str, topic: str) -> None:
    c = Client(address)
    c.enqueue(topic, "p")
    c.close()
    with Client(address) as again:
        again.enqueue(topic, "q")
    assert pending(address, topic) == 2


async def test_many_calls_in_flight_go_out_as_several_messages_at_once(
    address: str, topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1,000 calls waiting at once are split over the window (not one message of all, which
    would leave the client idle while the server writes and the server idle meanwhile), and
    every call still gets its own id."""
    taken: list[tuple[int, int]] = []  # (calls in the message, messages already on their way)
    take = enqueue_stream.StreamEnqueuer._take

    def recording(self: enqueue_stream.StreamEnqueuer) -> pb.EnqueueStreamRequest:
        message = take(self)
        taken.append((len(message.calls), self._on_way))
        return message

    monkeypatch.setattr(enqueue_stream.StreamEnqueuer, "_take", recording)
    async with AsyncClient(address) as c:
        ids = await asyncio.gather(*(c.enqueue(topic, f"p{n}") for n in range(1000)))
    assert len(set(ids)) == 1000
    assert max(n for n, _ in taken) <= 1000 // enqueue_stream.WINDOW
    assert any(on_way > 0 for _, on_way in taken)  # written while another was on its way
    assert sum(n for n, _ in taken) == 1000
    assert pending(address, topic) == 1000
