"""A closed worker stream claims nothing more, even if its push loop were still running (its
loops end by cancellation; on Python 3.11 a cancel could be swallowed: appliance/waits.py)."""

from __future__ import annotations

import asyncio
from typing import Any

from appliance.api.work_stream import End, Subscription, WorkStream
from appliance.config import Settings
from appliance.model import NewTask
from appliance.proto import queue_pb2 as pb
from appliance.store.wakeups import Wakeups


def _stream(store: Any, settings: Settings) -> WorkStream:
    request = pb.WorkSubscribe(topics=[pb.WorkTopic(topic="t")], credits=10)
    wakeups = Wakeups(store.redis, store.keys.wake_channel)
    return WorkStream(store, wakeups, settings, Subscription(request, settings), asyncio.Event())


async def test_a_closed_stream_claims_nothing(store: Any, settings: Settings) -> None:
    await store.enqueue([NewTask(id="", topic="t", payload="x", max_retries=0)])
    stream = _stream(store, settings)
    stream.close(End.LOST)
    await stream._fill(asyncio.get_running_loop().time())
    assert stream.held == {}
    open_stream = _stream(store, settings)  # the task was still there to claim
    await open_stream._fill(asyncio.get_running_loop().time())
    assert len(open_stream.held) == 1


async def test_a_closed_streams_push_loop_ends_by_itself(store: Any, settings: Settings) -> None:
    stream = _stream(store, settings)
    pushing = asyncio.create_task(stream._push())
    await asyncio.sleep(0.05)
    stream.close(End.LOST)
    stream.room.set()  # woken once more, as a wake-up would
    await asyncio.wait([pushing], timeout=5)
    assert pushing.done() and not pushing.cancelled()
