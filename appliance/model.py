"""The task lifecycle, written once: states, named state groups and the allowed moves.

Owns the vocabulary every other module speaks. Stdlib only; imports nothing of atp.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, Generic, TypeVar


class TaskState(enum.StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    DEAD = "DEAD"
    CANCELED = "CANCELED"


TERMINAL_STATES = frozenset({TaskState.SUCCEEDED, TaskState.CANCELED})
"""States a task never leaves (its record expires after the retention time)."""

PARKED_STATES = frozenset({TaskState.DEAD})
"""States a task leaves only by an operator's hand (requeue or purge)."""

LIVE_STATES = frozenset({TaskState.PENDING, TaskState.RUNNING})
"""States the queue itself moves a task out of."""


StateT = TypeVar("StateT", bound=enum.StrEnum)


@dataclasses.dataclass(frozen=True)
class Transition(Generic[StateT]):
    """One allowed move of a lifecycle and the Lua script that makes it. The task lifecycle's
    table is below; workflow runs and steps (appliance/workflows/model.py) use the same type."""

    source: StateT | None  # None: the record does not exist yet
    target: StateT | None  # None: the record is gone
    script: str  # the Lua script (appliance/store/lua/<script>.lua) that makes the move


TRANSITIONS: tuple[Transition[TaskState], ...] = (
    # Enqueue: a new task waits for its due time.
    Transition(None, TaskState.PENDING, "enqueue"),
    # Retrieve: a due task is leased to one consumer under a fresh token.
    Transition(TaskState.PENDING, TaskState.RUNNING, "claim"),
    # Delete: a pending task is canceled; kept for the retention time.
    Transition(TaskState.PENDING, TaskState.CANCELED, "cancel"),
    # Ack with the current token: done; kept for the retention time.
    Transition(TaskState.RUNNING, TaskState.SUCCEEDED, "ack"),
    # Nack with retries left: due again after the backoff.
    Transition(TaskState.RUNNING, TaskState.PENDING, "nack"),
    # Nack with retries spent, or asked to dead-letter.
    Transition(TaskState.RUNNING, TaskState.DEAD, "nack"),
    # Nack with release (a consumer shutting down): due again, the attempt not counted.
    Transition(TaskState.RUNNING, TaskState.PENDING, "release"),
    # ExtendLease: still running, later deadline.
    Transition(TaskState.RUNNING, TaskState.RUNNING, "extend"),
    # Watchdog: the lease deadline passed; retried like a Nack...
    Transition(TaskState.RUNNING, TaskState.PENDING, "recover_expired"),
    # ... or dead-lettered when its retries are spent.
    Transition(TaskState.RUNNING, TaskState.DEAD, "recover_expired"),
    # A worker stream ended without a goodbye: its tasks are due again at once, the attempt
    # counted ("worker lost")...
    Transition(TaskState.RUNNING, TaskState.PENDING, "release_lost"),
    # ... or dead-lettered when their retries are spent.
    Transition(TaskState.RUNNING, TaskState.DEAD, "release_lost"),
    # Operator: a dead letter goes back to the queue, due now, with fresh attempts.
    Transition(TaskState.DEAD, TaskState.PENDING, "requeue_dead"),
    # Operator: a dead letter is removed for good.
    Transition(TaskState.DEAD, None, "purge_dead"),
)


def allowed(
    source: enum.StrEnum | None,
    target: enum.StrEnum | None,
    table: tuple[Transition[Any], ...] = TRANSITIONS,
) -> bool:
    """Whether `table` (the task lifecycle unless named) has the move source -> target."""
    return any(t.source == source and t.target == target for t in table)


@dataclasses.dataclass(frozen=True, slots=True)
class Task:
    """One task as the store returns it. Times are ms since the epoch (Redis clock)."""

    id: str
    topic: str
    payload: str
    execute_time_ms: int
    created_at_ms: int
    max_retries: int
    attempt: int = 0  # deliveries so far; the n-th delivery carries attempt n
    state: TaskState = TaskState.PENDING
    lease_token: str = ""
    lease_deadline_ms: int = 0
    last_error: str = ""
    traceparent: str = ""  # W3C trace context of the Enqueue call, if the producer sent one
    result: str = ""  # SUCCEEDED: the output its Ack carried (docs/adr/0010-workflows.md)

    @property
    def retry_count(self) -> int:
        """Failed deliveries before the current one (the seed's retry_count)."""
        return max(self.attempt - 1, 0) if self.state == TaskState.RUNNING else self.attempt


@dataclasses.dataclass(frozen=True, slots=True)
class NewTask:
    """A validated enqueue request. Exactly one of delay_ms and execute_at_ms is used."""

    id: str
    topic: str
    payload: str
    max_retries: int
    delay_ms: int = 0
    execute_at_ms: int = 0  # > 0: absolute due time, wins over delay_ms
    traceparent: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class EnqueueResult:
    id: str
    created: bool  # False: the id existed, nothing was created


@dataclasses.dataclass(frozen=True, slots=True)
class NackResult:
    dead_lettered: bool
    next_execute_time_ms: int


@dataclasses.dataclass(frozen=True, slots=True)
class TaskEvent:
    """One line of a task's event history (docs/adr/0017-task-history-and-workers.md)."""

    time_ms: int
    kind: str  # one of EVENT_KINDS
    detail: str = ""  # lease: who; nack: the error; dead: why; recover: why; extend: how many


@dataclasses.dataclass(frozen=True, slots=True)
class WorkerStream:
    """One connected worker stream, as the workers registry keeps it (docs/adr/0017)."""

    stream_id: str
    worker_name: str
    server: str  # host:pid of the server process serving it
    peer: str
    topics: tuple[str, ...]
    credits: int  # the credit window
    in_flight: int  # tasks held now
    connected_ms: int
    last_seen_ms: int  # the worker's last message


# enqueue is the record's creation time; every other kind is a line the scripts write.
EVENT_KINDS = (
    "enqueue",
    "lease",
    "extend",
    "ack",
    "nack",
    "release",
    "recover",
    "dead",
    "requeue",
    "cancel",
)


@dataclasses.dataclass(frozen=True, slots=True)
class TopicStats:
    topic: str
    pending: int
    due: int
    running: int
    dead: int
    oldest_due_ms: int
