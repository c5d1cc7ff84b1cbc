"""WorkflowService: converts protobuf <-> the workflow model and calls the workflow store;
nothing else (checks live in appliance/workflows/definitions.py; runs move in the advancer).
Errors are domain exceptions mapped to status codes by api.servicer's `rpc`.
"""

from __future__ import annotations

import secrets

import grpc

from appliance import validation
from appliance.api.servicer import rpc
from appliance.config import Settings
from appliance.errors import InvalidArgument, NotFound
from appliance.proto import queue_pb2 as pb
from appliance.proto import queue_pb2_grpc as pb_grpc
from appliance.store import Store
from appliance.store.workflows import WorkflowStore
from appliance.workflows import definitions, runs
from appliance.workflows.advancer import Advancer
from appliance.workflows.definitions import Step, Workflow
from appliance.workflows.model import RunRecord, RunState, StepRecord

PAGE_DEFAULT, PAGE_MAX = 100, 1000
SCAN_MAX = 5000  # runs read per ListRuns call at most (a sparse filter returns a short page)


def workflow_from_pb(message: pb.Workflow, settings: Settings) -> Workflow:
    steps = tuple(
        Step(
            name=s.name,
            topic=s.topic,
            payload=s.payload,
            after=tuple(s.after),
            after_any=s.after_any,
            delay_ms=s.delay_ms,
            max_retries=s.max_retries if s.HasField("max_retries") else None,
            on_failure=s.on_failure,
            signal=s.signal,
            timeout_ms=s.timeout_ms,
            when=s.when,
            delay_until=s.delay_until,
        )
        for s in message.steps
    )
    return definitions.check(Workflow(message.name, steps), settings.payload_max_bytes)


def workflow_to_pb(wf: Workflow) -> pb.Workflow:
    out = pb.Workflow(name=wf.name, version=wf.version)
    for s in wf.steps:
        step = out.steps.add(
            name=s.name,
            topic=s.topic,
            payload=s.payload,
            after=list(s.after),
            after_any=s.after_any,
            delay_ms=s.delay_ms,
            on_failure=s.on_failure,
            signal=s.signal,
            timeout_ms=s.timeout_ms,
            when=s.when,
            delay_until=s.delay_until,
        )
        if s.max_retries is not None:
            step.max_retries = s.max_retries
    return out


def step_to_pb(s: StepRecord) -> pb.StepRun:
    return pb.StepRun(
        name=s.name,
        state=pb.StepState.Value(f"STEP_{s.state}"),
        task_id=s.task_id,
        attempts=s.attempts,
        output=s.output,
        error=s.error,
        started_ms=s.started_ms,
        finished_ms=s.finished_ms,
        due_ms=s.due_ms,
    )


def run_to_pb(r: RunRecord) -> pb.Run:
    return pb.Run(
        id=r.id,
        workflow=r.workflow,
        version=r.version,
        state=pb.RunState.Value(f"RUN_{r.state}"),
        input=r.input,
        steps=[step_to_pb(s) for s in r.steps],
        created_ms=r.created_ms,
        finished_ms=r.finished_ms,
        error=r.error,
    )


