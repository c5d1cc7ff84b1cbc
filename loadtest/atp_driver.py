"""atp's side of `just bench`: runs one workload (docs/BENCHMARKS.md) against real appliance
processes (`atp --role=server`, the worker process of loadtest/atp_worker.py) and a fresh
redis-server, and prints its figures as one JSON object.

    python loadtest/atp_driver.py w1 --concurrency 10 --handler incr
    python loadtest/atp_driver.py enqueue|w2|w3|w4|w5|w6|api [--short]

w1: drain throughput; enqueue: one at a time, batched, concurrent; w2: due-time precision;
w3: a worker SIGKILLed mid-run; w4: memory; w5: w2 and a drain next to a 1,000,000 backlog;
w6: due-to-start lateness under a steady 1,000 tasks/s load; api: raw gRPC call rates.

Talks to atp only through the public gRPC API (the generated stubs of proto/queue.proto);
every loop is bounded in count and time, every process is ended by its id.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import grpc
from enqueue_bench import concurrent_enqueue, sequential_enqueue
from harness import (
    COUNTER_KEY,
    Proc,
    RedisCluster,
    RedisServer,
    count_records,
    crash_run,
    drain_result,
    due_times,
    free_port,
    lateness,
    median,
    now_ms,
    percentile,
    read_records,
    redis_command,
    redis_server,
    sized,
    used_memory,
    wait_for_records,
)

from appliance import Client
from appliance.proto import queue_pb2 as pb
from appliance.proto import queue_pb2_grpc as pb_grpc

HERE = Path(__file__).resolve().parent
BATCH = 1000  # the server's default batch cap
PHASE_LIMIT_S = 120.0  # no phase runs longer than this
BOOT_S = 4.0  # W1's drain limit is the same for all systems, plus this for the worker's boot
W1_TASKS = 10_000
W2_TASKS, W2_SPREAD_MS, W2_LEAD_MS, W2_GRACE_MS = 2_000, 10_000, 1_500, 3_000
W4_TASKS, W4_PAYLOAD = 100_000, 100
W4_HISTORY_TASKS = 200
API_UNARY, API_BATCH = 10_000, 50_000
W5_BACKLOG, W5_RUNS = 1_000_000, 3
ENQUEUE_INFLIGHT = 100  # concurrent enqueue: calls in flight from one process
FAR_FUTURE_MS = 2 * 3_600_000
Stub = pb_grpc.DelayQueueServiceStub
SERVER_PIDS: dict[str, int] = {}
RECORD_FILES = itertools.count(1)
PROBE_CALLS = 300


# -- processes ---------------------------------------------------------------------------


@contextlib.contextmanager
def appliance(
    redis: RedisServer | RedisCluster,
    servers: int = 1,
    log: Path | None = None,
    role: str = "server",
    extra: Sequence[str] = (),
) -> Iterator[str]:
    """`atp --role=server` (with --servers N: N processes on one port) on a free port; W3 runs
    `--role=server,watchdog`, the watchdog being what recovers expired leases; `extra`: more
    flags (`--durability=replicated`)."""
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "appliance",
        f"--role={role}",
        f"--servers={servers}",
        f"--grpc-addr=127.0.0.1:{port}",
        f"--http-addr=127.0.0.1:{free_port()}",
        f"--redis-url={redis.url}",
        "--log-level=warning",
        *extra,
    ]
    proc = Proc(argv, log=log)
    address = f"127.0.0.1:{port}"
    SERVER_PIDS[address] = proc.pid
    try:
        wait_ready(address, proc)
        yield address
    finally:
        proc.stop(15)
        del SERVER_PIDS[address]


def server_pid(address: str) -> int:
    """The pid of the server process at `address` (the supervisor's with --servers > 1)."""
    return SERVER_PIDS[address]


def wait_ready(address: str, proc: Proc, timeout_s: float = 30.0) -> None:
    """Until an Enqueue-free call (GetStats) answers; every server process when N > 1 is
    started by then in practice, and a short pause covers the rest."""
    deadline = time.monotonic() + timeout_s
    with grpc.insecure_channel(address) as channel:
        stub = Stub(channel)
        while time.monotonic() < deadline:
            if not proc.alive():
                raise RuntimeError(f"atp exited with {proc.popen.returncode}")
            try:
                stub.GetStats(pb.GetStatsRequest(), timeout=1)
                time.sleep(0.5)
                return
            except grpc.RpcError:
                time.sleep(0.1)
    raise RuntimeError(f"atp did not answer on {address}")


def worker_argv(address: str, topic: str, records: Path, mode: str, *extra: str) -> list[str]:
    """atp_worker.py's command line; `extra` are its options (--handler, --concurrency, ...)."""
    return [
        sys.executable,
        str(HERE / "atp_worker.py"),
        f"--address={address}",
        f"--topic={topic}",
        f"--records={records}",
        f"--mode={mode}",
        f"--max-seconds={PHASE_LIMIT_S * 2}",
        *extra,
    ]


@contextlib.contextmanager
def worker(address: str, topic: str, records: Path, mode: str, *extra: str) -> Iterator[Proc]:
    proc = Proc(worker_argv(address, topic, records, mode, *extra), log=records.with_suffix(".log"))
    try:
        yield proc
    finally:
        proc.stop(10)


# -- calls -------------------------------------------------------------------------------


def requests(
    topic: str, count: int, payload: str = "", due: Sequence[float] | None = None, delay_ms: int = 0
) -> list[pb.EnqueueRequest]:
    if due is not None:
        return [pb.EnqueueRequest(topic=topic, payload=payload, execute_at_ms=int(d)) for d in due]
    return [pb.EnqueueRequest(topic=topic, payload=payload, delay_ms=delay_ms)] * count


async def enqueue_batches(
    stub: Stub, reqs: Sequence[pb.EnqueueRequest], inflight: int = 4, batch: int = BATCH
) -> float:
    """EnqueueBatch calls of `batch`, `inflight` at a time; tasks/s."""
    chunks = [reqs[i : i + batch] for i in range(0, len(reqs), batch)]
    it = iter(chunks)

    async def sender() -> None:
        for chunk in it:
            await stub.EnqueueBatch(pb.EnqueueBatchRequest(requests=chunk), timeout=60)

    start = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(sender() for _ in range(inflight))), PHASE_LIMIT_S)
    return len(reqs) / (time.perf_counter() - start)


