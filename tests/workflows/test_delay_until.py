"""A step's delay taken from the input (`delay_until`, issue 16): a template giving a time the
step does not start before; a fixed bad time is refused at PutWorkflow, a rendered bad one
fails the step with a reason (docs/API.md)."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import redis

from appliance import times
from appliance.errors import ConfigError
from appliance.proto import queue_pb2 as pb
from appliance.workflows.definitions import from_config
from tests.conftest import on_both
from tests.store.helpers import now_ms, read_pending, snapshot
from tests.workflows.helpers import step, step_of, stub_with, take, until_run

REMINDER = pb.Workflow(
    name="reminder",
    steps=[
        step("ack", "mail", "{{ input.to }}"),
        step("remind", "mail", "again", "ack", delay_ms=100, delay_until="{{ input.remind_at }}"),
    ],
)


@pytest.fixture
async def wf(server: Any) -> AsyncIterator[Any]:
    async with stub_with(server, REMINDER) as stub:
        yield stub


async def finish_first(wf: Any, stub: Any, remind_at: object) -> str:
    run = await wf.StartRun(
        pb.StartRunRequest(workflow="reminder", input=f'{{"to": "a", "remind_at": {remind_at}}}')
    )
    first = await take(stub, "mail")
    await stub.Ack(pb.AckRequest(id=first.id, lease_token=first.lease_token))
    return str(run.run_id)


@on_both
@pytest.mark.parametrize("form", ["iso", "epoch"])
async def test_the_step_waits_until_the_time_in_the_input(
    wf: Any, stub: Any, redis_client: redis.Redis, form: str
) -> None:
    at = now_ms(redis_client) + 1500  # the first step acked before it (a cluster slower)
    value = f'"{times.iso(at)}"' if form == "iso" else str(at)
    run_id = await finish_first(wf, stub, value)
    run = await until_run(wf, run_id, lambda r: step_of(r, "remind").state == pb.STEP_SCHEDULED)
    assert step_of(run, "remind").due_ms == at
    assert read_pending(redis_client, "mail") == {f"wf:{run_id}:remind": at}
    remind = await take(stub, "mail")
    assert remind.execute_time_ms == at and now_ms(redis_client) >= at


@on_both
async def test_a_past_time_leaves_the_delay_after_the_parents(
    wf: Any, stub: Any, redis_client: redis.Redis
) -> None:
    run_id = await finish_first(wf, stub, '"2020-01-01T00:00:00Z"')
    run = await until_run(wf, run_id, lambda r: step_of(r, "remind").state == pb.STEP_SCHEDULED)
    assert step_of(run, "remind").due_ms == step_of(run, "ack").finished_ms + 100


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ('"next week"', "delay_until: expected epoch ms or an ISO 8601 time"),
        ('"2999-01-01T00:00:00Z"', "delay_until: '2999-01-01T00:00:00Z' is more than 10 years"),
        ('{"x": 1}', "delay_until: expected epoch ms or an ISO 8601 time"),
    ],
)
async def test_a_value_that_is_no_time_fails_the_step_saying_why(
    wf: Any, stub: Any, value: str, match: str
) -> None:
    run_id = await finish_first(wf, stub, value)
    run = await until_run(wf, run_id, lambda r: r.state == pb.RUN_FAILED)
    remind = step_of(run, "remind")
    assert remind.state == pb.STEP_FAILED and match in remind.error and not remind.task_id
    assert run.error.startswith("remind: delay_until")


@on_both
async def test_a_missing_input_field_fails_the_step(wf: Any, stub: Any) -> None:
    run = await wf.StartRun(pb.StartRunRequest(workflow="reminder", input='{"to": "a"}'))
    first = await take(stub, "mail")
    await stub.Ack(pb.AckRequest(id=first.id, lease_token=first.lease_token))
    done = await until_run(wf, run.run_id, lambda r: r.state == pb.RUN_FAILED)
    assert "delay_until template: UndefinedError" in step_of(done, "remind").error


@pytest.mark.parametrize(
    ("until", "match"),
    [
        ("tomorrow", "workflow.steps[0].delay_until: expected epoch ms or an ISO 8601 time"),
        ("2999-01-01T00:00:00Z", "is more than 10 years ahead"),
        ("{{ inputs.at }}", "delay_until: a template may name only input, steps and failed"),
        ("{{ input.at", "delay_until: bad template"),
    ],
)
async def test_a_bad_delay_until_is_refused_at_put_changing_nothing(
    wf: Any, redis_client: redis.Redis, until: str, match: str
) -> None:
    before = snapshot(redis_client)
    bad = pb.Workflow(name="w", steps=[step("a", "t", delay_until=until)])
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await wf.PutWorkflow(pb.PutWorkflowRequest(workflow=bad))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert match in (info.value.details() or "")
    assert snapshot(redis_client) == before


def test_the_config_takes_a_fixed_time_or_a_template() -> None:
    at = dt.datetime(2030, 5, 1, 9, 0, tzinfo=dt.UTC)  # YAML's unquoted time
    steps = [{"name": "a", "topic": "t", "delay_until": at}]
    steps.append({"name": "b", "topic": "t", "delay_until": "{{ input.at }}"})
    (wf,) = from_config([{"name": "w", "steps": steps}], 1024)
    assert [s.delay_until for s in wf.steps] == ["2030-05-01T09:00:00.000Z", "{{ input.at }}"]
    bad = [{"name": "w", "steps": [{"name": "a", "topic": "t", "delay_until": "soon"}]}]
    with pytest.raises(ConfigError, match=r"workflows\[0\]: steps\[0\].delay_until: expected"):
        from_config(bad, 1024)
