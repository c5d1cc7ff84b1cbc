"""The console's reads and bulk actions (docs/adr/0017-task-history-and-workers.md):
GetTaskHistory, ListTasks, RedriveDeadLetters and ListWorkers, converted here and run by the
store; QueueServicer's methods of the same names call these. Imports grpc's generated code
and the store, like the servicer."""

from __future__ import annotations

from appliance import validation
from appliance.api import convert
from appliance.api.interceptors import current_principal
from appliance.api.work_stream import REPORT_TTL_MS
from appliance.errors import InvalidArgument
from appliance.model import TaskState
from appliance.proto import queue_pb2 as pb
from appliance.store import Store
from appliance.store.browse import REDRIVE_SCAN_MAX, Browse, DeadFilter
from appliance.store.workers import WorkerRegistry

LIST_STATES = {pb.PENDING: TaskState.PENDING, pb.RUNNING: TaskState.RUNNING}


def dead_filter(message: pb.DeadLetterFilter) -> DeadFilter:
    validation.non_negative(message.dead_from_ms, "filter.dead_from_ms", 1 << 62)
    validation.non_negative(message.dead_until_ms, "filter.dead_until_ms", 1 << 62)
    if len(message.error_contains.encode()) > 1024:
        raise InvalidArgument("filter.error_contains: at most 1024 bytes")
    return DeadFilter(message.error_contains, message.dead_from_ms, message.dead_until_ms)


async def get_task_history(
    store: Store, request: pb.GetTaskHistoryRequest, topic: str
) -> pb.GetTaskHistoryResponse:
    task_id = validation.task_id(request.id)
    task, events = await store.history(task_id, topic, current_principal().topics)
    return pb.GetTaskHistoryResponse(
        id=task.id,
        topic=task.topic,
        state=convert.STATE_TO_PB[task.state],
        events=[pb.TaskEvent(time_ms=e.time_ms, kind=e.kind, detail=e.detail) for e in events],
    )


async def list_tasks(
    browse: Browse, request: pb.ListTasksRequest, topic: str
) -> pb.ListTasksResponse:
    state = LIST_STATES.get(request.state)
    if state is None:
        raise InvalidArgument("state: PENDING or RUNNING")
    limit = validation.dead_letter_limit(request.limit)
    validation.dead_letter_cursor(request.cursor)
    if len(request.id_prefix) > 1024:
        raise InvalidArgument("id_prefix: at most 1024 characters")
    tasks, cursor = await browse.tasks(topic, state, limit, request.cursor, request.id_prefix)
    return pb.ListTasksResponse(tasks=[convert.task_to_pb(t) for t in tasks], next_cursor=cursor)


async def redrive(
    browse: Browse, request: pb.RedriveDeadLettersRequest, topic: str
) -> pb.RedriveDeadLettersResponse:
    if request.action not in (pb.REDRIVE_REQUEUE, pb.REDRIVE_PURGE):
        raise InvalidArgument("action: REDRIVE_REQUEUE or REDRIVE_PURGE")
    validation.non_negative(request.scan_limit, "scan_limit", REDRIVE_SCAN_MAX)
    validation.dead_letter_cursor(request.cursor)
    wanted = dead_filter(request.filter)
    count, scanned, cursor = await browse.redrive(
        topic,
        wanted,
        request.action == pb.REDRIVE_REQUEUE,
        request.scan_limit or REDRIVE_SCAN_MAX,
        request.cursor,
    )
    return pb.RedriveDeadLettersResponse(count=count, scanned=scanned, next_cursor=cursor)


async def list_workers(registry: WorkerRegistry) -> pb.ListWorkersResponse:
    now, streams = await registry.list(REPORT_TTL_MS)
    allowed = current_principal().topics
    return pb.ListWorkersResponse(
        now_ms=now,
        workers=[
            pb.WorkerStream(
                stream_id=s.stream_id,
                worker_name=s.worker_name,
                server=s.server,
                peer=s.peer,
                topics=list(s.topics),
                credits=s.credits,
                in_flight=s.in_flight,
                connected_ms=s.connected_ms,
                last_seen_ms=s.last_seen_ms,
            )
            for s in streams
            if allowed is None or set(s.topics) <= allowed
        ],
    )
