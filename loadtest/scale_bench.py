"""What sharding and replication do to atp's throughput, for `just bench` and docs/SCALING.md:

    python loadtest/scale_bench.py cluster [--short]      # 1 Redis vs a 3-master Redis Cluster
    python loadtest/scale_bench.py durability [--short]   # --durability local vs replicated
    python loadtest/scale_bench.py costs [--short]        # CPU per task of each process

cluster: one `atp --role=server` against one redis-server, then against a Redis Cluster of 3
masters (no replicas), the same load on both: EnqueueBatch of 1,000 (4 in flight) and W1 (the
SDK Worker at concurrency 100 with the INCR handler, whose counter is a separate redis-server
in both), the tasks spread round-robin over 12 topics, 4 per master (a topic lives on one
master: one topic cannot use more than one).
durability: one server against a master with one replica (--replicaof), with `local` and with
`replicated` (WAIT 1 after each script call), --redis-max-connections 256 in both: unary
Enqueue calls/s (2 client processes, 64 in flight each), EnqueueBatch tasks/s, Retrieve 500 +
AckBatch tasks/s, the median latency of 300 Enqueue calls made one at a time, and what
WAIT 1 adds to one write's round trip at the Redis level (SET+WAIT vs SET+PING pipelines).

costs: CPU time (user + system, /proc) per task that each process spends, one server against
one Redis: the server and Redis during EnqueueBatch, unary Enqueue and Retrieve+AckBatch, and
the server, Redis and the SDK Worker process during W1's drain (concurrency 100, INCR handler on
a separate Redis): the capacity model of docs/SCALING.md (tasks/s per core = 1e6 / us per task).

Prints one JSON object. Public gRPC API and SDK only; bounded; every process ended by its id.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import redis
from atp_driver import (
    BATCH,
    PHASE_LIMIT_S,
    appliance,
    drain,
    enqueue,
    server_pid,
    unary_rate,
    with_stub,
    worker,
)
from harness import (
    RedisCluster,
    RedisServer,
    cpu_seconds,
    drain_result,
    median,
    read_records,
    redis_cluster,
    redis_server,
    replicated_redis,
    wait_for_records,
)
from redis.crc import key_slot

from appliance.proto import queue_pb2 as pb

MASTERS = 3
TOPICS_PER_MASTER = 4
SIZES = {  # full run, --short
    "w1_tasks": (10_000, 1_000),
    "batch_tasks": (50_000, 5_000),
    "unary_calls": (10_000, 1_000),
}
W1_CONCURRENCY = 100
# Both modes get a pool above the 128 calls in flight: `replicated` holds each connection for
# a replica round trip, and 64 (the default) then runs out ("Too many connections").
POOL = ["--redis-max-connections=256"]


def size(name: str, short: bool) -> int:
    full, small = SIZES[name]
    return small if short else full


def slot(topic: str) -> int:
    """The Redis Cluster slot of a topic's keys (hash tag `{topic}`)."""
    return int(key_slot(("{" + topic + "}").encode()))


