"""ScheduleService: converts protobuf <-> the schedule model and calls the scheduler's registry;
nothing else. Errors are domain exceptions mapped to status codes by api.servicer's `rpc`.

Must not import redis; validation lives in appliance/scheduler/definitions.py.
"""

from __future__ import annotations

import grpc

from appliance import validation
from appliance.api.servicer import rpc
from appliance.config import Settings
from appliance.errors import InvalidArgument
from appliance.proto import queue_pb2 as pb
from appliance.proto import queue_pb2_grpc as pb_grpc
from appliance.scheduler.definitions import (
    Definition,
    Misfire,
    Schedule,
    Source,
    check,
    schedule_id,
)
from appliance.scheduler.registry import Registry
from appliance.store import Store

MISFIRE_FROM_PB = {
    pb.MISFIRE_POLICY_UNSPECIFIED: Misfire.SKIP,
    pb.SKIP: Misfire.SKIP,
    pb.RUN_ONCE: Misfire.RUN_ONCE,
}
MISFIRE_TO_PB = {Misfire.SKIP: pb.SKIP, Misfire.RUN_ONCE: pb.RUN_ONCE}


def definition_from_pb(message: pb.Schedule, settings: Settings) -> Definition:
    """A checked api-made definition; the read-only fields (next/last fire, source) are ignored."""
    if message.misfire_policy not in MISFIRE_FROM_PB:
        raise InvalidArgument(f"schedule.misfire_policy {message.misfire_policy} is unknown")
    candidate = Definition(
        id=message.id,
        topic=message.topic,
        payload=message.payload,
        cron=message.cron,
        timezone=message.timezone,
        interval_ms=message.interval_ms,
        max_retries=message.max_retries if message.HasField("max_retries") else None,
        misfire=MISFIRE_FROM_PB[message.misfire_policy],
        jitter_ms=message.jitter_ms,
        start_ms=message.start_ms,
        end_ms=message.end_ms,
        paused=message.paused,
        source=Source.API,
        workflow=message.workflow,
    )
    return check(candidate, settings.payload_max_bytes, prefix="schedule.")


def schedule_to_pb(s: Schedule) -> pb.Schedule:
    d = s.definition
    out = pb.Schedule(
        id=d.id,
        topic=d.topic,
        payload=d.payload,
        cron=d.cron,
        timezone=d.timezone,
        interval_ms=d.interval_ms,
        misfire_policy=MISFIRE_TO_PB[d.misfire],
        jitter_ms=d.jitter_ms,
        paused=d.paused,
        next_fire_time_ms=s.next_fire_ms,
        last_fire_time_ms=s.last_fire_ms,
        start_ms=d.start_ms,
        end_ms=d.end_ms,
        source=d.source.value,
        workflow=d.workflow,
    )
    if d.max_retries is not None:
        out.max_retries = d.max_retries
    return out


def _given(request: pb.CreateScheduleRequest | pb.UpdateScheduleRequest) -> pb.Schedule:
    if not request.HasField("schedule"):
        raise InvalidArgument("schedule is missing")
    return request.schedule


class ScheduleServicer(pb_grpc.ScheduleServiceServicer):
    def __init__(self, store: Store, settings: Settings) -> None:
        self.registry = Registry(store, settings)
        self.settings = settings

    @rpc
    async def CreateSchedule(
        self, request: pb.CreateScheduleRequest, context: grpc.aio.ServicerContext
    ) -> pb.Schedule:
        definition = definition_from_pb(_given(request), self.settings)
        return schedule_to_pb(await self.registry.create(definition))

    @rpc
    async def UpdateSchedule(
        self, request: pb.UpdateScheduleRequest, context: grpc.aio.ServicerContext
    ) -> pb.Schedule:
        definition = definition_from_pb(_given(request), self.settings)
        return schedule_to_pb(await self.registry.update(definition))

    @rpc
    async def PauseSchedule(
        self, request: pb.ScheduleIdRequest, context: grpc.aio.ServicerContext
    ) -> pb.Schedule:
        return schedule_to_pb(await self.registry.pause(schedule_id(request.id)))

    @rpc
    async def ResumeSchedule(
        self, request: pb.ScheduleIdRequest, context: grpc.aio.ServicerContext
    ) -> pb.Schedule:
        return schedule_to_pb(await self.registry.resume(schedule_id(request.id)))

    @rpc
    async def DeleteSchedule(
        self, request: pb.ScheduleIdRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteScheduleResponse:
        await self.registry.delete(schedule_id(request.id))
        return pb.DeleteScheduleResponse(success=True)

    @rpc
    async def GetSchedule(
        self, request: pb.ScheduleIdRequest, context: grpc.aio.ServicerContext
    ) -> pb.Schedule:
        return schedule_to_pb(await self.registry.get(schedule_id(request.id)))

    @rpc
    async def ListSchedules(
        self, request: pb.ListSchedulesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListSchedulesResponse:
        topic = validation.topic(request.topic) if request.topic else ""
        found = await self.registry.list(topic)
        return pb.ListSchedulesResponse(schedules=[schedule_to_pb(s) for s in found])

    @rpc
    async def FireSchedule(
        self, request: pb.ScheduleIdRequest, context: grpc.aio.ServicerContext
    ) -> pb.FireScheduleResponse:
        task_id, tick = await self.registry.fire_now(schedule_id(request.id))
        return pb.FireScheduleResponse(task_id=task_id, fire_time_ms=tick)

    @rpc
    async def GetSchedulerStatus(
        self, request: pb.GetSchedulerStatusRequest, context: grpc.aio.ServicerContext
    ) -> pb.SchedulerStatus:
        info = await self.registry.status()
        return pb.SchedulerStatus(
            leader_id=info.holder,
            fencing_token=info.token,
            lease_expires_ms=info.expires_ms,
            ticks_fired=info.ticks_fired,
        )