class WorkflowServicer(pb_grpc.WorkflowServiceServicer):
    def __init__(self, store: Store, settings: Settings, advancer: Advancer) -> None:
        self.store = WorkflowStore(store)
        self.settings = settings
        self.advancer = advancer

    @rpc
    async def PutWorkflow(
        self, request: pb.PutWorkflowRequest, context: grpc.aio.ServicerContext
    ) -> pb.Workflow:
        wf = workflow_from_pb(request.workflow, self.settings)
        version = await self.store.put_workflow(wf.name, wf.to_json())
        return workflow_to_pb(Workflow(wf.name, wf.steps, version))

    @rpc
    async def GetWorkflow(
        self, request: pb.GetWorkflowRequest, context: grpc.aio.ServicerContext
    ) -> pb.Workflow:
        name = definitions.name(request.name, "name")
        version, text = await self.store.workflow(name, request.version)
        return workflow_to_pb(Workflow.from_json(name, version, text))

    @rpc
    async def ListWorkflows(
        self, request: pb.ListWorkflowsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListWorkflowsResponse:
        out = pb.ListWorkflowsResponse()
        for name, version in sorted((await self.store.workflow_names()).items()):
            _, text = await self.store.workflow(name, version)
            out.workflows.append(workflow_to_pb(Workflow.from_json(name, version, text)))
        return out

    @rpc
    async def DeleteWorkflow(
        self, request: pb.DeleteWorkflowRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteWorkflowResponse:
        await self.store.delete_workflow(definitions.name(request.name, "name"))
        return pb.DeleteWorkflowResponse(success=True)

    @rpc
    async def StartRun(
        self, request: pb.StartRunRequest, context: grpc.aio.ServicerContext
    ) -> pb.StartRunResponse:
        name = definitions.name(request.workflow, "workflow")
        run_id = definitions.run_id(request.id) if request.id else secrets.token_urlsafe(12)
        validation.payload(request.input, self.settings.payload_max_bytes)
        # its first steps scheduled and written here (else an advancer's, run_start's message)
        advancer = self.advancer
        started = await runs.start(
            self.store,
            name,
            run_id,
            request.input,
            retries=self.settings.default_max_retries,
            definition=advancer.definition,
            look=advancer.first_look,
        )
        if started.run is not None and started.workflow is not None:
            advancer.started(started.run, started.workflow)
        return pb.StartRunResponse(
            run_id=run_id, duplicate=not started.created, version=started.version
        )

    async def _run(self, run_id: str) -> RunRecord:
        fields = await self.store.run_fields(run_id)
        if not fields:
            raise NotFound(f"no run {run_id!r}")
        wf = await self.advancer.definition(fields["wf"], int(fields["ver"]))
        return await self.store.get_run(run_id, wf.step_names)

    @rpc
    async def GetRun(
        self, request: pb.GetRunRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetRunResponse:
        run = await self._run(definitions.run_id(request.run_id, "run_id"))
        return pb.GetRunResponse(run=run_to_pb(run))

    @rpc
    async def ListRuns(
        self, request: pb.ListRunsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListRunsResponse:
        size = validation.non_negative(request.page_size, "page_size", PAGE_MAX) or PAGE_DEFAULT
        if request.workflow:
            definitions.name(request.workflow, "workflow")
        if not pb.RunState.Name(request.state):  # pragma: no cover - protobuf refuses first
            raise InvalidArgument("state is unknown")
        want = RunState(pb.RunState.Name(request.state)[4:]) if request.state else None
        offset = _offset(request.page_token)
        out, pos, last = pb.ListRunsResponse(), offset, False
        gone: list[str] = []
        while len(out.runs) < size and pos - offset < SCAN_MAX and not last:
            ids = await self.store.run_ids(pos, size)
            last = len(ids) < size
            for n, run_id in enumerate(ids, 1):
                pos += 1
                run = await self._matching(run_id, request.workflow, want, gone)
                if run is not None:
                    out.runs.append(run_to_pb(run))
                if len(out.runs) == size:
                    last = last and n == len(ids)
                    break
        await self.store.forget_runs(gone)  # expired after their retention
        out.next_page_token = "" if last else str(pos - len(gone))
        return out

    async def _matching(
        self, run_id: str, workflow: str, state: RunState | None, gone: list[str]
    ) -> RunRecord | None:
        try:
            run = await self._run(run_id)
        except NotFound:
            gone.append(run_id)
            return None
        if (workflow and run.workflow != workflow) or (state is not None and run.state != state):
            return None
        return run

    @rpc
    async def CancelRun(
        self, request: pb.CancelRunRequest, context: grpc.aio.ServicerContext
    ) -> pb.CancelRunResponse:
        run = await self._run(definitions.run_id(request.run_id, "run_id"))
        await self.advancer.look(run.id)  # a step whose task was leased is RUNNING: it may end
        wf = await self.advancer.definition(run.workflow, run.version)
        if run.state == RunState.CANCELED:
            return pb.CancelRunResponse(success=False)
        tasks = await self.store.cancel_run(run.id, wf.step_names)
        await self.advancer.delete_tasks(tasks)
        return pb.CancelRunResponse(success=True)

    @rpc
    async def SignalRun(
        self, request: pb.SignalRunRequest, context: grpc.aio.ServicerContext
    ) -> pb.SignalRunResponse:
        run_id = definitions.run_id(request.run_id, "run_id")
        name = definitions.name(request.name, "name")
        validation.payload(request.payload, self.settings.payload_max_bytes)
        kept = await self.store.signal_run(run_id, name, request.payload)
        await self.advancer.look(run_id)
        return pb.SignalRunResponse(duplicate=not kept)


def _offset(token: str) -> int:
    if not token:
        return 0
    if not token.isdigit() or len(token) > 12:
        raise InvalidArgument("page_token is not one this server handed out")
    return int(token)
