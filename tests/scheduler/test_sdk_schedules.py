"""The SDK's schedule calls (AsyncClient; Client is its blocking twin, used by `atp schedule`,
tests/scheduler/test_cli.py): the same ScheduleService, the SDK's errors."""

from __future__ import annotations

import pytest

from appliance.api._proto import queue_pb2 as pb
from appliance.client import AsyncClient
from appliance.errors import AlreadyExists, NotFound


async def test_create_get_pause_resume_list_status_delete(server: object) -> None:
    schedule = pb.Schedule(id="s1", topic="ticks", payload="p", interval_ms=1000)
    async with AsyncClient(server.address) as c:  # type: ignore[attr-defined]
        created = await c.create_schedule(schedule)
        assert created.id == "s1" and created.source == "api" and created.next_fire_time_ms > 0
        with pytest.raises(AlreadyExists):
            await c.create_schedule(schedule)
        assert await c.get_schedule("s1") == created
        assert (await c.pause_schedule("s1")).paused
        assert not (await c.resume_schedule("s1")).paused
        changed = pb.Schedule()
        changed.CopyFrom(created)
        changed.interval_ms = 2000
        assert (await c.update_schedule(changed)).interval_ms == 2000
        assert [s.id for s in await c.list_schedules("ticks")] == ["s1"]
        assert await c.list_schedules("other") == []
        assert (await c.scheduler_status()).ticks_fired >= 0
        await c.delete_schedule("s1")
        with pytest.raises(NotFound):
            await c.get_schedule("s1")
