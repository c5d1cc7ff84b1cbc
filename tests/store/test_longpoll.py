"""longpoll.claim_within: the long poll's timing engine, without gRPC - it claims at a task's
due time or at a wake-up, and gives up at the end of its wait or when its slot is evicted."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable

from appliance.store import Store
from appliance.store.longpoll import claim_within
from appliance.store.wakeups import Wakeups
from tests.store.helpers import seed_pending


@dataclasses.dataclass
class Slot:
    evicted: bool = False
    on_evict: Callable[[], None] | None = None


async def test_claims_at_the_due_time(store: Store) -> None:
    wakeups = Wakeups(store.redis, store.keys.wake_channel)
    await seed_pending(store, "t", 1, delay_ms=150)
    loop = asyncio.get_running_loop()
    started = loop.time()
    claim = await claim_within(store, wakeups, "t", 1, 30_000, 5.0, Slot())
    assert [t.id for t in claim.tasks] == ["t-0"]
    assert 0.1 < loop.time() - started < 2.0


async def test_an_enqueue_wakes_the_wait(store: Store) -> None:
    wakeups = Wakeups(store.redis, store.keys.wake_channel)
    listener = asyncio.create_task(wakeups.run())
    await asyncio.wait_for(wakeups.subscribed.wait(), 5)
    try:
        waiting = asyncio.create_task(claim_within(store, wakeups, "t", 1, 30_000, 5.0, Slot()))
        await asyncio.sleep(0.1)
        await seed_pending(store, "t", 1)
        claim = await asyncio.wait_for(waiting, 2.0)
        assert [t.id for t in claim.tasks] == ["t-0"]
    finally:
        wakeups.stop()
        listener.cancel()


async def test_gives_up_at_the_end_of_the_wait_or_when_evicted(store: Store) -> None:
    wakeups = Wakeups(store.redis, store.keys.wake_channel)
    claim = await claim_within(store, wakeups, "t", 1, 30_000, 0.05, Slot())
    assert claim.tasks == [] and claim.next_due_in_us == -1
    slot = Slot()
    waiting = asyncio.create_task(claim_within(store, wakeups, "t", 1, 30_000, 5.0, slot))
    await asyncio.sleep(0.05)
    slot.evicted = True
    assert slot.on_evict is not None
    slot.on_evict()
    assert (await asyncio.wait_for(waiting, 1.0)).tasks == []
