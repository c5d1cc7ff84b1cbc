"""Fair long-poll shares per token (api/shares.py): one token holding every slot cannot starve
another; a newcomer's slot comes back from the token holding the most, whose long-poll then
answers at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import pytest_asyncio

from appliance.api._proto import queue_pb2 as pb
from appliance.api._proto import queue_pb2_grpc as pb_grpc
from appliance.api.server import QueueServer
from appliance.api.shares import Shares
from appliance.auth import hash_token
from appliance.config import Settings
from appliance.errors import RateLimited
from appliance.store import Store, connect

ENTRIES = [
    {"name": "hog", "hash": hash_token("hog-secret"), "role": "worker"},
    {"name": "small", "hash": hash_token("small-secret"), "role": "worker"},
]
HOG, SMALL = (("authorization", "Bearer hog-secret"),), (("authorization", "Bearer small-secret"),)


def test_shares_converge_to_fair_and_refuse_beyond() -> None:
    shares = Shares(6)
    hog = [shares.acquire("hog") for _ in range(6)]
    small = [shares.acquire("small") for _ in range(3)]  # each takes one back from the hog
    assert [s.evicted for s in hog] == [True] * 3 + [False] * 3
    with pytest.raises(RateLimited, match="fair share"):
        shares.acquire("small")  # 3 each: the newcomer's share is fair now
    assert (shares.used, shares.held_by("hog"), shares.held_by("small")) == (6, 3, 3)
    for slot in hog + small:
        shares.release(slot)
    assert shares.used == 0


@pytest_asyncio.fixture
async def capped(settings: Settings) -> AsyncIterator[QueueServer]:
    s = settings.replace(tokens=ENTRIES, max_long_polls=4, max_work_streams=2)
    store = Store(connect(s), s)
    server = QueueServer(s, store)
    await server.start()
    yield server
    await server.stop(0.5)
    await store.close()


async def test_a_token_holding_every_long_poll_does_not_starve_another(
    capped: QueueServer,
) -> None:
    async with grpc.aio.insecure_channel(capped.address) as channel:
        stub = pb_grpc.DelayQueueServiceStub(channel)

        async def poll(metadata: object, wait_ms: int = 2000) -> float:
            started = time.monotonic()
            await stub.Retrieve(pb.RetrieveRequest(topic="q", wait_ms=wait_ms), metadata=metadata)
            return time.monotonic() - started

        hog = [asyncio.ensure_future(poll(HOG)) for _ in range(4)]
        while capped.servicer.long_polls < 4:  # noqa: ASYNC110 - polls a counter, no event
            await asyncio.sleep(0.01)
        small = asyncio.ensure_future(poll(SMALL, 300))
        took = await small  # not RESOURCE_EXHAUSTED: it waited its full 300 ms
        assert 0.25 < took < 1.0
        done, _ = await asyncio.wait(hog, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
        assert len(done) == 1 and next(iter(done)).result() < 1.0  # the oldest answered early
        await asyncio.gather(*hog)


async def open_work(stub: pb_grpc.DelayQueueServiceStub, metadata: object) -> Any:
    """A Work stream subscribed to topic q, once welcomed."""
    call = stub.Work(metadata=metadata)
    subscribe = pb.WorkSubscribe(topics=[pb.WorkTopic(topic="q")], credits=1)
    await call.write(pb.WorkRequest(subscribe=subscribe))
    assert (await call.read()).HasField("welcome")
    return call


async def ended(call: Any) -> grpc.StatusCode:
    while await asyncio.wait_for(call.read(), 5) is not grpc.aio.EOF:
        pass  # heartbeats
    return await call.code()  # type: ignore[no-any-return]


async def test_a_token_holding_every_work_stream_does_not_starve_another(
    capped: QueueServer,
) -> None:
    async with grpc.aio.insecure_channel(capped.address) as channel:
        stub = pb_grpc.DelayQueueServiceStub(channel)
        oldest = await open_work(stub, HOG)
        kept = await open_work(stub, HOG)
        newcomer = await open_work(stub, SMALL)  # welcomed: it took a slot back from the hog
        assert await ended(oldest) == grpc.StatusCode.OK  # the hog's oldest stream was ended
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await open_work(stub, SMALL)  # one each now: that is fair
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "max_work_streams" in (err.value.details() or "")
        assert capped.servicer.stream_shares.used == 2
        for call in (kept, newcomer):
            call.cancel()
