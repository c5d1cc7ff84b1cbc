"""Decoding of Redis replies into model objects. Knows the task HASH's field names and the
packed record of a task never leased."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from appliance.model import Task, TaskEvent, TaskState


def text(value: Any) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else str(value)


def text_hash(raw: Mapping[Any, Any]) -> dict[str, str]:
    """A HASH read (HGETALL) as text fields."""
    return {text(k): text(v) for k, v in raw.items()}


def text_pairs(flat: Sequence[Any]) -> dict[str, str]:
    """A flat field, value, ... list (a script's HGETALL) as text fields."""
    return {text(flat[i]): text(flat[i + 1]) for i in range(0, len(flat), 2)}


def number(value: Any) -> int:
    """An integer reply or field; Lua may have written a number as '1.7643e+12'."""
    if value is None or value in (b"", ""):
        return 0
    return value if isinstance(value, int) else int(float(value))


def task_from_hash(task_id: str, topic: str, fields: Mapping[Any, Any]) -> Task:
    get = fields.get
    return Task(
        id=task_id,
        topic=topic,
        payload=text(get(b"payload")),
        execute_time_ms=number(get(b"due")),
        created_at_ms=number(get(b"created")),
        max_retries=number(get(b"maxr")),
        attempt=number(get(b"attempt")),
        state=TaskState(text(get(b"state")) or "PENDING"),
        lease_token=text(get(b"token")),
        lease_deadline_ms=number(get(b"deadline")),
        last_error=text(get(b"err")),
        traceparent=text(get(b"trace")),
        result=text(get(b"result")),
    )


def history(task: Task, hist: Any) -> list[TaskEvent]:
    """A task's events, oldest first: its enqueue (the record's creation), then each line of
    its `hist` field ('<ms> <kind>[ <detail>]', lua/lib/history.lua)."""
    events = [TaskEvent(task.created_at_ms, "enqueue")]
    for line in text(hist).split("\n") if hist else ():
        ms, _, rest = line.partition(" ")
        kind, _, detail = rest.partition(" ")
        events.append(TaskEvent(number(ms), kind, detail))
    return events


def task_from_new_record(task_id: str, topic: str, packed: bytes, due_ms: int) -> Task:
    """A PENDING task never leased: its packed field of the topic's `new` HASH
    ('<created> <max_retries>[ <traceparent>]\\n<payload>', lua/lib/new_record.lua) and its
    pending score."""
    head, _, payload = packed.partition(b"\n")
    created, max_retries, *trace = head.decode().split(" ")
    return Task(
        id=task_id,
        topic=topic,
        payload=text(payload),
        execute_time_ms=due_ms,
        created_at_ms=int(created),
        max_retries=int(max_retries),
        attempt=0,
        state=TaskState.PENDING,
        traceparent=trace[0] if trace else "",
    )


class ClaimedRow(NamedTuple):
    """One leased task as claim.lua sends it: its 9 values per task, in this order."""

    id: bytes
    payload: bytes
    due_ms: int
    created_ms: int
    max_retries: int
    attempt: int
    token: bytes
    deadline_ms: int
    traceparent: bytes


CLAIM_FIELDS = len(ClaimedRow._fields)


def claimed_rows(flat: Sequence[Any]) -> list[ClaimedRow]:
    """claim.lua's reply tail, one row per task (the server turns these into protobuf
    directly: building a Task first was a large share of a Retrieve's time)."""
    columns = (flat[i::CLAIM_FIELDS] for i in range(CLAIM_FIELDS))
    return list(map(ClaimedRow._make, zip(*columns, strict=True)))


def claimed_task(topic: str, row: ClaimedRow) -> Task:
    return Task(
        id=text(row.id),
        topic=topic,
        payload=text(row.payload),
        execute_time_ms=number(row.due_ms),
        created_at_ms=number(row.created_ms),
        max_retries=number(row.max_retries),
        attempt=number(row.attempt),
        state=TaskState.RUNNING,
        lease_token=text(row.token),
        lease_deadline_ms=number(row.deadline_ms),
        traceparent=text(row.traceparent),
    )
