"""ack.lua: token fencing, idempotent repeats, retention."""

from __future__ import annotations

import pytest
import redis

from appliance.errors import NotFound, StaleLease
from appliance.model import NewTask
from appliance.store import Store
from tests.store.helpers import KEYS, read_running, read_state, seed_running, snapshot


async def test_ack_finishes_the_task_and_keeps_it_for_retention(
    store: Store, redis_client: redis.Redis
) -> None:
    (task,) = await seed_running(store)
    await store.ack(task.id, task.lease_token)
    assert read_state(redis_client, "t", task.id) == "SUCCEEDED"
    assert read_running(redis_client) == {}
    ttl = redis_client.pttl(KEYS.topic("t").task(task.id))
    assert 0 < ttl <= store.settings.retention_ms
    assert 0 < redis_client.pttl(KEYS.id_topics(task.id)) <= store.settings.retention_ms


async def test_repeated_ack_with_the_same_token_succeeds(store: Store) -> None:
    (task,) = await seed_running(store)
    await store.ack(task.id, task.lease_token)
    await store.ack(task.id, task.lease_token)


async def test_wrong_token_is_refused_and_changes_nothing(
    store: Store, redis_client: redis.Redis
) -> None:
    (task,) = await seed_running(store)
    before = snapshot(redis_client)
    with pytest.raises(StaleLease):
        await store.ack(task.id, "t/forged.1")
    with pytest.raises(StaleLease):
        await store.ack(task.id, "no-topic-in-token")
    assert snapshot(redis_client) == before


async def test_unknown_task_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        await store.ack("missing", "t/abc.1")


async def test_ack_many_reports_each_result(store: Store) -> None:
    tasks = await seed_running(store, n=3)
    results = await store.ack_many(
        [
            (tasks[0].id, tasks[0].lease_token),
            (tasks[1].id, "t/bad.1"),
            ("nope", "t/x.1"),
            (tasks[2].id, tasks[2].lease_token),
        ]
    )
    assert results[0] is None and results[3] is None
    assert isinstance(results[1], StaleLease) and isinstance(results[2], NotFound)


async def test_ack_many_across_topics(store: Store, redis_client: redis.Redis) -> None:
    a = await seed_running(store, "a", n=2)
    b = await seed_running(store, "b", n=1)
    results = await store.ack_many(
        [(a[0].id, a[0].lease_token), (b[0].id, b[0].lease_token), (a[1].id, b[0].lease_token)]
    )
    assert results[:2] == [None, None] and isinstance(results[2], NotFound | StaleLease)
    assert read_state(redis_client, "a", a[0].id) == "SUCCEEDED"
    assert read_state(redis_client, "b", b[0].id) == "SUCCEEDED"
    assert read_state(redis_client, "a", a[1].id) == "RUNNING"


async def test_ack_keeps_the_result_on_the_record_for_retention(
    store: Store, redis_client: redis.Redis
) -> None:
    first, second = await seed_running(store, n=2)
    assert await store.ack_many(
        [(first.id, first.lease_token), (second.id, second.lease_token)], ['{"sent": 1}', ""]
    ) == [None, None]
    assert (await store.get(first.id)).result == '{"sent": 1}'
    assert (await store.get(second.id)).result == ""
    key = KEYS.topic("t").task(first.id)
    assert 0 < redis_client.pttl(key) <= store.settings.retention_ms
    await store.ack(first.id, first.lease_token, "another")  # a repeat changes nothing
    assert (await store.get(first.id)).result == '{"sent": 1}'


async def test_a_workflow_step_task_publishes_its_id_when_acked(
    store: Store, redis_client: redis.Redis
) -> None:
    from appliance.model import NewTask

    await store.enqueue([NewTask("wf:r1:welcome", "t", "p", 0)])
    (task,) = (await store.claim("t", 1, 30_000)).tasks
    listener = redis_client.pubsub(ignore_subscribe_messages=True)
    listener.subscribe(KEYS.workflows.channel)
    listener.get_message(timeout=1)
    await store.ack(task.id, task.lease_token, "out")
    message = listener.get_message(timeout=2)
    listener.close()
    assert message is not None and message["data"].split()[0] == b"wf:r1:welcome"


async def test_a_workflow_step_message_carries_its_attempt_and_a_small_result(
    store: Store, redis_client: redis.Redis
) -> None:
    """'<id> <finished ms> <attempt> <result>': the advancer hands the step off without
    reading the task; a result over 4096 bytes is left out ('<id> <finished ms>')."""
    from appliance.model import NewTask

    await store.enqueue([NewTask("wf:r1:a", "t", "p", 0), NewTask("wf:r1:b", "t", "p", 0)])
    small, big = (await store.claim("t", 2, 30_000)).tasks
    listener = redis_client.pubsub(ignore_subscribe_messages=True)
    listener.subscribe(KEYS.workflows.channel)
    listener.get_message(timeout=1)
    await store.ack(small.id, small.lease_token, "out put")
    await store.ack(big.id, big.lease_token, "x" * 4097)
    first, second = listener.get_message(timeout=2), listener.get_message(timeout=2)
    listener.close()
    assert first is not None and second is not None
    name, ms, attempt, result = first["data"].decode().split(" ", 3)
    assert (name, attempt, result) == ("wf:r1:a", "1", "out put")
    assert ms == redis_client.hget(KEYS.topic("t").task(small.id), "finished").decode()
    name, ms = second["data"].decode().split(" ")
    assert (
        name == "wf:r1:b"
        and ms == redis_client.hget(KEYS.topic("t").task(big.id), "finished").decode()
    )


def _script_calls(r: redis.Redis) -> int:
    return int(r.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))


async def test_acking_a_step_task_touches_no_id_index(
    store: Store, redis_client: redis.Redis
) -> None:
    """A workflow step's task is never indexed (ADR 0010; no client may give such an id), so
    its ack is ack.lua alone, one round trip; a client id's ack also ages its index."""
    await store.enqueue([NewTask("wf:r1:a", "t", "p", 0)], index=False)
    await store.enqueue([NewTask("mine", "t", "p", 0)])
    mine, step = sorted((await store.claim("t", 2, 30_000)).tasks, key=lambda t: t.id)
    before = _script_calls(redis_client)
    await store.ack(mine.id, mine.lease_token)
    assert _script_calls(redis_client) - before == 2  # ack.lua, id_index.lua
    before = _script_calls(redis_client)
    await store.ack(step.id, step.lease_token)
    assert _script_calls(redis_client) - before == 1  # ack.lua
    assert read_state(redis_client, "t", step.id) == "SUCCEEDED"
