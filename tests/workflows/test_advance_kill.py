"""workflow_advance_kill, the quick version: two real `atp --role=server` processes both advance
runs; one is SIGKILLed (mid-advance, under load) and restarted, three times, while a Worker on
the other runs 3-step chains. Checked from what happened: every run SUCCEEDED, every step's
task was created once and handled once, in order, never before its parent finished."""

from __future__ import annotations

import asyncio
import collections
import json
import signal
import time

import redis

from appliance import AsyncClient, Worker
from appliance.client import Workflow
from appliance.model import Task
from appliance.proto import queue_pb2 as pb
from tests.conftest import ServerProcess, on_both
from tests.store.helpers import KEYS
from tests.worker.test_worker import FAST, running

pytestmark = on_both  # every test here also on the Redis Cluster (ADR 0010)

KILLS, BATCH = 4, 25
RUNS = KILLS * BATCH


async def test_killing_an_advancing_server_creates_nothing_twice_and_loses_nothing(
    redis_url: str, redis_client: redis.Redis
) -> None:
    victim, steady = ServerProcess(redis_url), ServerProcess(redis_url)
    handled: collections.Counter[str] = collections.Counter()
    try:
        worker = Worker(steady.address, concurrency=10, **FAST)

        @worker.task("chain")
        def step(task: Task) -> dict[str, str]:
            handled[task.id] += 1
            return {"from": task.id}

        chain = (
            Workflow("chain")
            .step("a", "chain", "{{ input.n }}")
            .step("b", "chain", "{{ steps.a.output }}", after="a")
            .step("c", "chain", "{{ steps.b.output }}", after="b")
        )
        async with AsyncClient(victim.address) as client:
            await client.put_workflow(chain)
        async with running(worker), AsyncClient(steady.address) as client:
            for kill in range(KILLS):
                async with AsyncClient(victim.address) as starter:  # both advancers hear each
                    for n in range(kill * BATCH, (kill + 1) * BATCH):
                        await starter.start_run("chain", {"n": n}, id=f"r{n}")
                await asyncio.sleep(0.02 * kill)  # mid-advance: at once, then a little later
                victim.proc.send_signal(signal.SIGKILL)
                victim.proc.wait(5)
                victim.log.close()
                victim = ServerProcess(redis_url, port=victim.port)
            deadline = time.monotonic() + 30
            runs = [await client.get_run(f"r{n}") for n in range(RUNS)]
            while any(r.state != pb.RUN_SUCCEEDED for r in runs):
                late = next(r for r in runs if r.state != pb.RUN_SUCCEEDED)
                assert time.monotonic() < deadline, late
                await asyncio.sleep(0.1)
                runs = [await client.get_run(f"r{n}") for n in range(RUNS)]
    finally:
        victim.stop()
        steady.stop()
    ids = {f"wf:r{n}:{s}" for n in range(RUNS) for s in "abc"}
    assert handled == collections.Counter(dict.fromkeys(ids, 1))  # each step handled once
    tk = KEYS.topic("chain")
    stored = {
        k.decode().removeprefix(tk.task_prefix) for k in redis_client.scan_iter(match=tk.task("*"))
    }
    assert stored == ids and redis_client.hlen(tk.new) == 0  # each created once, none left
    for run in runs:
        a, b, c = run.steps
        assert [s.attempts for s in run.steps] == [1, 1, 1]
        assert a.finished_ms <= b.due_ms <= b.finished_ms <= c.due_ms <= c.finished_ms
        assert json.loads(c.output) == {"from": f"wf:{run.id}:c"}
