"""The lifecycle through the gRPC API, seed fields included."""

from __future__ import annotations

import asyncio

from appliance.proto import queue_pb2 as pb
from tests.conftest import on_both


@on_both
async def test_seed_fields_and_ack(stub) -> None:
    reply = await stub.Enqueue(
        pb.EnqueueRequest(topic="orders", payload='{"order_id":1024}', max_retries=2)
    )
    got = await stub.Retrieve(pb.RetrieveRequest(topic="orders"))
    (task,) = got.tasks
    assert (task.id, task.topic, task.payload) == (reply.id, "orders", '{"order_id":1024}')
    assert task.max_retries == 2 and task.retry_count == 0 and task.attempt == 1
    assert (
        task.execute_time == task.execute_time_ms // 1000
        and task.created_at == task.created_at_ms // 1000
    )
    assert task.lease_token and task.lease_deadline_ms > task.execute_time_ms
    assert (await stub.Ack(pb.AckRequest(id=task.id, lease_token=task.lease_token))).success
    info = await stub.GetTask(pb.GetTaskRequest(id=task.id))
    assert info.state == pb.SUCCEEDED and info.task.lease_token == ""


@on_both
async def test_unset_max_retries_takes_the_default_and_zero_means_none(stub, settings) -> None:
    a = await stub.Enqueue(pb.EnqueueRequest(topic="t", payload="p"))
    b = await stub.Enqueue(pb.EnqueueRequest(topic="t", payload="p", max_retries=0))
    assert (
        await stub.GetTask(pb.GetTaskRequest(id=a.id))
    ).task.max_retries == settings.default_max_retries
    assert (await stub.GetTask(pb.GetTaskRequest(id=b.id))).task.max_retries == 0


@on_both
async def test_retries_then_dead_letter_then_requeue_and_purge(stub) -> None:
    await stub.Enqueue(pb.EnqueueRequest(topic="t", payload="p", id="job", max_retries=2))
    for attempt in (1, 2, 3):
        got = await stub.Retrieve(pb.RetrieveRequest(topic="t", wait_ms=2000))
        (task,) = got.tasks
        assert task.attempt == attempt and task.retry_count == attempt - 1
        nack = await stub.Nack(
            pb.NackRequest(id="job", lease_token=task.lease_token, error=f"fail {attempt}")
        )
        assert nack.dead_lettered == (attempt == 3)
    info = await stub.GetTask(pb.GetTaskRequest(id="job"))
    assert info.state == pb.DEAD and info.last_error == "fail 3"
    letters = await stub.ListDeadLetters(pb.ListDeadLettersRequest(topic="t"))
    assert [d.task.id for d in letters.dead_letters] == ["job"] and letters.dead_letters[
        0
    ].last_error == "fail 3"
    stats = await stub.GetStats(pb.GetStatsRequest(topics=["t"]))
    assert stats.topics[0].dead == 1
    assert (await stub.RequeueDeadLetters(pb.RequeueDeadLettersRequest(topic="t"))).requeued == 1
    (task,) = (await stub.Retrieve(pb.RetrieveRequest(topic="t", wait_ms=2000))).tasks
    assert task.attempt == 1
    await stub.Nack(pb.NackRequest(id="job", lease_token=task.lease_token, dead_letter=True))
    assert (await stub.PurgeDeadLetters(pb.PurgeDeadLettersRequest(topic="t"))).purged == 1
    assert (await stub.GetStats(pb.GetStatsRequest(topics=["t"]))).topics[0].dead == 0


@on_both
async def test_delete_cancels_pending(stub) -> None:
    reply = await stub.Enqueue(pb.EnqueueRequest(topic="t", payload="p", delay_seconds=60))
    assert (await stub.Delete(pb.DeleteRequest(id=reply.id))).success
    assert (await stub.GetTask(pb.GetTaskRequest(id=reply.id))).state == pb.CANCELED
    assert not (await stub.Retrieve(pb.RetrieveRequest(topic="t"))).tasks


@on_both
async def test_extend_lease(stub) -> None:
    await stub.Enqueue(pb.EnqueueRequest(topic="t", payload="p", id="e"))
    (task,) = (await stub.Retrieve(pb.RetrieveRequest(topic="t", visibility_timeout_ms=1000))).tasks
    reply = await stub.ExtendLease(
        pb.ExtendLeaseRequest(id="e", lease_token=task.lease_token, visibility_timeout_ms=60_000)
    )
    assert reply.lease_deadline_ms >= task.lease_deadline_ms + 58_000


@on_both
async def test_batch_enqueue_and_batch_ack(stub) -> None:
    reqs = [pb.EnqueueRequest(topic=f"t{i % 2}", payload=str(i)) for i in range(10)]
    reply = await stub.EnqueueBatch(pb.EnqueueBatchRequest(requests=reqs))
    assert len(reply.responses) == 10 and all(r.success for r in reply.responses)
    got = (await stub.Retrieve(pb.RetrieveRequest(topic="t0", batch_size=100))).tasks
    assert sorted(t.payload for t in got) == ["0", "2", "4", "6", "8"]
    acks = [pb.AckRequest(id=t.id, lease_token=t.lease_token) for t in got]
    acks.append(pb.AckRequest(id=got[0].id, lease_token="t0/stale.1"))
    result = await stub.AckBatch(pb.AckBatchRequest(acks=acks))
    assert list(result.success) == [True] * 5 + [False] and "lease token" in result.errors[5]


@on_both
async def test_stats_count_every_state(stub) -> None:
    ids = [(await stub.Enqueue(pb.EnqueueRequest(topic="s", payload=str(i)))).id for i in range(3)]
    await stub.Enqueue(pb.EnqueueRequest(topic="s", payload="later", delay_seconds=60))
    (leased,) = (await stub.Retrieve(pb.RetrieveRequest(topic="s"))).tasks
    await asyncio.sleep(0.002)
    stats = await stub.GetStats(pb.GetStatsRequest())
    (row,) = stats.topics
    assert (row.topic, row.pending, row.due, row.running, row.dead) == ("s", 3, 2, 1, 0)
    dues = [(await stub.GetTask(pb.GetTaskRequest(id=i))).task.execute_time_ms for i in ids]
    oldest = min(due for i, due in zip(ids, dues, strict=True) if i != leased.id)
    assert row.oldest_due_ms == oldest <= stats.now_ms