def spread_topics(masters: int = MASTERS, per_master: int = TOPICS_PER_MASTER) -> list[str]:
    """Topic names whose slots fall `per_master` into each master's share of a fresh cluster
    (`--cluster create` gives master i the i-th equal share of the 16384 slots)."""
    shares: dict[int, list[str]] = {i: [] for i in range(masters)}
    n = 0
    while any(len(names) < per_master for names in shares.values()):
        name = f"scale-{n}"
        share = shares[slot(name) * masters // 16384]
        if len(share) < per_master:
            share.append(name)
        n += 1
    return [name for names in shares.values() for name in names]


def spread(topics: list[str], count: int, payload: str = "") -> list[pb.EnqueueRequest]:
    return [pb.EnqueueRequest(topic=topics[i % len(topics)], payload=payload) for i in range(count)]


def w1_and_batch(redis: RedisServer | RedisCluster, tmp: Path, short: bool) -> dict[str, Any]:
    """EnqueueBatch tasks/s, then W1's drain, on one server against `redis`."""
    topics = spread_topics()
    with redis_server() as counter, appliance(redis, 1, tmp / "server.log") as address:
        batch_per_s = enqueue(address, spread(topics, size("batch_tasks", short), "x" * 100))
        asyncio.run(with_stub(address, lambda s: clear(s, topics)))
        tasks = size("w1_tasks", short)
        rate_in = enqueue(address, spread(topics, tasks))
        records = tmp / f"w1-{id(redis)}.rec"
        extra = [
            "--handler=incr",
            f"--concurrency={W1_CONCURRENCY}",
            f"--redis-url={counter.url}",
        ]
        with worker(address, ",".join(topics), records, "sdk", *extra):
            done = wait_for_records(records, tasks, PHASE_LIMIT_S)
        result = drain_result(rate_in, records, done)
    return {"batch_per_s": batch_per_s, "w1_per_s": result.get("process_per_s"), "w1": result}


async def clear(stub: Any, topics: list[str]) -> None:
    """Drain what the EnqueueBatch phase left (so W1 starts from empty topics)."""
    for topic in topics:
        while True:
            reply = await stub.Retrieve(
                pb.RetrieveRequest(topic=topic, batch_size=BATCH, wait_ms=0), timeout=30
            )
            if not reply.tasks:
                break
            acks = [pb.AckRequest(id=t.id, lease_token=t.lease_token) for t in reply.tasks]
            await stub.AckBatch(pb.AckBatchRequest(acks=acks), timeout=30)


def cluster(tmp: Path, short: bool) -> dict[str, Any]:
    with redis_server() as single:
        one = w1_and_batch(single, tmp, short)
    with redis_cluster(MASTERS) as shards:
        three = w1_and_batch(shards, tmp, short)
    return {
        "masters_1": one,
        "masters_3": three,
        "topics": len(spread_topics()),
        "w1_concurrency": W1_CONCURRENCY,
    }


def wait_cost_us(port: int, rounds: int = 2000) -> float:
    """What WAIT 1 adds to a write's round trip, in µs: the median of SET + WAIT 1 minus the
    median of SET + PING, one pipeline each, interleaved, on one connection to the master."""
    client = redis.Redis(port=port)
    took: dict[str, list[float]] = {"WAIT": [], "PING": []}
    try:
        for i in range(rounds):
            for last in ("WAIT", "PING"):
                pipe = client.pipeline(transaction=False)
                pipe.set(f"wait-cost-{i % 100}", i)
                pipe.execute_command(*((last, 1, 1000) if last == "WAIT" else (last,)))
                start = time.perf_counter()
                pipe.execute()
                took[last].append((time.perf_counter() - start) * 1e6)
    finally:
        client.close()
    return median(took["WAIT"]) - median(took["PING"])


def durability(tmp: Path, short: bool) -> dict[str, Any]:
    """Each mode on a fresh master and replica; the full run in the order local, replicated,
    replicated, local (each mode's figures the mean of its two rounds), so a trend of the
    shared machine falls on both."""
    order = ("local", "replicated") if short else ("local", "replicated", "replicated", "local")
    rounds: dict[str, list[dict[str, float]]] = {"local": [], "replicated": []}
    out: dict[str, Any] = {}
    for n, mode in enumerate(order):
        with (
            replicated_redis() as master,
            appliance(
                master, 1, tmp / f"server-{n}.log", extra=[*POOL, f"--durability={mode}"]
            ) as address,
        ):
            rounds[mode].append(rates(address, short))
            if mode == "replicated" and "wait_us" not in out:
                out["wait_us"] = wait_cost_us(master.port, 200 if short else 2000)
    for mode, figures in rounds.items():
        out[mode] = {k: sum(f[k] for f in figures) / len(figures) for k in figures[0]}
    return out


async def one_at_a_time(stub: Any, calls: int) -> float:
    """The median latency (ms) of Enqueue calls made one at a time."""
    took = []
    for i in range(calls):
        start = time.perf_counter()
        await stub.Enqueue(pb.EnqueueRequest(topic="seq", payload=f"{i}"), timeout=30)
        took.append((time.perf_counter() - start) * 1000)
    return median(took)


def rates(address: str, short: bool) -> dict[str, float]:
    tasks = size("batch_tasks", short)
    sequential = asyncio.run(with_stub(address, lambda s: one_at_a_time(s, 300)))
    unary = unary_rate(address, 2, size("unary_calls", short))
    batch = enqueue(address, spread(["dur"], tasks, "x" * 100))
    got = asyncio.run(with_stub(address, lambda s: drain(s, "dur", tasks)))
    return {
        "sequential_ms": sequential,
        "unary_per_s": unary,
        "batch_per_s": batch,
        "retrieve_ack_per_s": got["per_s"],
    }


def us_per_task(pids: dict[str, int], tasks: int, phase: Callable[[], Any]) -> dict[str, float]:
    """Run `phase`; each process's CPU microseconds per task meanwhile."""
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    phase()
    return {name: (cpu_seconds(pid) - before[name]) * 1e6 / tasks for name, pid in pids.items()}


def costs(tmp: Path, short: bool) -> dict[str, Any]:
    tasks, calls, w1_tasks = (size(k, short) for k in ("batch_tasks", "unary_calls", "w1_tasks"))
    out: dict[str, Any] = {}
    with (
        redis_server() as redis,
        redis_server() as counter,
        appliance(redis, 1, tmp / "server.log") as address,
    ):
        assert redis.proc is not None
        pids = {"server": server_pid(address), "redis": redis.proc.pid}
        reqs = spread(["cost"], tasks, "x" * 100)
        out["enqueue_batch"] = us_per_task(pids, tasks, lambda: enqueue(address, reqs))
        out["retrieve_ack"] = us_per_task(
            pids, tasks, lambda: asyncio.run(with_stub(address, lambda s: drain(s, "cost", tasks)))
        )
        out["enqueue_unary"] = us_per_task(pids, calls, lambda: unary_rate(address, 2, calls))
        enqueue(address, spread(["w1"], w1_tasks))
        records = tmp / "costs-w1.rec"
        extra = ["--handler=incr", f"--concurrency={W1_CONCURRENCY}", f"--redis-url={counter.url}"]
        with worker(address, "w1", records, "sdk", *extra) as proc:
            wait_for_records(records, 1, PHASE_LIMIT_S)  # started: its boot not counted
            started = len(read_records(records))
            out["w1_drain"] = us_per_task(
                {**pids, "worker": proc.pid},
                w1_tasks - started,
                lambda: wait_for_records(records, w1_tasks, PHASE_LIMIT_S),
            )
    return out


WORKLOADS: dict[str, Callable[[Path, bool], dict[str, Any]]] = {
    "cluster": cluster,
    "durability": durability,
    "costs": costs,
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("workload", choices=sorted(WORKLOADS))
    p.add_argument("--short", action="store_true", help="small sizes: a smoke test")
    args = p.parse_args()
    run = WORKLOADS[args.workload]
    with tempfile.TemporaryDirectory(prefix="atp-scale-") as tmp:
        print(json.dumps(run(Path(tmp), args.short)))


if __name__ == "__main__":
    main()
