"""Retrieve builds its protobuf tasks straight from claim.lua's rows: they must be exactly what
task_to_pb makes from the same leases as model Tasks (both forms of record: never leased, and
leased before)."""

from __future__ import annotations

import asyncio

from appliance.api import convert
from appliance.model import NewTask
from appliance.store import Store

TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


async def test_rows_and_tasks_make_the_same_protobuf(store: Store) -> None:
    tasks = [
        NewTask(f"id-{i}", "t", payload, i + 1, traceparent=TRACE if i % 2 else "")
        for i, payload in enumerate(["", "plain", "ünï\ncödé", "x" * 3000])
    ]
    await store.enqueue(tasks, [False] * len(tasks))
    first = await store.claim("t", 2, 30_000)
    for task in first.tasks:  # back to PENDING with their own HASH, attempt 1 counted
        await store.nack(task.id, task.lease_token, "again", retry_after_ms=1)
    await asyncio.sleep(0.01)
    for _ in range(2):  # a retry with the same call token answers from the memo path
        claim = await store.claim("t", 10, 30_000, call_token="t/same-call")
        assert len(claim.rows) == 4
        assert {t.attempt for t in claim.tasks} == {1, 2}
        expected = [convert.task_to_pb(t, with_lease=True) for t in claim.tasks]
        assert convert.leased_to_pb("t", claim.rows) == expected
