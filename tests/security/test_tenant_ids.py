"""Client ids are per topic (ADR 0006): a tenant can neither shadow, block nor detect another
tenant's ids; outside a token's topics every answer is the one for an id that does not exist.
A single-tenant caller still deletes and reads by id alone."""

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
from tests.store.helpers import KEYS, read_pending, snapshot

ENTRIES = [
    {"name": "tenant-a", "hash": hash_token("a-secret"), "role": "producer", "topics": ["a"]},
    {"name": "tenant-b", "hash": hash_token("b-secret"), "role": "producer", "topics": ["b"]},
]
A, B = (("authorization", "Bearer a-secret"),), (("authorization", "Bearer b-secret"),)


@pytest_asyncio.fixture
async def tenants(settings: Settings) -> AsyncIterator[pb_grpc.DelayQueueServiceStub]:
    secure = settings.replace(tokens=ENTRIES)
    store = Store(connect(secure), secure)
    server = QueueServer(secure, store)
    await server.start()
    async with grpc.aio.insecure_channel(server.address) as channel:
        yield pb_grpc.DelayQueueServiceStub(channel)
    await server.stop(0.5)
    await store.close()


async def refusal(call: object, request: object, metadata: object) -> tuple[object, str]:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call(request, metadata=metadata)  # type: ignore[operator]
    return err.value.code(), err.value.details() or ""


async def test_the_same_id_in_two_tenants_is_two_tasks(
    tenants: pb_grpc.DelayQueueServiceStub, redis_client: redis.Redis
) -> None:
    first = await tenants.Enqueue(
        pb.EnqueueRequest(topic="a", payload="A", id="order-42"), metadata=A
    )
    second = await tenants.Enqueue(
        pb.EnqueueRequest(topic="b", payload="B", id="order-42"), metadata=B
    )
    assert not first.duplicate and not second.duplicate  # not shadowed, not blocked
    assert list(read_pending(redis_client, "b")) == ["order-42"]
    mine = await tenants.GetTask(pb.GetTaskRequest(id="order-42"), metadata=B)
    assert (mine.task.topic, mine.task.payload) == ("b", "B")
    await tenants.Delete(pb.DeleteRequest(id="order-42"), metadata=B)  # its own, by id alone
    theirs = await tenants.GetTask(pb.GetTaskRequest(id="order-42"), metadata=A)
    assert theirs.state == pb.PENDING and theirs.task.payload == "A"


async def test_another_tenants_id_reads_like_no_id_at_all(
    tenants: pb_grpc.DelayQueueServiceStub, redis_client: redis.Redis
) -> None:
    await tenants.Enqueue(pb.EnqueueRequest(topic="a", payload="A", id="secret-7"), metadata=A)
    made = (await tenants.Enqueue(pb.EnqueueRequest(topic="a", payload="A"), metadata=A)).id
    before = snapshot(redis_client)
    for task_id in ("secret-7", made):
        for topic in ("", "a"):
            for call, request in (
                (tenants.GetTask, pb.GetTaskRequest(id=task_id, topic=topic)),
                (tenants.Delete, pb.DeleteRequest(id=task_id, topic=topic)),
            ):
                absent = request.__class__(id="never-used", topic=topic)
                expected = await refusal(call, absent, B)
                assert expected[0] == grpc.StatusCode.NOT_FOUND
                got = await refusal(call, request, B)
                assert got == (expected[0], expected[1].replace("never-used", task_id))
    assert snapshot(redis_client) == before


async def test_a_single_tenant_deletes_by_id_alone(
    stub: pb_grpc.DelayQueueServiceStub, redis_client: redis.Redis
) -> None:
    await stub.Enqueue(pb.EnqueueRequest(topic="t", payload="p", id="seed-1", delay_seconds=60))
    assert (await stub.Delete(pb.DeleteRequest(id="seed-1"))).success
    assert (await stub.GetTask(pb.GetTaskRequest(id="seed-1"))).state == pb.CANCELED
    # the same id in two of the caller's topics: it must say which
    await stub.Enqueue(pb.EnqueueRequest(topic="u", payload="p", id="twice", delay_seconds=60))
    await stub.Enqueue(pb.EnqueueRequest(topic="v", payload="p", id="twice", delay_seconds=60))
    code, details = await refusal(stub.Delete, pb.DeleteRequest(id="twice"), ())
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "u, v" in details
    assert (await stub.Delete(pb.DeleteRequest(id="twice", topic="v"))).success
    assert list(read_pending(redis_client, "u")) == ["twice"]
    reply = await stub.GetTask(pb.GetTaskRequest(id="twice", topic="v"))
    assert (reply.task.topic, reply.state) == ("v", pb.CANCELED)


async def test_a_tenant_finds_its_task_whose_index_write_was_cut_off(
    tenants: pb_grpc.DelayQueueServiceStub, redis_client: redis.Redis
) -> None:
    await tenants.Enqueue(pb.EnqueueRequest(topic="a", payload="A", id="cut-1"), metadata=A)
    redis_client.delete(KEYS.id_topics("cut-1"))  # what an Enqueue cut off after the task leaves
    assert (await tenants.GetTask(pb.GetTaskRequest(id="cut-1"), metadata=A)).task.topic == "a"
    code, _ = await refusal(tenants.GetTask, pb.GetTaskRequest(id="cut-1"), B)
    assert code == grpc.StatusCode.NOT_FOUND
