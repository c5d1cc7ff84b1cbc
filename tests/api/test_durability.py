"""durability replicated (ADR 0013): a state change is acknowledged only once a replica has it
(WAIT 1 after every script call); a replica that does not confirm in time fails the call
UNAVAILABLE naming the operation, in bounded time. A real master and a real replica
(redis-server --replicaof), both started here; the default (local) does not wait."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import grpc
import pytest
import pytest_asyncio
import redis

from appliance.api.server import QueueServer
from appliance.config import Settings
from appliance.model import NewTask, TaskState
from appliance.proto import queue_pb2 as pb
from appliance.proto import queue_pb2_grpc as pb_grpc
from appliance.store import Store, connect
from tests.redis_server import RedisCluster, RedisServer

TIMEOUT_MS = 500


class Pair:
    """A master and its replica, replication up."""

    def __init__(self) -> None:
        # The replica syncs at once (the default waits 5 s for more replicas).
        self.master = RedisServer(appendonly=False, extra=("--repl-diskless-sync-delay", "0"))
        self.master.start()
        port = str(self.master.port)
        self.replica = RedisServer(appendonly=False, extra=("--replicaof", "127.0.0.1", port))
        self.replica.start()
        self.wait_linked()

    def wait_linked(self) -> None:
        """Until a write on the master is confirmed by the replica (WAIT 1)."""
        client = redis.Redis(port=self.master.port)
        deadline = time.monotonic() + 10
        while True:
            client.set("linked", "1")
            if client.execute_command("WAIT", 1, 100) == 1:
                break
            assert time.monotonic() < deadline, "the replica did not link"
        client.delete("linked")
        client.close()

    def cleanup(self) -> None:
        self.replica.resume()
        self.replica.cleanup()
        self.master.cleanup()


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    pair = Pair()
    try:
        yield pair
    finally:
        pair.cleanup()


@pytest.fixture
def paused(pair: Pair) -> Iterator[RedisServer]:
    """The replica frozen by SIGSTOP for the test (resumed, and linked again, afterwards)."""
    pair.replica.pause()
    try:
        yield pair.replica
    finally:
        pair.replica.resume()
        pair.wait_linked()


async def serve(url: str, durability: str) -> AsyncIterator[pb_grpc.DelayQueueServiceStub]:
    settings = Settings(
        redis_url=url,
        grpc_addr="127.0.0.1:0",
        durability=durability,
        durability_timeout_ms=TIMEOUT_MS,
    )
    store = Store(connect(settings), settings)
    server = QueueServer(settings, store)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            yield pb_grpc.DelayQueueServiceStub(channel)
    finally:
        await server.stop(0.5)
        await store.close()


@pytest_asyncio.fixture
async def replicated(pair: Pair) -> AsyncIterator[pb_grpc.DelayQueueServiceStub]:
    async for stub in serve(pair.master.url, "replicated"):
        yield stub


@pytest_asyncio.fixture
async def local(pair: Pair) -> AsyncIterator[pb_grpc.DelayQueueServiceStub]:
    async for stub in serve(pair.master.url, "local"):
        yield stub


@pytest_asyncio.fixture
async def on_replica(pair: Pair) -> AsyncIterator[Store]:
    """A store reading the replica (reads only)."""
    settings = Settings(redis_url=pair.replica.url)
    store = Store(connect(settings), settings)
    yield store
    await store.close()


async def test_acknowledged_writes_are_on_the_replica(
    replicated: pb_grpc.DelayQueueServiceStub, on_replica: Store
) -> None:
    for i in range(20):
        reply = await replicated.Enqueue(pb.EnqueueRequest(topic="d", payload="p", id=f"w{i}"))
        assert (await on_replica.get(reply.id, "d")).state is TaskState.PENDING
    (task,) = (await replicated.Retrieve(pb.RetrieveRequest(topic="d", batch_size=1))).tasks
    assert (await on_replica.get(task.id, "d")).state is TaskState.RUNNING
    await replicated.Ack(pb.AckRequest(id=task.id, lease_token=task.lease_token))
    assert (await on_replica.get(task.id, "d")).state is TaskState.SUCCEEDED


async def test_a_write_waits_for_a_slow_replica(
    pair: Pair, replicated: pb_grpc.DelayQueueServiceStub
) -> None:
    await replicated.Enqueue(pb.EnqueueRequest(topic="s", payload="warm"))
    pair.replica.pause()
    loop = asyncio.get_running_loop()
    loop.call_later(0.3, pair.replica.resume)
    started = time.monotonic()
    await replicated.Enqueue(pb.EnqueueRequest(topic="s", payload="p", id="slow"))
    assert 0.25 < time.monotonic() - started < TIMEOUT_MS / 1000


async def test_an_unconfirmed_write_fails_unavailable_naming_the_operation(
    replicated: pb_grpc.DelayQueueServiceStub, pair: Pair
) -> None:
    await replicated.Enqueue(pb.EnqueueRequest(topic="u", payload="warm"))  # topic known
    (warm,) = (await replicated.Retrieve(pb.RetrieveRequest(topic="u"))).tasks
    await replicated.Ack(pb.AckRequest(id=warm.id, lease_token=warm.lease_token))
    pair.replica.pause()
    started = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await replicated.Enqueue(pb.EnqueueRequest(topic="u", payload="p", id="u1"))
    took = time.monotonic() - started
    assert err.value.code() is grpc.StatusCode.UNAVAILABLE
    details = err.value.details() or ""
    assert details.startswith("enqueue: ") and "replicas confirmed" in details, details
    assert TIMEOUT_MS / 1000 <= took < TIMEOUT_MS / 1000 + 1.0
    # The write ran on the master (it may or may not survive a failover): after the replica
    # is back, repeating the call with the same id is safe and makes no second task.
    pair.replica.resume()
    pair.wait_linked()
    again = await replicated.Enqueue(pb.EnqueueRequest(topic="u", payload="p", id="u1"))
    assert again.id == "u1"
    (task,) = (await replicated.Retrieve(pb.RetrieveRequest(topic="u", batch_size=10))).tasks
    pair.replica.pause()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await replicated.Ack(pb.AckRequest(id=task.id, lease_token=task.lease_token))
    assert err.value.code() is grpc.StatusCode.UNAVAILABLE
    assert (err.value.details() or "").startswith("ack: "), err.value.details()
    pair.replica.resume()
    pair.wait_linked()


async def test_local_durability_does_not_wait_for_the_replica(
    local: pb_grpc.DelayQueueServiceStub, paused: RedisServer
) -> None:
    started = time.monotonic()
    for i in range(5):
        await local.Enqueue(pb.EnqueueRequest(topic="l", payload="p", id=f"l{i}"))
    assert time.monotonic() - started < TIMEOUT_MS / 1000


def replica_of(cluster: RedisCluster, master: RedisServer) -> RedisServer:
    """The node replicating `master` now."""
    for node in cluster.nodes:
        if node.proc is None or node is master:
            continue
        client = node.client()
        try:
            info = client.info("replication")
        finally:
            client.close()
        if info["role"] == "slave" and int(info["master_port"]) == master.port:
            return node
    raise AssertionError(f"no replica of {master.port}")


async def test_on_a_cluster_a_write_waits_for_the_replica_of_the_master_it_wrote_to(
    redis_cluster: RedisCluster,
) -> None:
    """One WAIT per master written to, on that master's connection: a frozen replica fails the
    writes of its own master's topics, and only those."""
    topics = [f"c{i}" for i in range(30)]
    masters = {t: redis_cluster.master_of("{" + t + "}") for t in topics}
    a = topics[0]
    b = next(t for t in topics if masters[t].port != masters[a].port)
    frozen = replica_of(redis_cluster, masters[a])
    try:
        async for stub in serve(redis_cluster.url, "replicated"):
            for topic in (a, b):  # the topics known (the registry is written once)
                await stub.Enqueue(pb.EnqueueRequest(topic=topic, payload="warm"))
            frozen.pause()
            try:
                await stub.Enqueue(pb.EnqueueRequest(topic=b, payload="p"))
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await stub.Enqueue(pb.EnqueueRequest(topic=a, payload="p"))
            finally:
                frozen.resume()
            assert err.value.code() is grpc.StatusCode.UNAVAILABLE
            assert (err.value.details() or "").startswith("enqueue: "), err.value.details()
    finally:
        redis_cluster.wait_ok()


async def test_calls_beyond_the_pool_wait_for_a_connection_instead_of_failing(pair: Pair) -> None:
    """Replicated calls hold their connection for the replica round trip: with every connection
    busy longer than the store's retries last (0.75 s), further calls wait for one (the pool
    blocks up to redis_timeout_ms) instead of failing UNAVAILABLE 'Too many connections'."""
    settings = Settings(
        redis_url=pair.master.url,
        durability="replicated",
        durability_timeout_ms=1_500,
        redis_max_connections=1,
    )
    store = Store(connect(settings), settings)
    try:
        await store.enqueue([NewTask("warm", "pool", "x", 3)])
        pair.replica.pause()
        asyncio.get_running_loop().call_later(0.9, pair.replica.resume)
        made = await asyncio.gather(
            *(store.enqueue([NewTask(f"p{i}", "pool", "x", 3)]) for i in range(3))
        )
        assert all(m[0].created for m in made)
    finally:
        pair.replica.resume()
        await store.close()
