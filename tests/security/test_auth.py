"""Tokens and roles: for each RPC, who is let in and who is refused with which status."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio
import redis

from appliance.api.server import QueueServer
from appliance.auth import hash_token
from appliance.config import Settings
from appliance.proto import queue_pb2 as pb
from appliance.proto import queue_pb2_grpc as pb_grpc
from appliance.store import Store, connect
from tests.store.helpers import snapshot

TOKENS = {"producer": "p-secret", "worker": "w-secret", "admin": "a-secret", "limited": "l-secret"}
ENTRIES = [
    {"name": "prod", "hash": hash_token("p-secret"), "role": "producer"},
    {"name": "work", "hash": hash_token("w-secret"), "role": "worker"},
    {"name": "root", "hash": hash_token("a-secret"), "role": "admin"},
    {"name": "only-a", "hash": hash_token("l-secret"), "role": "producer", "topics": ["a"]},
]
OK, DENIED, UNAUTH = (
    grpc.StatusCode.OK,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNAUTHENTICATED,
)

# method, request, {caller: expected status}; NOT_FOUND etc. count as "let in"
CALLS = [
    (
        "Enqueue",
        pb.EnqueueRequest(topic="a", payload="x"),
        {"producer": OK, "worker": DENIED, "admin": OK},
    ),
    (
        "EnqueueBatch",
        pb.EnqueueBatchRequest(requests=[pb.EnqueueRequest(topic="a")]),
        {"producer": OK, "worker": DENIED, "admin": OK},
    ),
    (
        "GetTask",
        pb.GetTaskRequest(id="nope"),
        {"producer": grpc.StatusCode.NOT_FOUND, "worker": DENIED},
    ),
    (
        "Delete",
        pb.DeleteRequest(id="nope"),
        {"producer": grpc.StatusCode.NOT_FOUND, "worker": DENIED},
    ),
    ("Retrieve", pb.RetrieveRequest(topic="a"), {"producer": DENIED, "worker": OK, "admin": OK}),
    (
        "Ack",
        pb.AckRequest(id="x", lease_token="a/x.1"),
        {"producer": DENIED, "worker": grpc.StatusCode.NOT_FOUND},
    ),
    ("AckBatch", pb.AckBatchRequest(), {"producer": DENIED, "worker": OK}),
    (
        "Nack",
        pb.NackRequest(id="x", lease_token="a/x.1"),
        {"producer": DENIED, "worker": grpc.StatusCode.NOT_FOUND},
    ),
    (
        "ExtendLease",
        pb.ExtendLeaseRequest(id="x", lease_token="a/x.1"),
        {"producer": DENIED, "worker": grpc.StatusCode.NOT_FOUND},
    ),
    (
        "ListDeadLetters",
        pb.ListDeadLettersRequest(topic="a"),
        {"producer": DENIED, "worker": DENIED, "admin": OK},
    ),
    (
        "RequeueDeadLetters",
        pb.RequeueDeadLettersRequest(topic="a"),
        {"producer": DENIED, "worker": DENIED, "admin": OK},
    ),
    (
        "PurgeDeadLetters",
        pb.PurgeDeadLettersRequest(topic="a"),
        {"producer": DENIED, "worker": DENIED, "admin": OK},
    ),
    ("GetStats", pb.GetStatsRequest(), {"producer": DENIED, "worker": DENIED, "admin": OK}),
]


@pytest_asyncio.fixture
async def secured(settings: Settings) -> AsyncIterator[str]:
    secure = settings.replace(tokens=ENTRIES)
    store = Store(connect(secure), secure)
    server = QueueServer(secure, store)
    await server.start()
    yield server.address
    await server.stop(0.5)
    await store.close()


async def call(address: str, method: str, request: object, token: str | None) -> grpc.StatusCode:
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.DelayQueueServiceStub(channel)
        try:
            await getattr(stub, method)(request, metadata=metadata)
        except grpc.aio.AioRpcError as err:
            return err.code()
        return grpc.StatusCode.OK


@pytest.mark.parametrize(("method", "request_", "expected"), CALLS, ids=[c[0] for c in CALLS])
async def test_each_role_on_each_rpc(
    secured: str, method: str, request_: object, expected: dict[str, grpc.StatusCode]
) -> None:
    for caller, status in expected.items():
        assert await call(secured, method, request_, TOKENS[caller]) == status, caller
    assert await call(secured, method, request_, None) == UNAUTH
    assert await call(secured, method, request_, "forged") == UNAUTH


async def test_wrong_scheme_is_unauthenticated(secured: str) -> None:
    async with grpc.aio.insecure_channel(secured) as channel:
        stub = pb_grpc.DelayQueueServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.GetStats(
                pb.GetStatsRequest(), metadata=(("authorization", "Basic a-secret"),)
            )
    assert err.value.code() == UNAUTH and "Bearer" in (err.value.details() or "")


async def test_topic_limited_token(secured: str, redis_client: redis.Redis) -> None:
    assert (
        await call(
            secured,
            "Enqueue",
            pb.EnqueueRequest(topic="a", payload="x", id="in-a"),
            TOKENS["limited"],
        )
        == OK
    )
    before = snapshot(redis_client)
    assert (
        await call(secured, "Enqueue", pb.EnqueueRequest(topic="b", payload="x"), TOKENS["limited"])
        == DENIED
    )
    batch = pb.EnqueueBatchRequest(
        requests=[pb.EnqueueRequest(topic="a"), pb.EnqueueRequest(topic="b")]
    )
    assert await call(secured, "EnqueueBatch", batch, TOKENS["limited"]) == DENIED
    assert snapshot(redis_client) == before
    assert (
        await call(
            secured,
            "Enqueue",
            pb.EnqueueRequest(topic="b", payload="x", id="in-b"),
            TOKENS["producer"],
        )
        == OK
    )
    assert await call(secured, "GetTask", pb.GetTaskRequest(id="in-a"), TOKENS["limited"]) == OK
    # another tenant's id is not found, as if it did not exist (ADR 0006)
    missing = grpc.StatusCode.NOT_FOUND
    assert (
        await call(secured, "GetTask", pb.GetTaskRequest(id="in-b"), TOKENS["limited"]) == missing
    )
    assert await call(secured, "Delete", pb.DeleteRequest(id="in-b"), TOKENS["limited"]) == missing


async def test_health_needs_no_token(secured: str) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    async with grpc.aio.insecure_channel(secured) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_rate_limit_trips_and_recovers(settings: Settings) -> None:
    import asyncio

    limited = settings.replace(tokens=ENTRIES, rate_limit_per_s=1, rate_limit_burst=3)
    store = Store(connect(limited), limited)
    server = QueueServer(limited, store)
    await server.start()
    try:
        codes = [
            await call(server.address, "GetStats", pb.GetStatsRequest(), TOKENS["admin"])
            for _ in range(5)
        ]
        assert codes[:3] == [OK] * 3 and grpc.StatusCode.RESOURCE_EXHAUSTED in codes[3:]
        assert (
            await call(server.address, "GetStats", pb.GetStatsRequest(), TOKENS["worker"]) == DENIED
        )
        await asyncio.sleep(1.2)
        assert await call(server.address, "GetStats", pb.GetStatsRequest(), TOKENS["admin"]) == OK
    finally:
        await server.stop(0.5)
        await store.close()


async def test_calls_without_a_valid_token_are_rate_limited_per_peer(settings: Settings) -> None:
    limited = settings.replace(
        tokens=ENTRIES, unauthenticated_rate_per_s=1, unauthenticated_burst=3
    )
    store = Store(connect(limited), limited)
    server = QueueServer(limited, store)
    await server.start()
    try:
        codes = [
            await call(server.address, "GetStats", pb.GetStatsRequest(), token)
            for token in ("forged", None, "forged", "forged", None)
        ]
        assert codes == [UNAUTH] * 3 + [grpc.StatusCode.RESOURCE_EXHAUSTED] * 2
        assert await call(server.address, "GetStats", pb.GetStatsRequest(), TOKENS["admin"]) == OK
    finally:
        await server.stop(0.5)
        await store.close()


async def test_long_poll_cap(settings: Settings) -> None:
    import asyncio

    capped = settings.replace(max_long_polls=2)
    store = Store(connect(capped), capped)
    server = QueueServer(capped, store)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            stub = pb_grpc.DelayQueueServiceStub(channel)
            waiting = [
                asyncio.ensure_future(stub.Retrieve(pb.RetrieveRequest(topic="q", wait_ms=1500)))
                for _ in range(2)
            ]
            await asyncio.sleep(0.3)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.Retrieve(pb.RetrieveRequest(topic="q", wait_ms=1000))
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert (await stub.Retrieve(pb.RetrieveRequest(topic="q"))).tasks == []  # no wait: fine
            await asyncio.gather(*waiting)
            await stub.Retrieve(pb.RetrieveRequest(topic="q", wait_ms=10))  # slots are back
    finally:
        await server.stop(0.5)
        await store.close()


def test_the_rate_limiter_tracks_a_bounded_number_of_callers() -> None:
    from appliance.auth import RateLimiter

    limiter = RateLimiter(1, 2, max_keys=100)
    for i in range(1000):
        assert limiter.allow(f"peer-{i}", now=float(i))
    assert len(limiter._buckets) <= 100
    assert limiter.allow("peer-999", now=999.0) and not limiter.allow("peer-999", now=999.0)
