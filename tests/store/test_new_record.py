"""lua/lib/new_record.lua: a task never leased is one packed field of the topic's `new` HASH
(enqueue.lua writes it; claim.lua and cancel.lua move it into a task HASH of its own)."""

from __future__ import annotations

import redis

from appliance.model import NewTask, TaskState
from appliance.store import Store
from appliance.store.scripts import script_source
from tests.store.helpers import KEYS, now_ms, read_pending

TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
PAYLOADS = ["", "plain", "two\nlines\n", " spaced  out ", "ünïcödé ✓", "x" * 5000]


async def test_new_tasks_are_fields_of_one_hash_not_keys_of_their_own(
    store: Store, redis_client: redis.Redis
) -> None:
    await store.enqueue([NewTask(f"a{i}", "t", "p", 3, 60_000) for i in range(50)], [False] * 50)
    keys = {k.decode() for k in redis_client.keys("atp:{t}:*")}
    assert keys == {KEYS.topic("t").pending, KEYS.topic("t").new}
    assert redis_client.hlen(KEYS.topic("t").new) == 50


async def test_get_task_reads_the_packed_record(store: Store, redis_client: redis.Redis) -> None:
    before = now_ms(redis_client)
    tasks = [
        NewTask(f"p{i}", "t", payload, 7, 60_000, traceparent=TRACE if i % 2 else "")
        for i, payload in enumerate(PAYLOADS)
    ]
    await store.enqueue(tasks, [False] * len(tasks))
    due = read_pending(redis_client)
    for sent in tasks:
        got = await store.get(sent.id)
        assert got.state is TaskState.PENDING and got.attempt == 0
        assert (got.payload, got.max_retries, got.traceparent) == (
            sent.payload,
            7,
            sent.traceparent,
        )
        assert got.execute_time_ms == due[sent.id]
        assert before <= got.created_at_ms <= now_ms(redis_client)


async def test_claim_moves_the_record_into_its_own_hash(
    store: Store, redis_client: redis.Redis
) -> None:
    tasks = [
        NewTask(f"c{i}", "t", payload, 2, traceparent=TRACE) for i, payload in enumerate(PAYLOADS)
    ]
    await store.enqueue(tasks, [False] * len(tasks))
    queued = {t.id: await store.get(t.id) for t in tasks}
    claim = await store.claim("t", 100, 30_000)
    assert [t.id for t in claim.tasks] == [t.id for t in tasks]
    assert not redis_client.exists(KEYS.topic("t").new)
    for leased in claim.tasks:
        before = queued[leased.id]
        assert (leased.payload, leased.traceparent, leased.max_retries) == (
            before.payload,
            TRACE,
            2,
        )
        assert (leased.execute_time_ms, leased.created_at_ms) == (
            before.execute_time_ms,
            before.created_at_ms,
        )
        assert leased.attempt == 1 and leased.state is TaskState.RUNNING
        stored = await store.get(leased.id)  # the task HASH now says the same
        assert (stored.payload, stored.attempt, stored.state, stored.traceparent) == (
            leased.payload,
            1,
            TaskState.RUNNING,
            TRACE,
        )
        assert stored.lease_token == leased.lease_token


async def test_cancel_moves_the_record_into_a_hash_kept_for_retention(
    store: Store, redis_client: redis.Redis
) -> None:
    await store.enqueue([NewTask("x", "t", "two\nlines", 4, 60_000, traceparent=TRACE)], [False])
    queued = await store.get("x")
    await store.cancel("x")
    assert not redis_client.hexists(KEYS.topic("t").new, "x")
    canceled = await store.get("x")
    assert canceled.state is TaskState.CANCELED
    assert (canceled.payload, canceled.max_retries, canceled.traceparent) == (
        "two\nlines",
        4,
        TRACE,
    )
    assert canceled.execute_time_ms == queued.execute_time_ms
    assert 0 < redis_client.pttl(KEYS.topic("t").task("x")) <= store.settings.retention_ms


def test_scripts_carry_the_library_in_place_of_the_include_line() -> None:
    for name in ("enqueue", "claim", "cancel"):
        text = script_source(name)
        assert "--! include" not in text
        assert "local function unpack_new_record" in text
        assert text.startswith(f"-- {name}:")
