"""store/batching.py: the hand-offs of concurrent runs go in one round trip, each caller gets
its own replies (or the batch's error), and tasks of concurrent callers are written by one
enqueue call. Real Redis; the store's calls are counted, not replaced."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from appliance.store import Store
from appliance.store.batching import Gather
from appliance.store.workflows import Finish, WorkflowStore
from tests.conftest import on_both
from tests.workflows.seed import STEPS, seed_scheduled, step_task


def counted(store: Store, name: str, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = getattr(store, name)

    async def count(*args: Any, **kw: Any) -> Any:
        calls.append(1)
        return await real(*args, **kw)

    monkeypatch.setattr(store, name, count)
    return calls


@on_both
async def test_concurrent_hand_offs_share_one_round_trip(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = [f"r{n}" for n in range(5)]
    for run_id in runs:
        await seed_scheduled(store, run_id, "a")
    pipelines = counted(store, "run_many", monkeypatch)
    wf = WorkflowStore(store)  # made after: its batches call the counted run_many
    finish = Finish("a", True, "out", 1000, 1, STEPS)
    answers = await asyncio.gather(
        *(wf.finish_and_schedule(r, finish, [("b", step_task(r, "b"))]) for r in runs)
    )
    assert len(pipelines) == 1
    for run_id, (recorded, fields) in zip(runs, answers, strict=True):
        assert recorded == ("RUNNING", []) and fields["b:task"] == f"wf:{run_id}:b"


async def test_concurrent_task_writes_share_one_enqueue(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    enqueues = counted(store, "enqueue", monkeypatch)
    wf = WorkflowStore(store)
    await asyncio.gather(*(wf.write_tasks([step_task(f"r{n}", "a")]) for n in range(4)))
    assert len(enqueues) == 1
    assert len((await store.claim("t", 10, 30_000)).tasks) == 4


async def test_a_batch_that_fails_fails_each_of_its_callers_and_the_next_batch_runs() -> None:
    sent: list[list[int]] = []

    async def send(items: list[int]) -> list[Any]:
        sent.append(items)
        if 0 in items:
            raise ValueError("refused")
        return [i * 10 for i in items]

    gather: Gather[int] = Gather(send)
    failed = await asyncio.gather(gather.call([0]), gather.call([1, 2]), return_exceptions=True)
    assert [type(r) for r in failed] == [ValueError, ValueError] and sent == [[0, 1, 2]]
    assert await asyncio.gather(gather.call([3]), gather.call([4, 5])) == [[30], [40, 50]]
