"""What the sync and asyncio clients share: request building, reply decoding, error mapping.

Each API call is described once here as a `Call` (RPC name, request, reply decoder); the two
clients only send it (appliance/client/sync.py, aio.py). Imports grpc and the generated code;
must not import the store, redis or the worker.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import grpc

from appliance.errors import (
    AtpError,
    ConfigError,
    InvalidArgument,
    NotFound,
    RateLimited,
    StaleLease,
    WrongState,
)
from appliance.model import NackResult, Task, TaskState, TopicStats
from appliance.proto import queue_pb2 as pb
from appliance.proto.status import ERROR_OF, status_of

if TYPE_CHECKING:
    from appliance.config import Settings

T = TypeVar("T")
Payload = str | bytes | dict[str, Any] | list[Any]
Duration = float | int | dt.timedelta
"""Seconds (int or float) or a timedelta."""
When = dt.datetime | int
"""A datetime (naive means local time) or milliseconds since the epoch."""

DEFAULT_TIMEOUT_S = 30.0
CHANNEL_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.max_receive_message_length", -1),  # the server bounds what it sends
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 5_000),  # a restarted server is found again quickly
    ("grpc.keepalive_time_ms", 30_000),  # long polls notice a dead connection
    ("grpc.keepalive_timeout_ms", 10_000),
)


class RpcFailed(AtpError):
    """A gRPC status with no domain class (DEADLINE_EXCEEDED, INTERNAL, UNAUTHENTICATED, ...)."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclasses.dataclass(frozen=True, slots=True)
class Tls:
    """Client TLS (PEM files): the CA that signed the server's certificate (empty: the system's
    roots) and, for mutual TLS, this client's certificate and key."""

    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""

    @classmethod
    def from_settings(cls, settings: Settings) -> Tls | None:
        """TLS as the config's client side asks (tls_ca_file, tls_client_*), or None."""
        if not (settings.tls_ca_file or settings.tls_client_cert_file):
            return None
        return cls(
            settings.tls_ca_file, settings.tls_client_cert_file, settings.tls_client_key_file
        )

    def credentials(self) -> Any:
        """grpc.ChannelCredentials from the files; a missing file is a ConfigError."""

        def read(path: str) -> bytes | None:
            try:
                return Path(path).read_bytes() if path else None
            except OSError as exc:
                raise ConfigError(f"TLS file {path}: {exc.strerror}") from exc

        return grpc.ssl_channel_credentials(
            read(self.ca_file), read(self.key_file), read(self.cert_file)
        )


def call_metadata(token: str | None, metadata: Iterable[tuple[str, str]]) -> tuple[Any, ...]:
    """The bearer token (if any) and the caller's own metadata, sent with every call."""
    auth = (("authorization", f"Bearer {token}"),) if token else ()
    return (*auth, *metadata)


@dataclasses.dataclass(frozen=True, slots=True)
class DeadLetter:
    task: Task  # state DEAD, last_error set
    dead_at_ms: int


@dataclasses.dataclass(frozen=True, slots=True)
class DeadLetterPage:
    letters: list[DeadLetter]
    next_cursor: str  # empty when there is nothing more


@dataclasses.dataclass(frozen=True, slots=True)
class Stats:
    now_ms: int  # the server's clock; lag of a topic = now_ms - oldest_due_ms
    topics: list[TopicStats]
    next_page_token: str = ""  # more topics: ask again with it as page_token


@dataclasses.dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One RPC to make: the stub attribute, its request and how to decode its reply."""

    rpc: str
    request: Any
    decode: Callable[[Any], T]
    extra_timeout_s: float = 0.0  # a long poll may legitimately take this much longer
    service: str = "queue"  # or SCHEDULES: the ScheduleService


# -- errors ------------------------------------------------------------------------------


def map_error(err: grpc.RpcError) -> AtpError:
    """The domain exception a gRPC status stands for (appliance.proto.status.ERROR_OF)."""
    code = err.code()
    return error_of(code, err.details() or code.name)


def error_of(code: grpc.StatusCode, message: str) -> AtpError:
    """The domain exception of a status code and its message (also EnqueueStream's results)."""
    if code == grpc.StatusCode.FAILED_PRECONDITION and "lease token" in message:
        return StaleLease(message)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and (
        "rate limit" in message or "retry" in message
    ):
        return RateLimited(message)  # shares TooLarge's code; see api/interceptors, servicer
    cls = ERROR_OF.get(code)
    return cls(message) if cls is not None else RpcFailed(code.name, message)


def status_name(exc: AtpError) -> str:
    """The gRPC status name an error travels as (NOT_FOUND, UNAVAILABLE, ...)."""
    if isinstance(exc, RpcFailed):
        return exc.status
    return str(status_of(exc).name)


def _ack_error(message: str) -> AtpError:
    """AckBatch reports failures as text; give them their classes back."""
    if "lease token" in message:
        return StaleLease(message)
    if message.startswith("no task"):
        return NotFound(message)
    return WrongState(message)


# -- conversions -------------------------------------------------------------------------


def to_ms(value: Duration, field: str) -> int:
    seconds = value.total_seconds() if isinstance(value, dt.timedelta) else float(value)
    if seconds < 0:
        raise InvalidArgument(f"{field} must be >= 0, got {value!r}")
    return round(seconds * 1000)


def epoch_ms(value: When, field: str = "at") -> int:
    if isinstance(value, dt.datetime):
        return round(value.timestamp() * 1000)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidArgument(f"{field} must be a datetime or epoch ms > 0, got {value!r}")
    return value


def payload_text(payload: Payload) -> str:
    """str as is, bytes as UTF-8, anything else as compact JSON."""
    if isinstance(payload, str):
        return payload
    if isinstance(payload, bytes | bytearray):
        try:
            return bytes(payload).decode()
        except UnicodeDecodeError as exc:
            raise InvalidArgument(f"payload bytes are not UTF-8: {exc}") from exc
    try:
        return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"payload is not JSON-serialisable: {exc}") from exc


