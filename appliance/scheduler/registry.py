"""Schedule management for the API and the config reconciler: validated definitions in, stored
schedules out. Plans each schedule's first tick from the Redis clock and calls the store.

Pausing or deleting a schedule also cancels the tasks it already enqueued ahead (the leader
enqueues up to `scheduler_lookahead_ms` early), so nothing fires after the call returns - except
a tick the leader was firing at that very moment. Must not import redis or grpc.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence

from appliance.config import Settings
from appliance.errors import NotFound, WrongState
from appliance.scheduler.definitions import Definition, Schedule, Source, from_fields
from appliance.store import Store
from appliance.store.schedules import LeaderInfo, ScheduleStore

log = logging.getLogger(__name__)


def first_tick(d: Definition, now_ms: int, last_ms: int = 0) -> int:
    """The first tick at or after now (and after the last fired one); 0: none left."""
    return d.timetable.next_after(max(now_ms - 1, last_ms)) or 0


class Registry:
    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.schedules = ScheduleStore(store)
        self.settings = settings

    async def create(self, d: Definition) -> Schedule:
        now = await self.schedules.now_ms()
        return from_fields(
            await self.schedules.put("create", d.id, first_tick(d, now), d.to_fields())
        )

    async def update(self, d: Definition) -> Schedule:
        """Replace a definition (an api-made one: the config file owns the others). It applies
        from the first tick not enqueued yet (at most the lookahead ahead of now)."""
        current = await self.get(d.id)
        if current.definition.source == Source.CONFIG:
            raise WrongState(f"schedule {d.id!r} is declared in the config file; change it there")
        now = await self.schedules.now_ms()
        nxt = first_tick(d, now, current.last_fire_ms)
        return from_fields(await self.schedules.put("update", d.id, nxt, d.to_fields()))

    async def pause(self, schedule_id: str) -> Schedule:
        paused = from_fields(await self.schedules.pause(schedule_id))
        await self._cancel_ahead(paused, await self.schedules.now_ms())
        return paused

    async def resume(self, schedule_id: str) -> Schedule:
        """Fire again from the next tick after now; ticks missed while paused are not fired."""
        current = await self.get(schedule_id)
        now = await self.schedules.now_ms()
        nxt = first_tick(current.definition, now, current.last_fire_ms)
        return from_fields(await self.schedules.resume(schedule_id, nxt))

    async def fire_now(self, schedule_id: str) -> tuple[str, int]:
        """One tick now, besides the timetable: parked in the outbox, which the leading
        scheduler enqueues (or starts as a run) exactly once (idempotent id). Returns (task or
        run id, tick ms)."""
        current = await self.get(schedule_id)
        now = await self.schedules.now_ms()
        task = current.definition.outbox_entry(now, self.settings.default_max_retries, True)
        await self.schedules.fire_now(schedule_id, now, task)
        return task[0], now

    async def delete(self, schedule_id: str) -> None:
        fields = await self.schedules.delete(schedule_id)
        if fields:
            await self._cancel_ahead(from_fields(fields), await self.schedules.now_ms())

    async def get(self, schedule_id: str) -> Schedule:
        return from_fields(await self.schedules.get(schedule_id))

    async def list(self, topic: str = "") -> list[Schedule]:
        found = [from_fields(f) for f in await self.schedules.list_all()]
        return [s for s in found if not topic or s.definition.topic == topic]

    async def status(self) -> LeaderInfo:
        return await self.schedules.leader()

    async def reconcile(self, declared: Sequence[Definition]) -> tuple[int, int, int]:
        """Make the stored config-made schedules match `declared`: the config wins for the ids
        it names (even over an api-made one), config-made ids it no longer names are deleted,
        api-made ones are left alone. An unchanged definition keeps its pause state and next
        and last fire. Returns (written, unchanged, deleted)."""
        stored = {s.id: s for s in map(from_fields, await self.schedules.list_all())}
        now = await self.schedules.now_ms()
        written = unchanged = deleted = 0
        for d in declared:
            old = stored.get(d.id)
            if old is not None and old.definition.same_plan(d):
                unchanged += 1
                continue
            nxt = first_tick(d, now, old.last_fire_ms if old else 0)
            await self.schedules.put("upsert", d.id, nxt, d.to_fields())
            log.info("schedule %s %s from the config file", d.id, "updated" if old else "created")
            written += 1
        names = {d.id for d in declared}
        for s in stored.values():
            if s.definition.source == Source.CONFIG and s.id not in names:
                await self.delete_config_made(s)
                deleted += 1
        return written, unchanged, deleted

    async def delete_config_made(self, s: Schedule) -> None:
        with contextlib.suppress(NotFound):
            await self.schedules.delete(s.id, api_only=False)
            await self._cancel_ahead(s, await self.schedules.now_ms())
            log.info("schedule %s deleted: no longer in the config file", s.id)

    async def _cancel_ahead(self, s: Schedule, now_ms: int) -> None:
        """Cancel the tasks of ticks enqueued ahead of time and not yet due."""
        d = s.definition
        tick = d.timetable.next_after(now_ms - 1 - d.jitter_ms)
        while tick is not None and tick <= s.last_fire_ms:
            if d.due_ms(tick) > now_ms:
                with contextlib.suppress(NotFound, WrongState):
                    await self.store.cancel(d.task_id(tick), d.topic)
            tick = d.timetable.next_after(tick)
