"""The blocking client: every API call over one grpc channel.

Only sends the calls described in appliance/client/common.py and raises the domain errors of
appliance/errors.py. Imports grpc; must not import the store, redis or the worker.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any, TypeVar

import grpc

from appliance import tracing
from appliance.client import browse, common, enqueue_stream
from appliance.client.common import DeadLetterPage, Duration, Payload, Stats, Tls, When
from appliance.client.enqueue_stream import BackgroundEnqueuer
from appliance.client.workflows import Workflow
from appliance.errors import AtpError
from appliance.model import NackResult, Task, TaskState
from appliance.proto import queue_pb2 as pb
from appliance.proto import queue_pb2_grpc as pb_grpc

T = TypeVar("T")


class Client:
    """`Client("host:port")`; use as a context manager or call close()."""

    def __init__(
        self,
        address: str,
        *,
        token: str | None = None,
        tls: Tls | None = None,
        timeout: float = common.DEFAULT_TIMEOUT_S,
        metadata: Sequence[tuple[str, str]] = (),
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        """`token`: bearer token sent with every call; `tls`: dial with TLS (else plaintext);
        `timeout`: seconds per call (a long poll gets its wait on top); `options`: channel
        options over common.CHANNEL_OPTIONS."""
        self.address = address
        self.timeout = timeout
        self._metadata = common.call_metadata(token, metadata)
        self._credentials = tls.credentials() if tls is not None else None
        opts = [*common.CHANNEL_OPTIONS, *options]
        self._channel = (
            grpc.secure_channel(address, self._credentials, opts)
            if self._credentials is not None
            else grpc.insecure_channel(address, opts)
        )
        self._stub = pb_grpc.DelayQueueServiceStub(self._channel)
        self._stubs = {
            "queue": self._stub,
            common.SCHEDULES: pb_grpc.ScheduleServiceStub(self._channel),
            common.WORKFLOWS: pb_grpc.WorkflowServiceStub(self._channel),
        }
        self._options = opts
        self._enqueuer: BackgroundEnqueuer | None = None
        self._enqueuer_lock = threading.Lock()
        self._streaming = True  # False once the server turned out to predate EnqueueStream

    def _run(self, call: common.Call[T]) -> T:
        method = getattr(self._stubs[call.service], call.rpc)
        try:
            reply = method(
                call.request,
                timeout=self.timeout + call.extra_timeout_s,
                metadata=[*self._metadata, *tracing.outgoing(call.rpc)] or None,
            )
        except grpc.RpcError as err:
            raise common.map_error(err) from err
        return call.decode(reply)

    def _enqueue_stream(self) -> BackgroundEnqueuer:
        """The EnqueueStream sender, started on first use (appliance/client/enqueue_stream.py)."""
        if self._enqueuer is None:
            with self._enqueuer_lock:
                if self._enqueuer is None:
                    self._enqueuer = BackgroundEnqueuer(
                        self._aio_channel, self._metadata, self.timeout
                    )
        return self._enqueuer

    def _aio_channel(self) -> Any:
        if self._credentials is not None:
            return grpc.aio.secure_channel(self.address, self._credentials, self._options)
        return grpc.aio.insecure_channel(self.address, self._options)

    def close(self) -> None:
        if self._enqueuer is not None:
            self._enqueuer.close()
            self._enqueuer = None
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- producers -----------------------------------------------------------------------

    def enqueue(
        self,
        topic: str,
        payload: Payload,
        *,
        delay: Duration | None = None,
        delay_ms: int | None = None,
        at: When | None = None,
        id: str | None = None,
        max_retries: int | None = None,
    ) -> str:
        """The task's id (the first task's id when `id` was used already). Sent on the client's
        EnqueueStream: calls from many threads share its messages; each gets its own answer."""
        request = common.enqueue_request(topic, payload, delay, delay_ms, at, id, max_retries)
        if self._streaming and enqueue_stream.fits(request):
            try:
                return self._enqueue_stream().enqueue(request)
            except common.RpcFailed as exc:
                if not enqueue_stream.unsupported(exc):
                    raise
                self._streaming = False
        return self._run(common.Call("Enqueue", request, lambda r: str(r.id)))

    def enqueue_many(
        self,
        topic: str,
        payloads: Iterable[Payload],
        *,
        delay: Duration | None = None,
        delay_ms: int | None = None,
        at: When | None = None,
        ids: Sequence[str] | None = None,
        max_retries: int | None = None,
    ) -> list[str]:
        """One EnqueueBatch call; the ids in payload order."""
        call = common.enqueue_many(topic, payloads, delay, delay_ms, at, ids, max_retries)
        return self._run(call)

    def get_task(self, task_id: str, topic: str = "") -> Task:
        """The task with its state and last_error. Ids are per topic: name the topic when the
        id may be in several of yours."""
        return self._run(common.get_task(task_id, topic))

    def cancel(self, task_id: str, topic: str = "") -> None:
        """Delete a PENDING task (NotFound, or WrongState when it is no longer pending); the
        topic as in get_task."""
        self._run(common.cancel(task_id, topic))

    # -- workers -------------------------------------------------------------------------

    def retrieve(
        self,
        topic: str,
        batch_size: int = 1,
        visibility_timeout: Duration | None = None,
        wait: Duration | None = None,
    ) -> list[Task]:
        """Lease up to batch_size due tasks; with `wait`, long-poll until one is due."""
        return self._run(common.retrieve(topic, batch_size, visibility_timeout, wait))

    def ack(self, task_or_id: Task | str, lease_token: str | None = None, result: str = "") -> None:
        """Ack a lease; `result` is the task's output (a workflow step's, docs/adr/0010)."""
        self._run(common.ack(task_or_id, lease_token, result))

    def ack_many(self, tasks: Iterable[Task]) -> list[AtpError | None]:
        """One AckBatch call; per task None (done) or the error that refused it."""
        return self._run(common.ack_many(tasks))

    def nack(
        self,
        task: Task,
        error: str = "",
        retry_after: Duration | None = None,
        dead_letter: bool = False,
        release: bool = False,
    ) -> NackResult:
        """The attempt failed: retry (after `retry_after`, else the backoff) or dead-letter.
        `release=True` gives the task back without counting the attempt (shutting down)."""
        return self._run(common.nack(task, error, retry_after, dead_letter, release))

    def extend_lease(self, task: Task, visibility_timeout: Duration | None = None) -> int:
        """The new lease deadline (ms since the epoch)."""
        return self._run(common.extend_lease(task, visibility_timeout))

    # -- dead letters and stats ----------------------------------------------------------

    def list_dead_letters(
        self,
        topic: str,
        limit: int = 100,
        cursor: str = "",
        wanted: browse.DeadLetterFilter | None = None,
    ) -> DeadLetterPage:
        """Oldest first; `wanted` (browse.DeadLetterFilter) keeps only the matching ones."""
        return self._run(
            common.list_dead_letters(topic, limit, cursor, wanted.to_pb() if wanted else None)
        )

    def requeue_dead_letters(
        self, topic: str, ids: Iterable[str] = (), payload: str | None = None
    ) -> int:
        """Back to PENDING, due now; no ids means all of the topic's dead letters. `payload`
        (with exactly one id) replaces its payload: an edited task."""
        return self._run(common.requeue_dead_letters(topic, ids, payload))

    def purge_dead_letters(self, topic: str, ids: Iterable[str] = ()) -> int:
        """Removed for good; no ids means all of the topic's dead letters."""
        return self._run(common.purge_dead_letters(topic, ids))

    # -- the console's reads and bulk actions (client/browse.py) --------------------------

    def task_history(self, task_id: str, topic: str = "") -> browse.TaskHistory:
        """The task's events, oldest first: enqueue, leases (by whom), extensions, acks,
        nacks (their errors), releases, recoveries, dead-lettering, requeues, cancel."""
        return self._run(browse.task_history(task_id, topic))

    def list_tasks(
        self,
        topic: str,
        state: TaskState = TaskState.PENDING,
        limit: int = 100,
        cursor: str = "",
        id_prefix: str = "",
    ) -> browse.TaskPage:
        """A page of the topic's PENDING (by due time) or RUNNING (by lease deadline) tasks."""
        return self._run(browse.list_tasks(topic, state, limit, cursor, id_prefix))

    def redrive_dead_letters(
        self,
        topic: str,
        requeue: bool,
        wanted: browse.DeadLetterFilter,
        scan_limit: int = 0,
        cursor: str = "",
    ) -> browse.Redrive:
        """Requeue (or purge) the topic's dead letters `wanted` matches, server-side: one
        call looks at scan_limit of them at most (0: 10,000); go on with next_cursor."""
        return self._run(browse.redrive(topic, requeue, wanted, scan_limit, cursor))

    def list_workers(self) -> browse.Workers:
        """The worker streams connected to any server."""
        return self._run(browse.list_workers())

    def fire_schedule(self, schedule_id: str) -> pb.FireScheduleResponse:
        """Fire one tick now (the leading scheduler enqueues it exactly once)."""
        return self._run(browse.fire_schedule(schedule_id))

    def stats(self, topics: Iterable[str] = (), page_size: int = 0, page_token: str = "") -> Stats:
        """No topics means every known topic, a page at a time (page_size 0: up to 1000);
        pass the result's next_page_token as page_token for the next page."""
        return self._run(common.stats(topics, page_size, page_token))

    # -- workflows (WorkflowService; docs/adr/0010-workflows.md) -------------------------

    def put_workflow(self, workflow: Workflow | pb.Workflow) -> int:
        """Store a new version of a workflow (a `Workflow` builder or a pb.Workflow); its number."""
        return self._run(
            common.put_workflow(workflow.to_pb() if isinstance(workflow, Workflow) else workflow)
        )

    def get_workflow(self, name: str, version: int = 0) -> pb.Workflow:
        """A workflow's definition (version 0: the latest)."""
        return self._run(common.get_workflow(name, version))

    def list_workflows(self) -> list[pb.Workflow]:
        """The latest version of every workflow."""
        return self._run(common.list_workflows())

    def delete_workflow(self, name: str) -> None:
        """The name can no longer be started; runs in flight finish."""
        self._run(common.delete_workflow(name))

    def start_run(self, workflow: str, input: Payload = "", id: str = "") -> str:
        """Start a run of the latest version; its id. With `id` idempotent: the same id again starts
        nothing and answers it."""
        return self._run(common.start_run(workflow, input, id))

    def get_run(self, run_id: str) -> pb.Run:
        """The run, its state and each step's state, output, error and times."""
        return self._run(common.get_run(run_id))

    def list_runs(
        self, workflow: str = "", state: str = "", page_size: int = 0, page_token: str = ""
    ) -> pb.ListRunsResponse:
        """Runs, newest first; `state` e.g. 'RUNNING'; `next_page_token` until the last page."""
        return self._run(common.list_runs(workflow, state, page_size, page_token))

    def cancel_run(self, run_id: str) -> bool:
        """Cancel a run's waiting and scheduled steps; False when it was canceled before."""
        return self._run(common.cancel_run(run_id))

    def signal_run(self, run_id: str, name: str, payload: Payload = "") -> bool:
        """Send a signal a step waits for; False when one of the name came before."""
        return self._run(common.signal_run(run_id, name, payload))

    # -- schedules (ScheduleService) -----------------------------------------------------

    def create_schedule(self, schedule: pb.Schedule) -> pb.Schedule:
        """AlreadyExists when the id is taken."""
        return self._run(common.create_schedule(schedule))

    def update_schedule(self, schedule: pb.Schedule) -> pb.Schedule:
        """Replace a schedule made over the API (WrongState for one from the config file)."""
        return self._run(common.update_schedule(schedule))

    def get_schedule(self, schedule_id: str) -> pb.Schedule:
        return self._run(common.schedule_by_id("GetSchedule", schedule_id))

    def pause_schedule(self, schedule_id: str) -> pb.Schedule:
        return self._run(common.schedule_by_id("PauseSchedule", schedule_id))

    def resume_schedule(self, schedule_id: str) -> pb.Schedule:
        return self._run(common.schedule_by_id("ResumeSchedule", schedule_id))

    def delete_schedule(self, schedule_id: str) -> None:
        self._run(common.delete_schedule(schedule_id))

    def list_schedules(self, topic: str = "") -> list[pb.Schedule]:
        return self._run(common.list_schedules(topic))

    def scheduler_status(self) -> pb.SchedulerStatus:
        """Which scheduler leads, its lease, and the ticks fired."""
        return self._run(common.scheduler_status())
