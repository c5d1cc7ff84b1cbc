"""Decoding of Redis replies into model objects. Knows the task HASH's field names and the
packed record of a task never leased."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from appliance.model import Task, TaskState

CLAIM_FIELDS = 9  # per task in claim.lua's reply


def text(value: Any) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else str(value)


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
    )


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


ClaimedRow = tuple[bytes, bytes, int, int, int, int, bytes, int, bytes]
"""claim.lua's 9 values per task: id, payload, due, created, max_retries, attempt, lease token,
lease deadline, traceparent."""


def claimed_rows(flat: Sequence[Any]) -> list[ClaimedRow]:
    """claim.lua's reply tail, one tuple per task (the server turns these into protobuf
    directly: building a Task first was a large share of a Retrieve's time)."""
    return list(zip(*(flat[i::CLAIM_FIELDS] for i in range(CLAIM_FIELDS)), strict=True))


def claimed_task(topic: str, row: ClaimedRow) -> Task:
    tid, payload, due, created, maxr, attempt, token, deadline, trace = row
    return Task(
        id=text(tid),
        topic=topic,
        payload=text(payload),
        execute_time_ms=number(due),
        created_at_ms=number(created),
        max_retries=number(maxr),
        attempt=number(attempt),
        state=TaskState.RUNNING,
        lease_token=text(token),
        lease_deadline_ms=number(deadline),
        traceparent=text(trace),
    )
