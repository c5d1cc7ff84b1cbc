"""enqueue.lua through Store.enqueue: creation, idempotency, due times, wake-ups."""

from __future__ import annotations

import redis

from appliance.model import NewTask
from appliance.store import Store
from tests.store.helpers import KEYS, now_ms, read_pending, read_state, seed_pending


async def test_creates_pending_task_due_after_delay(
    store: Store, redis_client: redis.Redis
) -> None:
    before = now_ms(redis_client)
    (result,) = await store.enqueue([NewTask("a", "t", "p", 3, delay_ms=5000)], [False])
    assert result.created
    assert read_state(redis_client, "t", "a") == "PENDING"
    due = read_pending(redis_client)["a"]
    assert before + 5000 <= due <= now_ms(redis_client) + 5000
    assert redis_client.hgetall(KEYS.id_topics("a")) == {b"t": b"live"}
    assert redis_client.pttl(KEYS.id_topics("a")) == -1  # no expiry while the task lives
    assert b"t" in redis_client.smembers(KEYS.topics)


async def test_execute_at_wins_over_delay(store: Store, redis_client: redis.Redis) -> None:
    await store.enqueue([NewTask("a", "t", "p", 3, delay_ms=5000, execute_at_ms=1234)], [False])
    assert read_pending(redis_client)["a"] == 1234


async def test_same_client_id_is_idempotent(store: Store, redis_client: redis.Redis) -> None:
    first = await store.enqueue([NewTask("dup", "t", "one", 3)], [True])
    again = await store.enqueue([NewTask("dup", "t", "two", 3, delay_ms=99_000)], [True])
    assert first[0].created and not again[0].created
    assert (await store.get("dup")).payload == "one"
    assert len(read_pending(redis_client)) == 1
    await store.claim("t", 1, 30_000)  # leased: its record is a HASH of its own now
    again = await store.enqueue([NewTask("dup", "t", "three", 3)], [True])
    assert not again[0].created and (await store.get("dup")).payload == "one"


async def test_same_id_in_another_topic_is_another_task(
    store: Store, redis_client: redis.Redis
) -> None:
    """Ids are per topic (ADR 0006): one topic's id neither blocks nor shadows another's."""
    await store.enqueue([NewTask("dup", "t1", "one", 3)], [True])
    (again,) = await store.enqueue([NewTask("dup", "t2", "two", 3)], [True])
    assert again.created
    assert list(read_pending(redis_client, "t2")) == ["dup"]
    assert (await store.get("dup", "t2")).payload == "two"
    assert (await store.get("dup", "", frozenset({"t1"}))).payload == "one"
    assert redis_client.hgetall(KEYS.id_topics("dup")) == {b"t1": b"live", b"t2": b"live"}


async def test_an_id_finished_in_one_topic_keeps_its_index_while_another_lives(
    store: Store, redis_client: redis.Redis
) -> None:
    await store.enqueue([NewTask("x", "t1", "one", 3), NewTask("x", "t2", "two", 3)], [True] * 2)
    (leased,) = (await store.claim("t1", 1, 30_000)).tasks
    await store.ack(leased.id, leased.lease_token)
    assert redis_client.hgetall(KEYS.id_topics("x")) == {b"t1": b"done", b"t2": b"live"}
    assert redis_client.pttl(KEYS.id_topics("x")) == -1
    assert await store.cancel("x", "t2") == ("t2", True)
    assert 0 < redis_client.pttl(KEYS.id_topics("x")) <= store.settings.retention_ms
    (again,) = await store.enqueue([NewTask("x", "t1", "three", 3)], [True])
    assert not again.created  # t1's finished record is kept for retention: still a duplicate
    assert redis_client.pttl(KEYS.id_topics("x")) > 0


async def test_duplicates_inside_one_batch(store: Store, redis_client: redis.Redis) -> None:
    tasks = [
        NewTask("same", "t", "a", 3),
        NewTask("same", "t", "b", 3),
        NewTask("other", "u", "c", 3),
    ]
    results = await store.enqueue(tasks, [True, True, True])
    assert [r.created for r in results] == [True, False, True]


async def test_batch_over_topics_keeps_request_order(store: Store) -> None:
    tasks = [NewTask(f"id{i}", f"topic{i % 3}", "p", 3) for i in range(9)]
    results = await store.enqueue(tasks, [False] * 9)
    assert [r.id for r in results] == [t.id for t in tasks]
    _, stats = await store.stats()
    assert {s.topic: s.pending for s in stats} == {"topic0": 3, "topic1": 3, "topic2": 3}


async def test_publishes_only_when_the_head_moves_earlier(
    store: Store, redis_client: redis.Redis
) -> None:
    pubsub = redis_client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(KEYS.wake_channel)
    pubsub.get_message(timeout=1)
    await seed_pending(store, "t", 1, delay_ms=10_000)
    first = pubsub.get_message(timeout=1)
    assert first is not None and first["data"].startswith(b"t ")
    await store.enqueue([NewTask("later", "t", "p", 3, delay_ms=20_000)], [False])
    assert pubsub.get_message(timeout=0.3) is None
    await store.enqueue([NewTask("sooner", "t", "p", 3, delay_ms=0)], [False])
    assert pubsub.get_message(timeout=1) is not None
    pubsub.close()


async def test_server_made_ids_name_their_topic_and_need_no_index(
    store: Store, redis_client: redis.Redis
) -> None:
    from appliance.keys import new_task_id, topic_in_id

    task_id = new_task_id("orders")
    assert topic_in_id(task_id) == "orders" and topic_in_id("client-id") is None
    await store.enqueue([NewTask(task_id, "orders", "p", 3, delay_ms=60_000)], [False])
    assert not redis_client.exists(KEYS.id_index(task_id))
    assert (await store.get(task_id)).topic == "orders"
    assert await store.cancel(task_id) == ("orders", True)


async def test_scripts_flushed_from_redis_are_loaded_again(
    store: Store, redis_client: redis.Redis
) -> None:
    """After a Redis restart (scripts are not persisted) pipelines reload them on NOSCRIPT."""
    await seed_pending(store, "t", 1)
    redis_client.script_flush()
    await seed_pending(store, "u", 2)
    assert len(read_pending(redis_client, "u")) == 2
    redis_client.script_flush()
    claim = await store.claim("u", 2, 30_000)
    redis_client.script_flush()
    assert await store.ack_many([(t.id, t.lease_token) for t in claim.tasks]) == [None, None]
    redis_client.script_flush()
    assert (await store.recover_all(["t", "u"])).keys() == {"t", "u"}


async def test_a_repeat_after_the_task_finished_indexes_its_id(store: Store) -> None:
    """The first Enqueue wrote the task but its indexing was cut off (only the script ran);
    the task ran and was acked; the client's repeat must leave the id findable by id alone
    (found by the chaos run: reset_peer lost 4 such ids)."""
    task = NewTask("order-7", "t", "p", 3, 0)
    tk = store.keys.topic("t")
    meta = f"{task.delay_ms} {task.execute_at_ms} {task.max_retries} "
    await store.run(
        "enqueue",
        [tk.pending, tk.new],
        [store.keys.wake_channel, "t", tk.task_prefix, task.id, task.payload, meta],
    )
    (leased,) = (await store.claim("t", 1, 30_000)).tasks
    await store.ack(leased.id, leased.lease_token)
    (again,) = await store.enqueue([task], [True])
    assert not again.created
    assert (await store.get("order-7")).state.value == "SUCCEEDED"
