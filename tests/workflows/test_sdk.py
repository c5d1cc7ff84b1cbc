"""The SDK's workflow calls against the real server: the builder, put/start/get/list/cancel/
signal on Client and AsyncClient, and the seed's user lifecycle run by a Worker whose handler's
return value is the welcome step's output."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from appliance import AsyncClient, Client, Worker
from appliance.client import Workflow
from appliance.errors import InvalidArgument, NotFound, WrongState
from appliance.model import Task
from appliance.proto import queue_pb2 as pb
from tests.conftest import on_both
from tests.worker.test_worker import FAST, running


def lifecycle() -> Workflow:
    return (
        Workflow("user-lifecycle")
        .step("welcome", "emails", {"to": "{{ input.email }}"})
        .step(
            "coupon",
            "coupons",
            {"to": "{{ input.email }}", "after": "{{ steps.welcome.output.message_id }}"},
            after="welcome",
            delay="200ms",
        )
    )


@on_both
async def test_the_user_lifecycle_through_the_sdk_and_a_worker(server: Any) -> None:
    worker = Worker(server.address, **FAST)
    coupons: list[dict[str, str]] = []

    @worker.task("emails")
    def welcome(task: Task) -> dict[str, str]:
        return {"message_id": "m-" + json.loads(task.payload)["to"]}

    @worker.task("coupons")
    def coupon(task: Task) -> str:
        coupons.append(json.loads(task.payload))
        return "sent"

    async with AsyncClient(server.address) as client:
        assert await client.put_workflow(lifecycle()) == 1
        run_id = await client.start_run("user-lifecycle", {"email": "a@b.c"}, id="u1")
        assert await client.start_run("user-lifecycle", {"email": "a@b.c"}, id="u1") == "u1"
        async with running(worker):
            for _ in range(400):
                run = await client.get_run(run_id)
                if run.state == pb.RUN_SUCCEEDED:
                    break
                await asyncio.sleep(0.02)
        assert run.state == pb.RUN_SUCCEEDED
        assert coupons == [{"to": "a@b.c", "after": "m-a@b.c"}]
        welcome_step, coupon_step = run.steps
        assert coupon_step.due_ms >= welcome_step.finished_ms + 200
        assert coupon_step.finished_ms >= coupon_step.due_ms
        assert coupon_step.output == "sent"


@on_both
async def test_the_blocking_client_manages_workflows_and_runs(server: Any) -> None:
    await asyncio.to_thread(blocking_calls, server.address)


def blocking_calls(address: str) -> None:
    order = (
        Workflow("order")
        .signal("paid", "paid", timeout="1h")
        .step("ship", "shipping", "{{ steps.paid.output }}", after="paid")
    )
    with Client(address) as client:
        assert client.put_workflow(order) == 1
        assert [w.name for w in client.list_workflows()] == ["order"]
        assert client.get_workflow("order").steps[0].timeout_ms == 3_600_000
        run_id = client.start_run("order")
        assert client.signal_run(run_id, "paid", {"amount": 3})
        assert not client.signal_run(run_id, "paid", "again")
        other = client.start_run("order", id="o2")
        assert client.cancel_run(other) and not client.cancel_run(other)
        assert [r.id for r in client.list_runs(state="CANCELED").runs] == ["o2"]
        with pytest.raises(WrongState):
            client.signal_run(other, "paid", "")
        with pytest.raises(InvalidArgument):
            client.list_runs(state="ASLEEP")
        client.delete_workflow("order")
        with pytest.raises(NotFound):
            client.start_run("order")


def test_the_builder_refuses_a_bad_delay() -> None:
    with pytest.raises(InvalidArgument, match="delay"):
        Workflow("w").step("a", "t", delay="3 fortnights")