async def with_stub(address: str, body: Callable[[Stub], Any]) -> Any:
    async with grpc.aio.insecure_channel(address) as channel:
        return await body(Stub(channel))


def enqueue(address: str, reqs: Sequence[pb.EnqueueRequest], inflight: int = 4) -> float:
    return float(asyncio.run(with_stub(address, lambda s: enqueue_batches(s, reqs, inflight))))


# -- workloads ---------------------------------------------------------------------------


def size(args: argparse.Namespace, name: str) -> Any:
    return sized(name, args.short)


def w1(tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Enqueue the tasks (EnqueueBatch), then one worker process drains them: the SDK Worker
    at --concurrency with --handler (incr: a sync def doing one Redis INCR), or bare gRPC
    consumers."""
    tasks = args.tasks or size(args, "w1_tasks")
    with redis_server() as redis, appliance(redis, args.servers, tmp / "server.log") as address:
        rate_in = enqueue(address, requests("w1", tasks))
        records = tmp / "w1.rec"
        extra = [f"--handler={args.handler}", f"--concurrency={args.concurrency}"]
        extra += [f"--redis-url={redis.url}"]
        if args.worker_mode == "grpc" or args.concurrency >= 1000:
            extra.append("--batch=250")
        with worker(address, "w1", records, args.worker_mode, *extra):
            done = wait_for_records(records, tasks, size(args, "w1_drain_limit_s") + BOOT_S)
        result = drain_result(rate_in, records, done)
        counted = redis_command(redis.port, "GET", COUNTER_KEY)
    result.update(
        tasks=tasks,
        concurrency=args.concurrency,
        handler=args.handler,
        incr_count=int(counted) if isinstance(counted, bytes) else 0,
    )
    return result


def enqueue_batched(address: str, count: int, batch: int = BATCH) -> float:
    """`Client.enqueue_many()` of `batch` payloads, one call at a time; tasks/s."""
    payloads = ["x" * 100] * batch
    with Client(address) as client:
        for _ in range(2):  # warm-up, not counted
            client.enqueue_many("batch", payloads)
        start = time.perf_counter()
        for _ in range(count // batch):
            client.enqueue_many("batch", payloads)
        return (count // batch * batch) / (time.perf_counter() - start)


def enqueue_rates(tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Enqueue from one process through the SDK (loadtest/enqueue_bench.py's functions, after
    their warm-up of 200 calls): one call at a time (`Client.enqueue()`), batched
    (`Client.enqueue_many()` of 1,000), and concurrent (`AsyncClient.enqueue()`, 100 in
    flight as for the peers, and 1,000 in flight); 100-byte payloads, a fresh server."""
    with redis_server() as redis, appliance(redis, 1, tmp / "server.log") as address:
        return {
            "sequential_per_s": sequential_enqueue(address, size(args, "seq_tasks"), "sync"),
            "batched_per_s": enqueue_batched(address, size(args, "batch_tasks")),
            "concurrent_per_s": concurrent_enqueue(
                address, size(args, "concurrent_tasks"), ENQUEUE_INFLIGHT, "async"
            ),
            "concurrent_1000_per_s": concurrent_enqueue(
                address, size(args, "many_tasks"), 1000, "async"
            ),
        }


def w3(tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    """A worker SIGKILLed mid-run: 40 tasks of 3 s (their number as payload), an SDK Worker
    at concurrency 10 with a sync def handler; SIGKILL half a task into the first wave, a
    fresh worker at once; until every task has finished, at most 120 s after the kill."""
    tasks, conc = size(args, "w3_tasks"), size(args, "w3_concurrency")
    sleep_s, cap_s = size(args, "w3_sleep_s"), size(args, "w3_cap_s")
    lease_s = size(args, "w3_lease_s")
    starts, finishes = tmp / "w3-starts.rec", tmp / "w3-finishes.rec"
    with (
        redis_server() as redis,
        appliance(redis, 1, tmp / "server.log", role="server,watchdog") as address,
    ):
        with Client(address) as client:
            ids = {float(n): client.enqueue("w3", str(n)) for n in range(tasks)}
        extra = [
            "--handler=sleep",
            f"--concurrency={conc}",
            f"--sleep-s={sleep_s}",
            f"--finish-records={finishes}",
            f"--lease-s={lease_s}",
        ]
        argv = worker_argv(address, "w3", starts, "sdk", *extra)
        log = tmp / "w3-worker.log"
        result = crash_run(
            lambda: Proc(argv, log=log),
            starts,
            finishes,
            tasks,
            conc,
            sleep_s,
            cap_s,
            watch=lambda kill_ms, interrupted, deadline: released(
                address, ids, kill_ms, interrupted, deadline
            ),
        )
    return {**result, "concurrency": conc, "sleep_s": sleep_s, "lease_s": lease_s or None}


def released(
    address: str, ids: dict[float, str], kill_ms: float, interrupted: set[float], deadline: float
) -> dict[str, Any]:
    """W3, atp's own view: seconds from the SIGKILL until the server had released every
    interrupted task (GetTask: no longer RUNNING under its first lease, i.e. pending again or
    leased anew with attempt 2, or done); nan when not within the cap."""
    seen: dict[float, float] = {}
    with Client(address) as client:
        while len(seen) < len(interrupted) and time.monotonic() < deadline:
            for n in interrupted - seen.keys():
                task = client.get_task(ids[n], "w3")
                if task.state != "RUNNING" or task.attempt >= 2:
                    seen[n] = now_ms()
            time.sleep(0.02)
    if not interrupted or len(seen) < len(interrupted):
        return {"released_s": math.nan}
    return {"released_s": (max(seen.values()) - kill_ms) / 1000.0}


def w6(tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Due-to-start lateness under load: one SDK Worker (concurrency 100, the sync INCR handler)
    serves a topic fed a steady 1,000 tasks/s due at once (enqueue_many of 10 every 10 ms)
    and the measured topic, whose tasks are due uniformly over the next 10 s."""
    count, spread = size(args, "w2_tasks"), size(args, "w2_spread_ms")
    per_s = size(args, "w6_background_per_s")
    records, background = tmp / "w6.rec", tmp / "w6-background.rec"
    with redis_server() as redis, appliance(redis, 1, tmp / "server.log") as address:
        extra = [
            "--handler=incr",
            "--concurrency=100",
            f"--redis-url={redis.url}",
            "--background-topic=w6-load",
            f"--background-records={background}",
        ]
        with worker(address, "w6", records, "sdk", *extra), Client(address) as client:
            time.sleep(2.0)
            due = due_times(count, now_ms() + W2_LEAD_MS, spread)
            enqueue(address, requests("w6", count, due=due))
            last = max(due) + W2_GRACE_MS
            sent, started = paced_load(client, "w6-load", per_s, last)
            wait_for_records(records, count, 1.0)
            time.sleep(0.2)
    result = lateness(read_records(records), due)
    load = read_records(background)
    result.update(background_sent_per_s=sent, background_done=len(load), background_sent=started)
    return result


def paced_load(client: Client, topic: str, per_s: int, until_ms: float) -> tuple[float, int]:
    """enqueue_many of per_s/100 tasks every 10 ms until `until_ms`; (tasks/s sent, tasks)."""
    chunk = ["b"] * max(per_s // 100, 1)
    sent, start = 0, time.perf_counter()
    tick = start
    while now_ms() < until_ms:
        client.enqueue_many(topic, chunk)
        sent += len(chunk)
        tick += 0.01
        time.sleep(max(tick - time.perf_counter(), 0.0))
    return sent / (time.perf_counter() - start), sent


def run_w2(
    address: str, tmp: Path, mode: str, topic: str, args: argparse.Namespace
) -> dict[str, Any]:
    """Idle worker (the SDK Worker of W1's c=1000 row, or bare consumers); 2,000 tasks due
    uniformly over the next 10 s; lateness of their starts."""
    records = tmp / f"{topic}-{next(RECORD_FILES)}.rec"  # a fresh file for every measurement
    count, spread = size(args, "w2_tasks"), size(args, "w2_spread_ms")
    with worker(address, topic, records, mode, "--batch=250"):
        time.sleep(2.0)  # the worker is up and long-polling, idle
        due = due_times(count, now_ms() + W2_LEAD_MS, spread)
        enqueue(address, requests(topic, count, due=due))
        last = max(due) + W2_GRACE_MS
        wait_for_records(records, count, max((last - now_ms()) / 1000, 0.1))
        time.sleep(0.2)  # anything still running lands in the file
    return lateness(read_records(records), due)


def w2(tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    with redis_server() as redis, appliance(redis, args.servers, tmp / "server.log") as address:
        return run_w2(address, tmp, args.worker_mode, "w2", args)


async def unary_calls(address: str, count: int, inflight: int) -> tuple[int, float, float]:
    """`count` Enqueue calls, `inflight` at a time, over one channel, timed once the channel
    is connected; (calls done, start, end) with wall-clock times in seconds."""
    done = 0
    request = pb.EnqueueRequest(topic="w3-unary", payload="x" * 100)

    async def caller(stub: Stub) -> None:
        nonlocal done
        while done < count:
            done += 1
            await stub.Enqueue(request, timeout=30)

    async def body(stub: Stub) -> tuple[float, float]:
        await stub.Enqueue(request, timeout=30)
        start = time.time()
        await asyncio.wait_for(
            asyncio.gather(*(caller(stub) for _ in range(inflight))), PHASE_LIMIT_S
        )
        return start, time.time()

    start, end = await with_stub(address, body)
    return done, start, end


def unary_rate(address: str, clients: int, count: int, inflight: int = 64) -> float:
    """Enqueue calls/s from `clients` client processes (one Python client process is about as
    busy as the server it calls): all calls over the span from the first start to the last
    end."""
    argv = [sys.executable, __file__, "unary-client", address, str(count // clients)]
    procs = [
        subprocess.Popen([*argv, str(inflight)], stdout=subprocess.PIPE, start_new_session=True)
        for _ in range(clients)
    ]
    spans: list[tuple[int, float, float]] = []
    for p in procs:
        try:
            out, _ = p.communicate(timeout=PHASE_LIMIT_S + 30)
            done, start, end = json.loads(out)
            spans.append((int(done), float(start), float(end)))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    if len(spans) < clients:
        return math.nan
    return sum(n for n, _, _ in spans) / (max(e for _, _, e in spans) - min(s for _, s, _ in spans))


async def drain(
    stub: Stub, topic: str, count: int, consumers: int = 4, limit_s: float = PHASE_LIMIT_S
) -> dict[str, float]:
    """Retrieve (batch, no wait) + AckBatch until `count` tasks are acked; tasks/s and the
    Retrieve call's latency."""
    done = 0
    fetch_ms: list[float] = []
    request = pb.RetrieveRequest(topic=topic, batch_size=BATCH // 2, wait_ms=0)

    async def consume() -> None:
        nonlocal done
        deadline = time.monotonic() + limit_s
        while done < count and time.monotonic() < deadline:
            sent = time.perf_counter()
            reply = await stub.Retrieve(request, timeout=30)
            fetch_ms.append((time.perf_counter() - sent) * 1000)
            if reply.tasks:
                acks = [pb.AckRequest(id=t.id, lease_token=t.lease_token) for t in reply.tasks]
                await stub.AckBatch(pb.AckBatchRequest(acks=acks), timeout=30)
                done += len(reply.tasks)

    start = time.perf_counter()
    await asyncio.gather(*(consume() for _ in range(consumers)))
    return {
        "per_s": done / (time.perf_counter() - start),
        "fetch_p50_ms": percentile(fetch_ms, 50),
        "fetch_p99_ms": percentile(fetch_ms, 99),
    }


def api(tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    """API rates: Enqueue calls/s (1 and 2 server processes), EnqueueBatch tasks/s,
    Retrieve+AckBatch tasks/s."""
    unary, batch = (1_000, 5_000) if args.short else (API_UNARY, API_BATCH)
    out: dict[str, Any] = {}
    with redis_server() as redis, appliance(redis, 1, tmp / "server1.log") as address:
        out["unary_1_server"] = unary_rate(address, 2, unary)
        out["batch_1_server"] = enqueue(address, requests("api", batch, "x" * 100), 4)
        got = asyncio.run(with_stub(address, lambda s: drain(s, "api", batch)))
        out["retrieve_ack_per_s"] = got["per_s"]
        out["fetch_p50_ms"] = got["fetch_p50_ms"]
    with redis_server() as redis, appliance(redis, 2, tmp / "server2.log") as address:
        out["unary_2_servers"] = unary_rate(address, 2, unary)
        out["batch_2_servers"] = enqueue(address, requests("api", batch, "x" * 100), 4)
        got = asyncio.run(with_stub(address, lambda s: drain(s, "api", batch)))
        out["retrieve_ack_2_servers_per_s"] = got["per_s"]
    return out


def w4(tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Redis bytes per pending task: 100,000 tasks with a 100-byte payload, due in 2 h."""
    with redis_server() as redis, appliance(redis, 1, tmp / "server.log") as address:
        enqueue(address, requests("w4", 1, "x"))  # the topic and its keys exist before
        time.sleep(0.5)
        before = used_memory(redis.port)
        payload = "p" * W4_PAYLOAD
        tasks = 5_000 if args.short else W4_TASKS
        enqueue(address, requests("w4", tasks, payload, delay_ms=FAR_FUTURE_MS))
        time.sleep(0.5)
        after = used_memory(redis.port)
        history = asyncio.run(with_stub(address, history_bytes))
    per_task = (after - before) / tasks
    return {"bytes_per_task": per_task, "beyond_payload": per_task - W4_PAYLOAD, **history}


async def history_bytes(stub: Stub) -> dict[str, float]:
    """The event history's cost (docs/adr/0017): W4_HISTORY_TASKS tasks each enqueued, leased by
    Retrieve, nacked once, leased again and acked; the bytes of their stored history (its
    lines, '<ms> <kind> <detail>', as GetTaskHistory returns them: the enqueue is no line) per
    task. A task never leased (W4's pending tasks) has none."""
    await enqueue_batches(stub, requests("w4h", W4_HISTORY_TASKS, "p" * W4_PAYLOAD))
    ids: list[str] = []
    for settle in ("nack", "ack"):
        got = 0
        while got < W4_HISTORY_TASKS:
            ask = pb.RetrieveRequest(topic="w4h", batch_size=100, wait_ms=5000)
            reply = await stub.Retrieve(ask, timeout=10)
            got += len(reply.tasks)
            for t in reply.tasks:
                if settle == "nack":
                    nack = pb.NackRequest(id=t.id, lease_token=t.lease_token, error="boom")
                    await stub.Nack(nack, timeout=10)
                else:
                    await stub.Ack(pb.AckRequest(id=t.id, lease_token=t.lease_token), timeout=10)
                    ids.append(t.id)
    total, events = 0, 0
    for i in ids:
        reply = await stub.GetTaskHistory(pb.GetTaskHistoryRequest(id=i, topic="w4h"), timeout=10)
        lines = [f"{e.time_ms} {e.kind} {e.detail}".rstrip() for e in reply.events[1:]]
        total += len("\n".join(lines))
        events += len(reply.events)
    return {
        "history_bytes_per_task": total / len(ids),
        "history_events_per_task": events / len(ids),
    }


def w5(tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    """W2 and a Retrieve+Ack drain on a topic holding 1,000,000 tasks due in 2 h, each run
    next to the same on an empty topic of the same server and redis (interleaved, `runs`)."""
    out: dict[str, Any] = {"runs": []}
    with redis_server() as redis, appliance(redis, 1, tmp / "server.log") as address:
        start = time.perf_counter()
        far = requests("w5", W5_BACKLOG, "b", delay_ms=FAR_FUTURE_MS)
        out["backlog_enqueue_per_s"] = enqueue(address, far, 4)
        out["backlog_load_s"] = time.perf_counter() - start
        for n in range(W5_RUNS):
            out["runs"].append(
                {
                    "empty_w2": run_w2(address, tmp, args.worker_mode, f"w5-empty-{n}", args),
                    "backlog_w2": run_w2(address, tmp, args.worker_mode, "w5", args),
                    "empty_drain": drain_due(address, f"w5-empty-{n}"),
                    "backlog_drain": drain_due(address, "w5"),
                }
            )
    return out


def drain_due(address: str, topic: str, count: int = 20_000) -> dict[str, float]:
    """Enqueue `count` due tasks; the Retrieve latency of one consumer alone (the fetch cost
    without queueing), then the drain by 4 consumers."""
    enqueue(address, requests(topic, count, "x" * 100))

    async def body(stub: Stub) -> dict[str, float]:
        cost = await probe(stub, topic)
        got = await drain(stub, topic, count - PROBE_CALLS * 10)
        return {**got, "probe_p50_ms": cost}

    return dict(asyncio.run(with_stub(address, body)))


async def probe(stub: Stub, topic: str, calls: int = PROBE_CALLS) -> float:
    """Median latency (ms) of Retrieve(10 due tasks, no wait) calls made one at a time, each
    followed by its AckBatch."""
    took: list[float] = []
    request = pb.RetrieveRequest(topic=topic, batch_size=10, wait_ms=0)
    for _ in range(calls):
        sent = time.perf_counter()
        reply = await stub.Retrieve(request, timeout=30)
        took.append((time.perf_counter() - sent) * 1000)
        acks = [pb.AckRequest(id=t.id, lease_token=t.lease_token) for t in reply.tasks]
        await stub.AckBatch(pb.AckBatchRequest(acks=acks), timeout=30)
    return percentile(took, 50)


WORKLOADS: dict[str, Callable[[Path, argparse.Namespace], dict[str, Any]]] = {
    "w1": w1,
    "enqueue": enqueue_rates,
    "w2": w2,
    "w3": w3,
    "w4": w4,
    "w5": w5,
    "w6": w6,
    "api": api,
}


def _clean(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def main() -> None:
    global W5_BACKLOG, W5_RUNS  # --w5-backlog / --w5-runs, for trying W5 small by hand
    if sys.argv[1:2] == ["unary-client"]:  # a helper process of unary_rate
        address, count, inflight = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
        print(json.dumps(asyncio.run(unary_calls(address, count, inflight))))
        return
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("workload", choices=sorted(WORKLOADS))
    p.add_argument("--servers", type=int, default=1, help="server processes for W1/W2")
    p.add_argument("--worker-mode", choices=("sdk", "grpc"), default="sdk")
    p.add_argument("--concurrency", type=int, default=10, help="W1: the SDK Worker's")
    p.add_argument("--handler", choices=("incr", "noop"), default="incr", help="W1's handler")
    p.add_argument("--tasks", type=int, default=0, help="W1's tasks (0: the default)")
    p.add_argument("--short", action="store_true", help="small sizes: a smoke test")
    p.add_argument("--show-logs", action="store_true", help="print the processes' log tails")
    p.add_argument("--w5-backlog", type=int, default=W5_BACKLOG, help="W5's pending tasks")
    p.add_argument("--w5-runs", type=int, default=W5_RUNS, help="W5's rounds")
    args = p.parse_args()
    W5_BACKLOG, W5_RUNS = args.w5_backlog, args.w5_runs
    with tempfile.TemporaryDirectory(prefix="atp-bench-") as tmp:
        result = WORKLOADS[args.workload](Path(tmp), args)
        if args.show_logs:
            for log in Path(tmp).glob("*.log"):
                sys.stderr.write(f"--- {log.name}\n{log.read_text()[-3000:]}\n")
    print(json.dumps(_clean(result)))


if __name__ == "__main__":
    main()

__all__ = ["count_records", "median"]
