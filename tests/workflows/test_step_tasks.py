"""A step's task is found by its id alone without an id index entry (its run names its topic):
GetTask and Delete by `wf:<run>:<step>` work, and a waiting run costs no index key."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import redis

from appliance.keys import Keys
from appliance.proto import queue_pb2 as pb
from tests.conftest import on_both
from tests.workflows.helpers import step, stub_with, until_run

pytestmark = on_both  # every test here also on the Redis Cluster (ADR 0010)

LATER = pb.Workflow(name="later", steps=[step("remind", "mail", "hi", delay_ms=3_600_000)])


@pytest.fixture
async def wf(server: Any) -> AsyncIterator[Any]:
    async with stub_with(server, LATER) as stub:
        yield stub


async def test_a_step_task_is_found_and_deleted_by_its_id_alone(
    wf: Any, stub: Any, redis_client: redis.Redis
) -> None:
    run_id = (await wf.StartRun(pb.StartRunRequest(workflow="later", id="r1"))).run_id
    await until_run(wf, run_id, lambda r: r.steps[0].state == pb.STEP_SCHEDULED)
    task_id = f"wf:{run_id}:remind"
    got = await stub.GetTask(pb.GetTaskRequest(id=task_id))
    assert (got.task.id, got.task.topic, got.state) == (task_id, "mail", pb.PENDING)
    assert not redis_client.keys(Keys().id_topics(task_id)) and not redis_client.keys("*:ids:*")
    await stub.Delete(pb.DeleteRequest(id=task_id))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Delete(pb.DeleteRequest(id=f"wf:{run_id}:nosuchstep"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert (await stub.GetTask(pb.GetTaskRequest(id=task_id))).state == pb.CANCELED
