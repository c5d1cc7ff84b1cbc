"""claim.lua: due tasks only, fresh tokens, attempts, safe retries by call token."""

from __future__ import annotations

import redis

from appliance.errors import StaleLease
from appliance.model import NewTask
from appliance.store import Store
from tests.store.helpers import read_pending, read_running, read_state, seed_pending


async def test_claims_due_tasks_in_due_order(store: Store, redis_client: redis.Redis) -> None:
    await seed_pending(store, "t", 3)
    claim = await store.claim("t", 2, 30_000)
    assert [t.id for t in claim.tasks] == ["t-0", "t-1"]
    for task in claim.tasks:
        assert task.attempt == 1 and task.lease_token and task.payload.startswith("payload-")
        assert read_state(redis_client, "t", task.id) == "RUNNING"
        assert claim.now_ms + 30_000 == task.lease_deadline_ms
    assert set(read_running(redis_client)) == {"t-0", "t-1"}
    assert set(read_pending(redis_client)) == {"t-2"}


async def test_never_hands_out_a_task_before_it_is_due(store: Store) -> None:
    await seed_pending(store, "t", 1, delay_ms=60_000)
    claim = await store.claim("t", 10, 30_000)
    assert claim.tasks == []
    assert 59_000_000 < claim.next_due_in_us <= 60_000_000


async def test_empty_topic_reports_nothing_pending(store: Store) -> None:
    claim = await store.claim("nothing", 1, 30_000)
    assert claim.tasks == [] and claim.next_due_in_us == -1


async def test_every_lease_token_is_new(store: Store) -> None:
    await seed_pending(store, "t", 5)
    first = await store.claim("t", 5, 30_000)
    tokens = {t.lease_token for t in first.tasks}
    assert len(tokens) == 5
    for t in first.tasks:
        await store.nack(t.id, t.lease_token, "again", retry_after_ms=1)
    import asyncio

    await asyncio.sleep(0.01)
    second = await store.claim("t", 5, 30_000)
    assert len(second.tasks) == 5
    assert tokens.isdisjoint(t.lease_token for t in second.tasks)
    assert all(t.attempt == 2 for t in second.tasks)


async def test_retry_with_same_call_token_returns_the_same_tasks(
    store: Store, redis_client: redis.Redis
) -> None:
    """A reply lost after the script ran: the retry must not lease more, nor lose these."""
    await seed_pending(store, "t", 8)
    call = store.new_call_token("t")
    first = await store.claim("t", 5, 30_000, call_token=call)
    retry = await store.claim("t", 5, 30_000, call_token=call)
    assert [t.id for t in retry.tasks] == [t.id for t in first.tasks]
    assert [t.lease_token for t in retry.tasks] == [t.lease_token for t in first.tasks]
    assert len(read_running(redis_client)) == 5 and len(read_pending(redis_client)) == 3


async def test_retry_leaves_out_tasks_the_call_no_longer_holds(store: Store) -> None:
    await seed_pending(store, "t", 2)
    call = store.new_call_token("t")
    first = await store.claim("t", 2, 30_000, call_token=call)
    await store.ack(first.tasks[0].id, first.tasks[0].lease_token)
    retry = await store.claim("t", 2, 30_000, call_token=call)
    assert [t.id for t in retry.tasks] == [first.tasks[1].id]


async def test_a_lease_token_does_not_reveal_its_siblings(store: Store) -> None:
    await seed_pending(store, n=3)
    tokens = [t.lease_token for t in (await store.claim("t", 3, 30_000)).tasks]
    prefixes = {tok.rsplit(".", 2)[0] for tok in tokens}
    assert len(prefixes) == 1  # one call
    nonces = [tok.rsplit(".", 1)[1] for tok in tokens]
    assert len(set(nonces)) == 3 and all(len(n) == 8 for n in nonces)


async def test_byte_budget_leases_only_what_fits(store: Store, redis_client: redis.Redis) -> None:
    big = "x" * 100_000
    await store.enqueue([NewTask(f"t-{i}", "t", big, 3, 0) for i in range(5)], [False] * 5)
    claim = await store.claim("t", 5, 30_000, max_bytes=250_000)
    assert len(claim.tasks) == 2  # a third would pass the budget
    assert len(read_pending(redis_client)) == 3  # the rest were not leased
    tiny = await store.claim("t", 5, 30_000, max_bytes=10)
    assert len(tiny.tasks) == 1  # the first task always goes (its size is bounded at enqueue)


async def test_each_claimed_row_names_claim_lua_values(store: Store) -> None:
    """codec.ClaimedRow's field order is claim.lua's reply order (a NamedTuple, read by name
    by the servicer and the Work stream)."""
    await store.enqueue([NewTask("r", "t", "body", 4, execute_at_ms=1234, traceparent="00-x")])
    (row,) = (await store.claim("t", 1, 30_000)).rows
    assert (row.id, row.payload, row.due_ms, row.max_retries, row.attempt) == (
        b"r",
        b"body",
        1234,
        4,
        1,
    )
    assert row.token.startswith(b"t/") and row.traceparent == b"00-x"
    assert row.deadline_ms > row.created_ms > 1234


async def test_ack_then_claim_acks_first_and_leases_in_the_same_call(
    store: Store, redis_client: redis.Redis
) -> None:
    """The worker stream's settle path: the acks and the claim of the room they free in one
    round trip; a refused ack keeps its error and the claim still leases."""
    await seed_pending(store, "t", 5)
    held = (await store.claim("t", 2, 30_000)).tasks
    outcome, claim = await store.ack_then_claim(
        [(held[0].id, held[0].lease_token), (held[1].id, "t/bad.1.x")],
        ["done", ""],
        ("t", 2, 30_000, 0, "stream s"),
    )
    assert outcome[0] is None and isinstance(outcome[1], StaleLease)
    assert read_state(redis_client, "t", held[0].id) == "SUCCEEDED"
    assert read_state(redis_client, "t", held[1].id) == "RUNNING"
    assert claim is not None and [t.id for t in claim.tasks] == ["t-2", "t-3"]
    assert set(read_running(redis_client)) == {"t-1", "t-2", "t-3"}
    assert set(read_pending(redis_client)) == {"t-4"}
    none, nothing = await store.ack_then_claim([], [], None)
    assert none == [] and nothing is None
