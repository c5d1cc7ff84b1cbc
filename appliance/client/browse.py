"""The SDK's calls behind the console (docs/adr/0017-task-history-and-workers.md): a task's
event history, a topic's tasks by state, dead-letter redrive by filter, the connected workers,
a schedule fired now. Built here, run by Client and AsyncClient like common.py's calls."""

from __future__ import annotations

import dataclasses

from appliance.client.common import SCHEDULES, Call, _state, task_from_pb
from appliance.model import Task, TaskEvent, TaskState
from appliance.proto import queue_pb2 as pb


@dataclasses.dataclass(frozen=True, slots=True)
class TaskHistory:
    id: str
    topic: str
    state: TaskState
    events: list[TaskEvent]  # oldest first; the enqueue always first


@dataclasses.dataclass(frozen=True, slots=True)
class TaskPage:
    tasks: list[Task]  # payloads cut to 200 bytes
    next_cursor: str  # empty when there is nothing more


@dataclasses.dataclass(frozen=True, slots=True)
class Redrive:
    count: int  # requeued or purged
    scanned: int  # dead letters looked at
    next_cursor: str  # empty: every dead letter was looked at


def dead_filter(error: str = "", from_ms: int = 0, until_ms: int = 0) -> pb.DeadLetterFilter:
    return pb.DeadLetterFilter(error_contains=error, dead_from_ms=from_ms, dead_until_ms=until_ms)


def task_history(task_id: str, topic: str = "") -> Call[TaskHistory]:
    def decode(r: pb.GetTaskHistoryResponse) -> TaskHistory:
        events = [TaskEvent(e.time_ms, e.kind, e.detail) for e in r.events]
        return TaskHistory(r.id, r.topic, _state(r.state), events)

    return Call("GetTaskHistory", pb.GetTaskHistoryRequest(id=task_id, topic=topic), decode)


def list_tasks(
    topic: str, state: TaskState, limit: int = 100, cursor: str = "", id_prefix: str = ""
) -> Call[TaskPage]:
    def decode(r: pb.ListTasksResponse) -> TaskPage:
        return TaskPage([task_from_pb(t, state) for t in r.tasks], r.next_cursor)

    req = pb.ListTasksRequest(
        topic=topic,
        state=pb.TaskState.Value(state.value),
        limit=limit,
        cursor=cursor,
        id_prefix=id_prefix,
    )
    return Call("ListTasks", req, decode)


def redrive(
    topic: str, requeue: bool, wanted: pb.DeadLetterFilter, scan_limit: int = 0, cursor: str = ""
) -> Call[Redrive]:
    req = pb.RedriveDeadLettersRequest(
        topic=topic,
        filter=wanted,
        action=pb.REDRIVE_REQUEUE if requeue else pb.REDRIVE_PURGE,
        scan_limit=scan_limit,
        cursor=cursor,
    )
    return Call("RedriveDeadLetters", req, lambda r: Redrive(r.count, r.scanned, r.next_cursor))


def list_workers() -> Call[pb.ListWorkersResponse]:
    return Call("ListWorkers", pb.ListWorkersRequest(), lambda r: r)


def fire_schedule(schedule_id: str) -> Call[pb.FireScheduleResponse]:
    req = pb.ScheduleIdRequest(id=schedule_id)
    return Call("FireSchedule", req, lambda r: r, service=SCHEDULES)
