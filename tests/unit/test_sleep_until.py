"""wakeups.sleep_until: the long poll's timer never returns before its time, and a wake-up
ends it at once."""

from __future__ import annotations

import asyncio

from appliance.store.wakeups import EPOLL_SLACK_S, sleep_until


async def test_never_returns_before_its_time() -> None:
    loop = asyncio.get_running_loop()
    for delay in (0.0, 0.0003, EPOLL_SLACK_S / 2, 0.004, 0.0175):
        when = loop.time() + delay
        await sleep_until(when, asyncio.Event())
        assert loop.time() >= when, delay


async def test_a_time_in_the_past_returns_at_once() -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    await sleep_until(start - 1, asyncio.Event())
    assert loop.time() - start < 0.05


async def test_a_wake_up_ends_the_sleep() -> None:
    loop = asyncio.get_running_loop()
    woken = asyncio.Event()
    loop.call_later(0.02, woken.set)
    start = loop.time()
    await sleep_until(start + 30, woken)
    assert woken.is_set() and loop.time() - start < 5


async def test_other_callbacks_run_while_it_yields() -> None:
    loop = asyncio.get_running_loop()
    ran: list[float] = []
    when = loop.time() + EPOLL_SLACK_S  # all of it spent yielding
    loop.call_soon(lambda: ran.append(loop.time()))
    await sleep_until(when, asyncio.Event())
    assert ran and ran[0] < when


async def test_a_cancel_that_meets_a_wake_up_still_cancels() -> None:
    """A worker stream's loops end by cancellation; one asleep here when a wake-up arrives on
    the same turn of the loop must still end (Python 3.11's wait_for returned the wake-up
    and swallowed the cancel: the stream never ended and held its tasks' leases)."""
    loop = asyncio.get_running_loop()
    woken = asyncio.Event()
    sleeper = asyncio.create_task(sleep_until(loop.time() + 30, woken))
    await asyncio.sleep(0.01)  # asleep in its coarse wait
    woken.set()
    sleeper.cancel()
    await asyncio.wait([sleeper], timeout=5)
    assert sleeper.cancelled()
