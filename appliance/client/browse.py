"""The SDK's calls behind the console (docs/adr/0017-task-history-and-workers.md): a task's
event history, a topic's tasks by state, dead-letter redrive by filter, the connected workers,
a schedule fired now. Built here, run by Client and AsyncClient like common.py's calls."""

from __future__ import annotations

import dataclasses

from appliance.client.common import SCHEDULES, Call, _state, task_from_pb
from appliance.model import Task, TaskEvent, TaskState, WorkerStream
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


@dataclasses.dataclass(frozen=True, slots=True)
class DeadLetterFilter:
    """Dead letters whose last error contains `error` (any case), dead in [from_ms, until_ms)
    (0: open)."""

    error: str = ""
    from_ms: int = 0
    until_ms: int = 0

    def to_pb(self) -> pb.DeadLetterFilter:
        return pb.DeadLetterFilter(
            error_contains=self.error, dead_from_ms=self.from_ms, dead_until_ms=self.until_ms
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Workers:
    now_ms: int  # the server's clock
    streams: list[WorkerStream]


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
    topic: str, requeue: bool, wanted: DeadLetterFilter, scan_limit: int = 0, cursor: str = ""
) -> Call[Redrive]:
    req = pb.RedriveDeadLettersRequest(
        topic=topic,
        filter=wanted.to_pb(),
        action=pb.REDRIVE_REQUEUE if requeue else pb.REDRIVE_PURGE,
        scan_limit=scan_limit,
        cursor=cursor,
    )
    return Call("RedriveDeadLetters", req, lambda r: Redrive(r.count, r.scanned, r.next_cursor))


def list_workers() -> Call[Workers]:
    def decode(r: pb.ListWorkersResponse) -> Workers:
        streams = [
            WorkerStream(
                w.stream_id,
                w.worker_name,
                w.server,
                w.peer,
                tuple(w.topics),
                w.credits,
                w.in_flight,
                w.connected_ms,
                w.last_seen_ms,
            )
            for w in r.workers
        ]
        return Workers(r.now_ms, streams)

    return Call("ListWorkers", pb.ListWorkersRequest(), decode)


def fire_schedule(schedule_id: str) -> Call[pb.FireScheduleResponse]:
    req = pb.ScheduleIdRequest(id=schedule_id)
    return Call("FireSchedule", req, lambda r: r, service=SCHEDULES)
