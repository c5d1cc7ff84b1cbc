"""atp's W7 (workflows, issue 16; "W6" in the issue, renamed: W6 is the lateness under load):
3-step chains of no-op steps, each step one Redis INCR, worker concurrency 10.

    python loadtest/workflow_bench.py [--short] [--show-logs] [--phases throughput,handoff]

- throughput: `w7_runs` chains started (StartRun) and their first steps written before the
  worker starts; runs completed per second from the first step's start to the last one's;
- hand-off: on a running worker, `w7_handoff_runs` chains started W7_GAP_MS apart; one step's
  start to the next step's start (p50/p99), as the handler sees it;
- bytes: Redis bytes per run waiting in a 3-day delay step (empty input and payloads, so all
  of it is atp's own), over `w7_waiting_runs` runs.

Also imported by tests/workflows/test_many_waiting.py (hand-off with 100,000 runs waiting).
Talks to atp only through the public API (the generated stubs); prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import grpc
from atp_driver import BOOT_S, appliance, worker
from harness import (
    W7_DRAIN_LIMIT_S,
    W7_GAP_MS,
    W7_STEPS,
    chain_result,
    count_records,
    read_records,
    redis_server,
    sized,
    used_memory,
    wait_for_records,
)

from appliance.proto import queue_pb2 as pb
from appliance.proto import queue_pb2_grpc as pb_grpc

TOPIC = "w7"
INFLIGHT = 50  # StartRun calls in flight while filling
THREE_DAYS_MS = 3 * 86_400_000
WARMUP_RUNS = 5  # chains run on a fresh worker before the hand-off clock starts
WorkflowStub = pb_grpc.WorkflowServiceStub


def chain(name: str = "chain", topic: str = TOPIC) -> pb.Workflow:
    """s0 -> s1 -> s2 on one topic; each step's payload is its record mark (harness.mark)."""
    steps = [
        pb.WorkflowStep(
            name=f"s{k}",
            topic=topic,
            payload=f"{{{{ input.n * 4 + {k} }}}}",
            after=[f"s{k - 1}"] if k else [],
        )
        for k in range(W7_STEPS)
    ]
    return pb.Workflow(name=name, steps=steps)


def waiting(name: str = "wait3d", topic: str = "w7-wait") -> pb.Workflow:
    """A run whose first step waits 3 days, then a second step: the seed's lifecycle shape."""
    first = pb.WorkflowStep(name="wait", topic=topic, delay_ms=THREE_DAYS_MS)
    then = pb.WorkflowStep(name="then", topic=topic, after=["wait"])
    return pb.Workflow(name=name, steps=[first, then])


async def put(address: str, *workflows: pb.Workflow) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = WorkflowStub(channel)
        for wf in workflows:
            await stub.PutWorkflow(pb.PutWorkflowRequest(workflow=wf), timeout=30)