def task_from_pb(t: pb.Task, state: TaskState, last_error: str = "") -> Task:
    return Task(
        id=t.id,
        topic=t.topic,
        payload=t.payload,
        execute_time_ms=t.execute_time_ms or t.execute_time * 1000,
        created_at_ms=t.created_at_ms or t.created_at * 1000,
        max_retries=t.max_retries,
        attempt=t.attempt,
        state=state,
        lease_token=t.lease_token,
        lease_deadline_ms=t.lease_deadline_ms,
        last_error=last_error,
        traceparent=t.traceparent,
    )


def _state(value: int) -> TaskState:
    return TaskState(pb.TaskState.Name(value))  # type: ignore[arg-type]


def _lease(task_or_id: Task | str, lease_token: str | None) -> tuple[str, str]:
    if isinstance(task_or_id, Task):
        return task_or_id.id, lease_token or task_or_id.lease_token
    if not lease_token:
        raise InvalidArgument("lease_token is required when acking by id")
    return task_or_id, lease_token


# -- calls -------------------------------------------------------------------------------


def enqueue(
    topic: str,
    payload: Payload,
    delay: Duration | None = None,
    delay_ms: int | None = None,
    at: When | None = None,
    id: str | None = None,
    max_retries: int | None = None,
) -> Call[str]:
    outcome = enqueue_outcome(topic, payload, delay, delay_ms, at, id, max_retries)
    return Call("Enqueue", outcome.request, lambda r: str(r.id))


@dataclasses.dataclass(frozen=True, slots=True)
class Enqueued:
    """What an Enqueue did: the task's id, and whether that id existed already (then nothing
    was created and the id is the first task's)."""

    id: str
    duplicate: bool


def enqueue_outcome(
    topic: str,
    payload: Payload,
    delay: Duration | None = None,
    delay_ms: int | None = None,
    at: When | None = None,
    id: str | None = None,
    max_retries: int | None = None,
) -> Call[Enqueued]:
    """Enqueue, answering with the id and the duplicate flag (`enqueue` answers the id only)."""
    request = enqueue_request(topic, payload, delay, delay_ms, at, id, max_retries)
    return Call("Enqueue", request, lambda r: Enqueued(str(r.id), bool(r.duplicate)))


def enqueue_request(
    topic: str,
    payload: Payload,
    delay: Duration | None,
    delay_ms: int | None,
    at: When | None,
    id: str | None,
    max_retries: int | None,
) -> pb.EnqueueRequest:
    given = [name for name, v in (("delay", delay), ("delay_ms", delay_ms), ("at", at)) if v]
    if len(given) > 1:
        raise InvalidArgument(f"give at most one of delay, delay_ms and at, got {', '.join(given)}")
    req = pb.EnqueueRequest(topic=topic, payload=payload_text(payload), id=id or "")
    if delay:
        req.delay_ms = max(to_ms(delay, "delay"), 1)
    elif delay_ms:
        req.delay_ms = delay_ms
    elif at:
        req.execute_at_ms = epoch_ms(at)
    if max_retries is not None:
        req.max_retries = max_retries
    return req


