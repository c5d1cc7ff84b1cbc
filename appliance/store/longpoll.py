"""The long poll's timing engine: claim now, else sleep until the topic's next due time or a
wake-up (wakeups.py), until the wait is over or the waiter's slot is given away.

The gRPC servicer only converts; this owns when a waiting Retrieve claims again. Imports only
this package (no grpc).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from appliance.store.store import Claim, Store
from appliance.store.wakeups import Wakeups, sleep_until

RECHECK_S = 5.0  # long polls re-check at least this often, in case a wake-up was lost


class Slot(Protocol):
    """A waiter's place among the long polls (api/shares.py): `evicted` once it was given to
    another token's long poll, which calls `on_evict` then."""

    evicted: bool
    on_evict: Callable[[], None] | None


async def claim_within(
    store: Store,
    wakeups: Wakeups,
    topic: str,
    limit: int,
    lease_ms: int,
    wait_s: float,
    slot: Slot,
    max_bytes: int = 0,
    who: str = "",
) -> Claim:
    """Claim now, else sleep until the next due time or a wake-up, until wait_s passes (or
    the slot is evicted); the last claim's answer, empty or not."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    with wakeups.watch(topic) as woken:
        slot.on_evict = woken.set
        while True:
            woken.clear()
            sent = loop.time()
            claim = await store.claim(topic, limit, lease_ms, max_bytes=max_bytes, who=who)
            now = loop.time()
            if claim.rows or now >= deadline or slot.evicted:
                return claim
            wake_at = min(deadline, now + RECHECK_S)
            if claim.next_due_in_us >= 0:  # Redis read its clock about mid-call
                wake_at = min(wake_at, (sent + now) / 2 + claim.next_due_in_us / 1e6)
            await sleep_until(wake_at, woken)
