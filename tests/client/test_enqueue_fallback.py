"""An SDK newer than its server: a server without EnqueueStream answers UNIMPLEMENTED, and
enqueue() sends that call and the following ones by unary Enqueue (nothing was read, so
nothing is sent twice)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from appliance import AsyncClient, Client
from appliance.proto import queue_pb2 as pb
from appliance.proto import queue_pb2_grpc as pb_grpc


class OlderServer(pb_grpc.DelayQueueServiceServicer):
    """Unary Enqueue only (the generated base answers EnqueueStream with UNIMPLEMENTED)."""

    def __init__(self) -> None:
        self.unary: list[str] = []

    def Enqueue(self, request: pb.EnqueueRequest, context: Any) -> pb.EnqueueResponse:
        self.unary.append(request.payload)
        return pb.EnqueueResponse(success=True, id=f"id-{len(self.unary)}")


@pytest.fixture
def older() -> Iterator[tuple[str, OlderServer]]:
    from concurrent.futures import ThreadPoolExecutor

    servicer = OlderServer()
    server = grpc.server(ThreadPoolExecutor(4))
    pb_grpc.add_DelayQueueServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}", servicer
    server.stop(0)


def test_sync_client_falls_back_to_unary(older: tuple[str, OlderServer]) -> None:
    address, servicer = older
    with Client(address) as c:
        ids = [c.enqueue("t", f"p{n}") for n in range(3)]
        done: list[str] = []
        threads = [
            threading.Thread(target=lambda n=n: done.append(c.enqueue("t", f"q{n}")))
            for n in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert ids == ["id-1", "id-2", "id-3"] and len(done) == 4
    assert sorted(servicer.unary) == sorted(
        [f"p{n}" for n in range(3)] + [f"q{n}" for n in range(4)]
    )


async def test_async_client_falls_back_to_unary(older: tuple[str, OlderServer]) -> None:
    async with AsyncClient(older[0]) as c:
        assert [await c.enqueue("t", f"p{n}") for n in range(3)] == ["id-1", "id-2", "id-3"]
    assert older[1].unary == ["p0", "p1", "p2"]
