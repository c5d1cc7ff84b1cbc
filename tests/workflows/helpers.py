"""Helpers for the workflow tests: a WorkflowService stub, definitions, a hand-driven worker."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from appliance.proto import queue_pb2 as pb
from appliance.proto import queue_pb2_grpc as pb_grpc


def workflows_stub(server: Any) -> Any:
    channel = grpc.aio.insecure_channel(server.address)
    return pb_grpc.WorkflowServiceStub(channel), channel


@contextlib.asynccontextmanager
async def stub_with(server: Any, *workflows: pb.Workflow) -> AsyncIterator[Any]:
    """A WorkflowService stub, the workflows put first (a test module's `wf` fixture)."""
    stub, channel = workflows_stub(server)
    for workflow in workflows:
        await stub.PutWorkflow(pb.PutWorkflowRequest(workflow=workflow))
    try:
        yield stub
    finally:
        await channel.close()


def step(name: str, topic: str, payload: str = "", *after: str, **kw: Any) -> pb.WorkflowStep:
    return pb.WorkflowStep(name=name, topic=topic, payload=payload, after=list(after), **kw)


LIFECYCLE_DELAY_MS = 300  # "wait 3 days", scaled down


def lifecycle() -> pb.Workflow:
    """The seed's user lifecycle: welcome, wait, then a coupon made from welcome's output."""
    return pb.Workflow(
        name="user-lifecycle",
        steps=[
            step("welcome", "emails", '{"to": "{{ input.email }}"}'),
            step(
                "coupon",
                "coupons",
                '{"to": "{{ input.email }}", "after": "{{ steps.welcome.output.message_id }}"}',
                "welcome",
                delay_ms=LIFECYCLE_DELAY_MS,
            ),
        ],
    )


async def take(stub: Any, topic: str, wait_ms: int = 3000) -> pb.Task:
    """The next task of `topic` (long poll), one only."""
    got = await stub.Retrieve(pb.RetrieveRequest(topic=topic, wait_ms=wait_ms))
    (task,) = got.tasks
    return task


async def run_state(wf: Any, run_id: str) -> pb.Run:
    return (await wf.GetRun(pb.GetRunRequest(run_id=run_id))).run


async def until_run(
    wf: Any, run_id: str, check: Callable[[pb.Run], bool], within_s: float = 8.0
) -> pb.Run:
    deadline = time.monotonic() + within_s
    while True:
        run = await run_state(wf, run_id)
        if check(run):
            return run
        assert time.monotonic() < deadline, f"run not there in time: {run}"
        await asyncio.sleep(0.02)


def step_of(run: pb.Run, name: str) -> pb.StepRun:
    return next(s for s in run.steps if s.name == name)


async def eventually(check: Callable[[], Awaitable[bool]], within_s: float = 8.0) -> None:
    deadline = time.monotonic() + within_s
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)