def enqueue_many(
    topic: str,
    payloads: Iterable[Payload],
    delay: Duration | None = None,
    delay_ms: int | None = None,
    at: When | None = None,
    ids: Sequence[str] | None = None,
    max_retries: int | None = None,
) -> Call[list[str]]:
    items = list(payloads)
    if ids is not None and len(ids) != len(items):
        raise InvalidArgument(f"{len(ids)} ids for {len(items)} payloads")
    requests = [
        enqueue_request(topic, p, delay, delay_ms, at, ids[n] if ids else None, max_retries)
        for n, p in enumerate(items)
    ]
    return Call(
        "EnqueueBatch",
        pb.EnqueueBatchRequest(requests=requests),
        lambda r: [str(x.id) for x in r.responses],
    )


def retrieve(
    topic: str, batch_size: int, visibility_timeout: Duration | None, wait: Duration | None
) -> Call[list[Task]]:
    wait_ms = to_ms(wait, "wait") if wait is not None else 0
    req = pb.RetrieveRequest(
        topic=topic,
        batch_size=batch_size,
        visibility_timeout_ms=_lease_ms(visibility_timeout),
        wait_ms=wait_ms,
    )
    return Call(
        "Retrieve",
        req,
        lambda r: [task_from_pb(t, TaskState.RUNNING) for t in r.tasks],
        extra_timeout_s=wait_ms / 1000,
    )


def _lease_ms(value: Duration | None) -> int:
    if value is None:
        return 0  # the server's default
    return max(to_ms(value, "visibility_timeout"), 1)


def ack(task_or_id: Task | str, lease_token: str | None, result: str = "") -> Call[None]:
    task_id, token = _lease(task_or_id, lease_token)
    request = pb.AckRequest(id=task_id, lease_token=token, result=result)
    return Call("Ack", request, lambda r: None)


def ack_many(tasks: Iterable[Task]) -> Call[list[AtpError | None]]:
    acks = [pb.AckRequest(id=t.id, lease_token=t.lease_token) for t in tasks]

    def decode(r: pb.AckBatchResponse) -> list[AtpError | None]:
        return [None if ok else _ack_error(e) for ok, e in zip(r.success, r.errors, strict=True)]

    return Call("AckBatch", pb.AckBatchRequest(acks=acks), decode)


def nack(
    task: Task, error: str, retry_after: Duration | None, dead_letter: bool, release: bool = False
) -> Call[NackResult]:
    retry_ms = max(to_ms(retry_after, "retry_after"), 1) if retry_after is not None else 0
    req = pb.NackRequest(
        id=task.id,
        lease_token=task.lease_token,
        error=error,
        retry_after_ms=retry_ms,
        dead_letter=dead_letter,
        release=release,
    )
    return Call("Nack", req, lambda r: NackResult(r.dead_lettered, r.next_execute_time_ms))


def extend_lease(task: Task, visibility_timeout: Duration | None) -> Call[int]:
    lease_ms = _lease_ms(visibility_timeout)
    req = pb.ExtendLeaseRequest(
        id=task.id, lease_token=task.lease_token, visibility_timeout_ms=lease_ms
    )
    return Call("ExtendLease", req, lambda r: int(r.lease_deadline_ms))


def get_task(task_id: str, topic: str = "") -> Call[Task]:
    return Call(
        "GetTask",
        pb.GetTaskRequest(id=task_id, topic=topic),
        lambda r: dataclasses.replace(
            task_from_pb(r.task, _state(r.state), r.last_error), result=r.result
        ),
    )


def cancel(task_id: str, topic: str = "") -> Call[None]:
    return Call("Delete", pb.DeleteRequest(id=task_id, topic=topic), lambda r: None)


def list_dead_letters(
    topic: str, limit: int, cursor: str, wanted: pb.DeadLetterFilter | None = None
) -> Call[DeadLetterPage]:
    def decode(r: pb.ListDeadLettersResponse) -> DeadLetterPage:
        letters = [
            DeadLetter(task_from_pb(d.task, TaskState.DEAD, d.last_error), d.dead_at_ms)
            for d in r.dead_letters
        ]
        return DeadLetterPage(letters, r.next_cursor)

    req = pb.ListDeadLettersRequest(topic=topic, limit=limit, cursor=cursor, filter=wanted)
    return Call("ListDeadLetters", req, decode)


def requeue_dead_letters(topic: str, ids: Iterable[str], payload: str | None = None) -> Call[int]:
    req = pb.RequeueDeadLettersRequest(topic=topic, ids=list(ids), payload=payload)
    return Call("RequeueDeadLetters", req, lambda r: int(r.requeued))


def purge_dead_letters(topic: str, ids: Iterable[str]) -> Call[int]:
    req = pb.PurgeDeadLettersRequest(topic=topic, ids=list(ids))
    return Call("PurgeDeadLetters", req, lambda r: int(r.purged))


