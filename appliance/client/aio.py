"""The asyncio client: every API call over one grpc.aio channel, opened on first use so it
binds to the running event loop.

Only sends the calls described in appliance/client/common.py and raises the domain errors of
appliance/errors.py. Imports grpc; must not import the store, redis or the worker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

import grpc

from appliance import tracing
from appliance.client import browse, common, enqueue_stream
from appliance.client.common import DeadLetterPage, Duration, Payload, Stats, Tls, When
from appliance.client.enqueue_stream import StreamEnqueuer
from appliance.client.work import WorkStream
from appliance.client.workflows import Workflow
from appliance.errors import AtpError
from appliance.model import NackResult, Task, TaskState
from appliance.proto import queue_pb2 as pb
from appliance.proto import queue_pb2_grpc as pb_grpc

T = TypeVar("T")


class AsyncClient:
    """`AsyncClient("host:port")`; use `async with` or await close()."""

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
        self._options = [*common.CHANNEL_OPTIONS, *options]
        self._channel: Any = None
        self._stub: Any = None
        self._schedule_stub: Any = None
        self._workflow_stub: Any = None
        self._enqueuer: StreamEnqueuer | None = None
        self._streaming = True  # False once the server turned out to predate EnqueueStream

    def _open(self) -> Any:
        if self._stub is None:
            self._channel = (
                grpc.aio.secure_channel(self.address, self._credentials, self._options)
                if self._credentials is not None
                else grpc.aio.insecure_channel(self.address, self._options)
            )
            self._stub = pb_grpc.DelayQueueServiceStub(self._channel)
            self._schedule_stub = pb_grpc.ScheduleServiceStub(self._channel)
            self._workflow_stub = pb_grpc.WorkflowServiceStub(self._channel)
        return self._stub

    async def _run(self, call: common.Call[T]) -> T:
        queue = self._open()
        stub = {
            "queue": queue,
            common.SCHEDULES: self._schedule_stub,
            common.WORKFLOWS: self._workflow_stub,
        }[call.service]
        method = getattr(stub, call.rpc)
        try:
            reply = await method(
                call.request,
                timeout=self.timeout + call.extra_timeout_s,
                metadata=[*self._metadata, *tracing.outgoing(call.rpc)] or None,
            )
        except grpc.RpcError as err:
            raise common.map_error(err) from err
        return call.decode(reply)

    def _enqueue_stream(self) -> StreamEnqueuer:
        """The EnqueueStream sender, made on first use (appliance/client/enqueue_stream.py)."""
        if self._enqueuer is None:
            stub, metadata = self._open(), self._metadata or None
            self._enqueuer = StreamEnqueuer(
                lambda: stub.EnqueueStream(metadata=metadata), self.timeout
            )
        return self._enqueuer

    async def close(self) -> None:
        enqueuer, self._enqueuer = self._enqueuer, None
        if enqueuer is not None:
            await enqueuer.close()
        channel, self._channel, self._stub = self._channel, None, None
        self._schedule_stub = None
        self._workflow_stub = None
        if channel is not None:
            await channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- producers -----------------------------------------------------------------------

    async def enqueue(
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
        EnqueueStream: concurrent calls share its messages; each gets its own answer."""
        request = common.enqueue_request(topic, payload, delay, delay_ms, at, id, max_retries)
        if self._streaming and enqueue_stream.fits(request):
            future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
            self._enqueue_stream().submit(request, future, tracing.current_traceparent())
            try:
                return await future
            except common.RpcFailed as exc:
                if not enqueue_stream.unsupported(exc):
                    raise
                self._streaming = False
        return await self._run(common.Call("Enqueue", request, lambda r: str(r.id)))

    async def enqueue_many(
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
        return await self._run(call)

    async def get_task(self, task_id: str, topic: str = "") -> Task:
        """The task with its state and last_error. Ids are per topic: name the topic when the
        id may be in several of yours."""
        return await self._run(common.get_task(task_id, topic))

    async def cancel(self, task_id: str, topic: str = "") -> None:
        """Delete a PENDING task (NotFound, or WrongState when it is no longer pending); the
        topic as in get_task."""
        await self._run(common.cancel(task_id, topic))

    # -- workers -------------------------------------------------------------------------

    async def retrieve(
        self,
        topic: str,
        batch_size: int = 1,
        visibility_timeout: Duration | None = None,
        wait: Duration | None = None,
    ) -> list[Task]:
        """Lease up to batch_size due tasks; with `wait`, long-poll until one is due."""
        return await self._run(common.retrieve(topic, batch_size, visibility_timeout, wait))

    async def ack(
        self, task_or_id: Task | str, lease_token: str | None = None, result: str = ""
    ) -> None:
        """Ack a lease; `result` is the task's output (a workflow step's, docs/adr/0010)."""
        await self._run(common.ack(task_or_id, lease_token, result))

    async def ack_many(self, tasks: Iterable[Task]) -> list[AtpError | None]:
        """One AckBatch call; per task None (done) or the error that refused it."""
        return await self._run(common.ack_many(tasks))

    async def nack(
        self,
        task: Task,
        error: str = "",
        retry_after: Duration | None = None,
        dead_letter: bool = False,
        release: bool = False,
    ) -> NackResult:
        """The attempt failed: retry (after `retry_after`, else the backoff) or dead-letter.
        `release=True` gives the task back without counting the attempt (shutting down)."""
        return await self._run(common.nack(task, error, retry_after, dead_letter, release))

    async def open_work(
        self, topics: Mapping[str, int], credits: int, lease_ms: int, name: str = ""
    ) -> WorkStream:
        """Open a worker stream (rpc Work): `topics` maps each topic to its own cap on tasks
        held at once (0: none), `credits` is the window of tasks held at once in all."""
        return await WorkStream.open(self._open(), self._metadata, topics, credits, lease_ms, name)

    async def extend_lease(self, task: Task, visibility_timeout: Duration | None = None) -> int:
        """The new lease deadline (ms since the epoch)."""
        return await self._run(common.extend_lease(task, visibility_timeout))

    # -- dead letters and stats ----------------------------------------------------------

    async def list_dead_letters(
        self,
        topic: str,
        limit: int = 100,
        cursor: str = "",
        wanted: browse.DeadLetterFilter | None = None,
    ) -> DeadLetterPage:
        """Oldest first; `wanted` (browse.DeadLetterFilter) keeps only the matching ones."""
        return await self._run(
            common.list_dead_letters(topic, limit, cursor, wanted.to_pb() if wanted else None)
        )

    async def requeue_dead_letters(
        self, topic: str, ids: Iterable[str] = (), payload: str | None = None
    ) -> int:
        """Back to PENDING, due now; no ids means all of the topic's dead letters. `payload`
        (with exactly one id) replaces its payload: an edited task."""
        return await self._run(common.requeue_dead_letters(topic, ids, payload))

    async def purge_dead_letters(self, topic: str, ids: Iterable[str] = ()) -> int:
        """Removed for good; no ids means all of the topic's dead letters."""
        return await self._run(common.purge_dead_letters(topic, ids))

    # -- the console's reads and bulk actions (client/browse.py) --------------------------

    async def task_history(self, task_id: str, topic: str = "") -> browse.TaskHistory:
        """The task's events, oldest first: enqueue, leases (by whom), extensions, acks,
        nacks (their errors), releases, recoveries, dead-lettering, requeues, cancel."""
        return await self._run(browse.task_history(task_id, topic))

    async def list_tasks(
        self,
        topic: str,
        state: TaskState = TaskState.PENDING,
        limit: int = 100,
        cursor: str = "",
        id_prefix: str = "",
    ) -> browse.TaskPage:
        """A page of the topic's PENDING (by due time) or RUNNING (by lease deadline) tasks."""
        return await self._run(browse.list_tasks(topic, state, limit, cursor, id_prefix))

    async def redrive_dead_letters(
        self,
        topic: str,
        requeue: bool,
        wanted: browse.DeadLetterFilter,
        scan_limit: int = 0,
        cursor: str = "",
    ) -> browse.Redrive:
        """Requeue (or purge) the topic's dead letters `wanted` matches, server-side: one
        call looks at scan_limit of them at most (0: 10,000); go on with next_cursor."""
        return await self._run(browse.redrive(topic, requeue, wanted, scan_limit, cursor))

    async def list_workers(self) -> browse.Workers:
        """The worker streams connected to any server."""
        return await self._run(browse.list_workers())

    async def fire_schedule(self, schedule_id: str) -> pb.FireScheduleResponse:
        """Fire one tick now (the leading scheduler enqueues it exactly once)."""
        return await self._run(browse.fire_schedule(schedule_id))

    async def stats(
        self, topics: Iterable[str] = (), page_size: int = 0, page_token: str = ""
    ) -> Stats:
        """No topics means every known topic, a page at a time (page_size 0: up to 1000);
        pass the result's next_page_token as page_token for the next page."""
        return await self._run(common.stats(topics, page_size, page_token))

    # -- workflows (WorkflowService; docs/adr/0010-workflows.md) -------------------------

    async def put_workflow(self, workflow: Workflow | pb.Workflow) -> int:
        """Store a new version of a workflow (a `Workflow` builder or a pb.Workflow); its number."""
        return await self._run(
            common.put_workflow(workflow.to_pb() if isinstance(workflow, Workflow) else workflow)
        )

    async def get_workflow(self, name: str, version: int = 0) -> pb.Workflow:
        """A workflow's definition (version 0: the latest)."""
        return await self._run(common.get_workflow(name, version))

    async def list_workflows(self) -> list[pb.Workflow]:
        """The latest version of every workflow."""
        return await self._run(common.list_workflows())

    async def delete_workflow(self, name: str) -> None:
        """The name can no longer be started; runs in flight finish."""
        await self._run(common.delete_workflow(name))

    async def start_run(self, workflow: str, input: Payload = "", id: str = "") -> str:
        """Start a run of the latest version; its id. With `id` idempotent: the same id again starts
        nothing and answers it."""
        return await self._run(common.start_run(workflow, input, id))

    async def get_run(self, run_id: str) -> pb.Run:
        """The run, its state and each step's state, output, error and times."""
        return await self._run(common.get_run(run_id))

    async def list_runs(
        self, workflow: str = "", state: str = "", page_size: int = 0, page_token: str = ""
    ) -> pb.ListRunsResponse:
        """Runs, newest first; `state` e.g. 'RUNNING'; `next_page_token` until the last page."""
        return await self._run(common.list_runs(workflow, state, page_size, page_token))

    async def cancel_run(self, run_id: str) -> bool:
        """Cancel a run's waiting and scheduled steps; False when it was canceled before."""
        return await self._run(common.cancel_run(run_id))

    async def signal_run(self, run_id: str, name: str, payload: Payload = "") -> bool:
        """Send a signal a step waits for; False when one of the name came before."""
        return await self._run(common.signal_run(run_id, name, payload))

    # -- schedules (ScheduleService) -----------------------------------------------------

    async def create_schedule(self, schedule: pb.Schedule) -> pb.Schedule:
        """AlreadyExists when the id is taken."""
        return await self._run(common.create_schedule(schedule))

    async def update_schedule(self, schedule: pb.Schedule) -> pb.Schedule:
        """Replace a schedule made over the API (WrongState for one from the config file)."""
        return await self._run(common.update_schedule(schedule))

    async def get_schedule(self, schedule_id: str) -> pb.Schedule:
        return await self._run(common.schedule_by_id("GetSchedule", schedule_id))

    async def pause_schedule(self, schedule_id: str) -> pb.Schedule:
        return await self._run(common.schedule_by_id("PauseSchedule", schedule_id))

    async def resume_schedule(self, schedule_id: str) -> pb.Schedule:
        return await self._run(common.schedule_by_id("ResumeSchedule", schedule_id))

    async def delete_schedule(self, schedule_id: str) -> None:
        await self._run(common.delete_schedule(schedule_id))

    async def list_schedules(self, topic: str = "") -> list[pb.Schedule]:
        return await self._run(common.list_schedules(topic))

    async def scheduler_status(self) -> pb.SchedulerStatus:
        """Which scheduler leads, its lease, and the ticks fired."""
        return await self._run(common.scheduler_status())