async def start_runs(
    address: str, workflow: str, numbers: range, gap_ms: float = 0.0, with_input: bool = True
) -> None:
    """StartRun for each number (input {"n": number}); `gap_ms` apart, else INFLIGHT at once."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = WorkflowStub(channel)

        def request(n: int) -> pb.StartRunRequest:
            text = json.dumps({"n": n}) if with_input else ""
            return pb.StartRunRequest(workflow=workflow, input=text, id=f"{workflow}-{n}")

        if gap_ms:
            began = time.perf_counter()
            for i, n in enumerate(numbers):
                await asyncio.sleep(max(began + i * gap_ms / 1000 - time.perf_counter(), 0))
                await stub.StartRun(request(n), timeout=30)
            return
        it = iter(numbers)

        async def starter() -> None:
            for n in it:
                await stub.StartRun(request(n), timeout=30)

        await asyncio.gather(*(starter() for _ in range(INFLIGHT)))


def pending(address: str, topic: str) -> int:
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.DelayQueueServiceStub(channel)
        stats = stub.GetStats(pb.GetStatsRequest(topics=[topic]), timeout=30)
    return sum(t.pending for t in stats.topics)


def wait_pending(address: str, topic: str, count: int, timeout_s: float) -> bool:
    """Until the topic holds `count` pending tasks (the advancer wrote the first steps)."""
    deadline = time.monotonic() + timeout_s
    while pending(address, topic) < count:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def worker_args(redis_url: str) -> list[str]:
    return ["--handler=mark", "--concurrency=10", f"--redis-url={redis_url}"]


def throughput(address: str, redis_url: str, tmp: Path, runs: int) -> dict[str, Any]:
    """Every chain started and its first step written, then the worker starts."""
    began = time.perf_counter()
    asyncio.run(start_runs(address, "chain", range(runs)))
    written = wait_pending(address, TOPIC, runs, W7_DRAIN_LIMIT_S)
    start_s = time.perf_counter() - began
    records = tmp / "w7-throughput.rec"
    with worker(address, TOPIC, records, "sdk", *worker_args(redis_url)):
        wait_for_records(records, runs * W7_STEPS, W7_DRAIN_LIMIT_S + BOOT_S)
    result = chain_result(read_records(records), runs)
    return {**result, "start_s": start_s, "first_steps_written": written}


def handoff(
    address: str, redis_url: str, tmp: Path, runs: int, first: int = 1_000_000
) -> dict[str, Any]:
    """Chains `first`.. started W7_GAP_MS apart on a running worker (after WARMUP_RUNS
    chains): step-to-step start latency."""
    records = tmp / f"w7-handoff-{first}.rec"
    with worker(address, TOPIC, records, "sdk", *worker_args(redis_url)):
        warm = range(first - WARMUP_RUNS, first)
        asyncio.run(start_runs(address, "chain", warm))
        wait_for_records(records, WARMUP_RUNS * W7_STEPS, BOOT_S + 30)
        skip = count_records(records)
        asyncio.run(start_runs(address, "chain", range(first, first + runs), gap_ms=W7_GAP_MS))
        wait_for_records(records, skip + runs * W7_STEPS, W7_DRAIN_LIMIT_S)
    return chain_result(read_records(records)[skip:], runs)


def fill_waiting(address: str, runs: int, first: int = 0) -> None:
    """`runs` runs of `waiting()` (empty input), each with its first step in its 3-day delay."""
    before = pending(address, "w7-wait")
    numbers = range(first, first + runs)
    asyncio.run(start_runs(address, "wait3d", numbers, with_input=False))
    wait_pending(address, "w7-wait", before + runs, W7_DRAIN_LIMIT_S + runs / 500)


def bytes_per_waiting_run(address: str, port: int, runs: int) -> dict[str, Any]:
    fill_waiting(address, 1, first=10_000_000)  # the workflow's and topic's own keys first
    time.sleep(0.5)
    before = used_memory(port, clients=False)
    fill_waiting(address, runs)
    time.sleep(0.5)
    per_run = (used_memory(port, clients=False) - before) / runs
    return {"bytes_per_run": per_run, "waiting_runs": runs}


def w7(tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    with redis_server() as redis, appliance(redis, 1, tmp / "server.log") as address:
        asyncio.run(put(address, chain(), waiting()))
        out: dict[str, Any] = {}
        if "throughput" in args.phases:
            runs = sized("w7_runs", args.short)
            out["throughput"] = throughput(address, redis.url, tmp, runs)
        if "handoff" in args.phases:
            runs = sized("w7_handoff_runs", args.short)
            out["handoff"] = handoff(address, redis.url, tmp, runs)
        if "memory" in args.phases:
            runs = sized("w7_waiting_runs", args.short)
            out["memory"] = bytes_per_waiting_run(address, redis.port, runs)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--short", action="store_true", help="small sizes: a smoke test")
    p.add_argument("--show-logs", action="store_true", help="print the processes' log tails")
    p.add_argument(
        "--phases",
        type=lambda text: set(text.split(",")),
        default={"throughput", "handoff", "memory"},
        help="a comma list of throughput, handoff, memory (default: all)",
    )
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="atp-bench-") as tmp:
        result = w7(Path(tmp), args)
        if args.show_logs:
            for log in Path(tmp).glob("*.log"):
                sys.stderr.write(f"--- {log.name}\n{log.read_text()[-3000:]}\n")
    print(json.dumps(_clean(result)))


def _clean(value: Any) -> Any:
    """NaN (a figure with no data) as null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    return value


if __name__ == "__main__":
    main()
