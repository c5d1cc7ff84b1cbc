"""Waiting for an event with a time limit, cancellable. Stdlib only.

`asyncio.wait_for` is not used in atp: on Python 3.11 it returns the inner result and swallows
the cancel when both land on the same turn of the loop (CPython gh-86296, fixed in 3.12), so a
loop cancelled just as it was woken runs on. A worker stream's push loop did: the stream never
ended, kept renewing the leases of a killed worker's tasks, and held up the server's stop.
`asyncio.timeout` raises an outside cancel as it is.
"""

from __future__ import annotations

import asyncio


async def wait_event(event: asyncio.Event, seconds: float | None) -> bool:
    """Wait until `event` is set (True) or `seconds` pass (False; None: no limit)."""
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return False
    return True
