"""waits.wait_event: set, timed out, and cancelled (a cancel that meets the event's setting on
the same turn of the loop still cancels: asyncio.wait_for on Python 3.11 swallowed it)."""

from __future__ import annotations

import asyncio

from appliance.waits import wait_event


async def test_set_before_the_limit_is_true() -> None:
    event = asyncio.Event()
    asyncio.get_running_loop().call_later(0.01, event.set)
    assert await wait_event(event, 5) is True


async def test_the_limit_passing_is_false() -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert await wait_event(asyncio.Event(), 0.02) is False
    assert loop.time() - start >= 0.02


async def test_a_cancel_that_meets_the_setting_still_cancels() -> None:
    event = asyncio.Event()
    for limit in (None, 30.0):
        event.clear()
        waiter = asyncio.create_task(wait_event(event, limit))
        await asyncio.sleep(0.01)
        event.set()
        waiter.cancel()
        await asyncio.wait([waiter], timeout=5)
        assert waiter.cancelled(), limit
