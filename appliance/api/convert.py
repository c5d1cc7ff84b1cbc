"""protobuf <-> model conversions (the checks they run are appliance/validation.py's)."""

from __future__ import annotations

import bisect
from collections.abc import Iterable

from appliance import validation
from appliance.config import Settings
from appliance.errors import InvalidArgument
from appliance.keys import new_task_id, topic_in_id
from appliance.model import NewTask, Task, TaskState, TopicStats
from appliance.proto import queue_pb2 as pb
from appliance.store import codec
from appliance.workflows.model import run_of_task

STATE_TO_PB = {
    TaskState.PENDING: pb.PENDING,
    TaskState.RUNNING: pb.RUNNING,
    TaskState.SUCCEEDED: pb.SUCCEEDED,
    TaskState.DEAD: pb.DEAD,
    TaskState.CANCELED: pb.CANCELED,
}


def new_task(
    req: pb.EnqueueRequest, settings: Settings, traceparent: str = ""
) -> tuple[NewTask, bool]:
    """A validated NewTask, and whether its id was given by the client."""
    topic = validation.topic(req.topic)
    validation.payload(req.payload, settings.payload_max_bytes)
    validation.non_negative(req.delay_seconds, "delay_seconds", validation.MAX_DELAY_MS // 1000)
    validation.non_negative(req.delay_ms, "delay_ms", validation.MAX_DELAY_MS)
    validation.execute_at_ms(req.execute_at_ms)
    max_retries = settings.default_max_retries
    if req.HasField("max_retries"):
        max_retries = validation.max_retries(req.max_retries)
    task_id = validation.task_id(req.id) if req.id else new_task_id(topic)
    if run_of_task(task_id):
        raise InvalidArgument(f"id {task_id!r}: ids 'wf:<run>:<step>' are workflow steps' tasks")
    named = topic_in_id(task_id)
    if named is not None and named != topic:
        raise InvalidArgument(f"id {task_id!r} was made for topic {named!r}, not {topic!r}")
    client_id = named is None
    delay_ms = req.delay_ms if req.delay_ms > 0 else req.delay_seconds * 1000
    task = NewTask(
        task_id, topic, req.payload, max_retries, delay_ms, req.execute_at_ms, traceparent
    )
    return task, client_id


def task_to_pb(task: Task, with_lease: bool = False) -> pb.Task:
    """The lease token goes only to the consumer that leased the task (Retrieve)."""
    leased = with_lease and task.state == TaskState.RUNNING
    return pb.Task(
        id=task.id,
        topic=task.topic,
        payload=task.payload,
        execute_time=task.execute_time_ms // 1000,
        retry_count=task.retry_count,
        max_retries=task.max_retries,
        created_at=task.created_at_ms // 1000,
        lease_token=task.lease_token if leased else "",
        execute_time_ms=task.execute_time_ms,
        attempt=task.attempt,
        created_at_ms=task.created_at_ms,
        lease_deadline_ms=task.lease_deadline_ms if task.state == TaskState.RUNNING else 0,
        traceparent=task.traceparent,
    )


def leased_to_pb(topic: str, rows: Iterable[codec.ClaimedRow]) -> list[pb.Task]:
    """Retrieve's tasks, straight from claim.lua's rows (as task_to_pb(..., with_lease=True)
    would make them from Tasks; tests/api checks that the two agree)."""
    return [
        pb.Task(
            id=r.id.decode(),
            topic=topic,
            payload=r.payload.decode(),
            execute_time=r.due_ms // 1000,
            retry_count=r.attempt - 1,
            max_retries=r.max_retries,
            created_at=r.created_ms // 1000,
            lease_token=r.token.decode(),
            execute_time_ms=r.due_ms,
            attempt=r.attempt,
            created_at_ms=r.created_ms,
            lease_deadline_ms=r.deadline_ms,
            traceparent=r.traceparent.decode(),
        )
        for r in rows
    ]


def stats_to_pb(stats: TopicStats) -> pb.TopicStats:
    return pb.TopicStats(
        topic=stats.topic,
        pending=stats.pending,
        due=stats.due,
        running=stats.running,
        dead=stats.dead,
        oldest_due_ms=stats.oldest_due_ms,
    )


def page_of(names: list[str], size: int, after: str) -> tuple[list[str], str]:
    """The sorted `names` after `after`, `size` of them, and the next page's token."""
    start = bisect.bisect_right(names, after) if after else 0
    page = names[start : start + size]
    return page, page[-1] if start + size < len(names) else ""