def stats(topics: Iterable[str], page_size: int = 0, page_token: str = "") -> Call[Stats]:
    def decode(r: pb.GetStatsResponse) -> Stats:
        topics = [
            TopicStats(s.topic, s.pending, s.due, s.running, s.dead, s.oldest_due_ms)
            for s in r.topics
        ]
        return Stats(r.now_ms, topics, r.next_page_token)

    req = pb.GetStatsRequest(topics=list(topics), page_size=page_size, page_token=page_token)
    return Call("GetStats", req, decode)


# -- schedules (ScheduleService; a schedule travels as the generated pb.Schedule) -------------

SCHEDULES = "schedules"


def _schedule_call(rpc: str, request: Any) -> Call[Any]:
    """A call whose reply is the result as it is (a pb.Schedule, pb.SchedulerStatus)."""
    return Call(rpc, request, lambda r: r, service=SCHEDULES)


def create_schedule(schedule: pb.Schedule) -> Call[pb.Schedule]:
    return _schedule_call("CreateSchedule", pb.CreateScheduleRequest(schedule=schedule))


def update_schedule(schedule: pb.Schedule) -> Call[pb.Schedule]:
    return _schedule_call("UpdateSchedule", pb.UpdateScheduleRequest(schedule=schedule))


def schedule_by_id(rpc: str, schedule_id: str) -> Call[pb.Schedule]:
    """GetSchedule, PauseSchedule or ResumeSchedule."""
    return _schedule_call(rpc, pb.ScheduleIdRequest(id=schedule_id))


def delete_schedule(schedule_id: str) -> Call[None]:
    req = pb.ScheduleIdRequest(id=schedule_id)
    return Call("DeleteSchedule", req, lambda r: None, service=SCHEDULES)


def list_schedules(topic: str = "") -> Call[list[pb.Schedule]]:
    req = pb.ListSchedulesRequest(topic=topic)
    return Call("ListSchedules", req, lambda r: list(r.schedules), service=SCHEDULES)


def scheduler_status() -> Call[pb.SchedulerStatus]:
    return _schedule_call("GetSchedulerStatus", pb.GetSchedulerStatusRequest())


# -- workflows (WorkflowService; docs/adr/0010-workflows.md) ------------------------------

WORKFLOWS = "workflows"


def _workflow_call(rpc: str, request: Any, decode: Callable[[Any], T]) -> Call[T]:
    return Call(rpc, request, decode, service=WORKFLOWS)


def put_workflow(workflow: pb.Workflow) -> Call[int]:
    """Store a new version; its number."""
    req = pb.PutWorkflowRequest(workflow=workflow)
    return _workflow_call("PutWorkflow", req, lambda r: int(r.version))


def get_workflow(name: str, version: int = 0) -> Call[pb.Workflow]:
    req = pb.GetWorkflowRequest(name=name, version=version)
    return _workflow_call("GetWorkflow", req, lambda r: r)


def list_workflows() -> Call[list[pb.Workflow]]:
    req = pb.ListWorkflowsRequest()
    return _workflow_call("ListWorkflows", req, lambda r: list(r.workflows))


def delete_workflow(name: str) -> Call[None]:
    req = pb.DeleteWorkflowRequest(name=name)
    return _workflow_call("DeleteWorkflow", req, lambda r: None)


def start_run(workflow: str, run_input: Payload, run_id: str) -> Call[str]:
    """Start a run; its id (the same `run_id` again starts nothing and answers it)."""
    req = pb.StartRunRequest(workflow=workflow, input=payload_text(run_input), id=run_id)
    return _workflow_call("StartRun", req, lambda r: str(r.run_id))


def get_run(run_id: str) -> Call[pb.Run]:
    return _workflow_call("GetRun", pb.GetRunRequest(run_id=run_id), lambda r: r.run)


def list_runs(
    workflow: str, state: str, page_size: int, page_token: str
) -> Call[pb.ListRunsResponse]:
    """`state`: '' (any) or a run state's name, e.g. 'RUNNING'."""
    try:
        value = pb.RunState.Value(f"RUN_{state.upper()}") if state else pb.RUN_STATE_UNSPECIFIED
    except ValueError:
        raise InvalidArgument(f"state {state!r} is not a run state") from None
    req = pb.ListRunsRequest(
        workflow=workflow, state=value, page_size=page_size, page_token=page_token
    )
    return _workflow_call("ListRuns", req, lambda r: r)


def cancel_run(run_id: str) -> Call[bool]:
    """True when this call canceled it (False: canceled before)."""
    req = pb.CancelRunRequest(run_id=run_id)
    return _workflow_call("CancelRun", req, lambda r: bool(r.success))


def signal_run(run_id: str, name: str, payload: Payload) -> Call[bool]:
    """True when the signal was kept (False: one of the name came before)."""
    req = pb.SignalRunRequest(run_id=run_id, name=name, payload=payload_text(payload))
    return _workflow_call("SignalRun", req, lambda r: not r.duplicate)
