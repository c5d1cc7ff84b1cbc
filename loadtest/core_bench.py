"""Quick core figures: enqueue rate (unary and batch), fetch+ack rate and the lateness of
delayed tasks seen by long-polling consumers, against a real `atp --role=server` and a
throwaway redis-server, both on loopback. Uses only the public gRPC API.

    python loadtest/core_bench.py [--servers-url ADDR] [--tasks N]

Bounded: every phase has a fixed task count and a time limit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import grpc

from appliance.proto import queue_pb2 as pb
from appliance.proto import queue_pb2_grpc as pb_grpc

LIMIT_S = 120


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def appliance() -> Iterator[str]:
    """redis-server (AOF everysec) + `atp --role=server`, ended by pid afterwards."""
    tmp = tempfile.mkdtemp(prefix="atp-bench-")
    rport, gport = free_port(), free_port()
    redis = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(rport),
            "--bind",
            "127.0.0.1",
            "--dir",
            tmp,
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
        ],
        stdout=subprocess.DEVNULL,
    )
    time.sleep(0.3)
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "appliance",
            "--role=server",
            f"--grpc-addr=127.0.0.1:{gport}",
            f"--redis-url=redis://127.0.0.1:{rport}/0",
            "--log-level=warning",
        ]
    )
    address = f"127.0.0.1:{gport}"
    try:
        with grpc.insecure_channel(address) as ch:
            grpc.channel_ready_future(ch).result(timeout=20)
        time.sleep(0.5)
        yield address
    finally:
        for proc in (server, redis):
            proc.send_signal(signal.SIGTERM)
            proc.wait(20)
        shutil.rmtree(tmp, ignore_errors=True)


async def enqueue_unary(
    stub: pb_grpc.DelayQueueServiceStub, n: int, concurrency: int = 32
) -> float:
    async def one(k: int) -> None:
        for i in range(k, n, concurrency):
            await stub.Enqueue(pb.EnqueueRequest(topic="unary", payload=f"{i:0100d}"))

    start = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(one(k) for k in range(concurrency))), LIMIT_S)
    return n / (time.perf_counter() - start)


async def enqueue_batch(stub: pb_grpc.DelayQueueServiceStub, n: int, size: int = 500) -> float:
    reqs = [pb.EnqueueRequest(topic="batch", payload=f"{i:0100d}") for i in range(size)]
    start = time.perf_counter()
    for _ in range(n // size):
        await stub.EnqueueBatch(pb.EnqueueBatchRequest(requests=reqs))
    return (n // size * size) / (time.perf_counter() - start)


async def fetch_ack(
    stub: pb_grpc.DelayQueueServiceStub, topic: str, n: int, consumers: int = 4
) -> float:
    done = 0

    async def consume() -> None:
        nonlocal done
        while done < n:
            got = await stub.Retrieve(pb.RetrieveRequest(topic=topic, batch_size=100, wait_ms=200))
            if got.tasks:
                await stub.AckBatch(
                    pb.AckBatchRequest(
                        acks=[pb.AckRequest(id=t.id, lease_token=t.lease_token) for t in got.tasks]
                    )
                )
                done += len(got.tasks)

    start = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(consume() for _ in range(consumers))), LIMIT_S)
    return done / (time.perf_counter() - start)


async def lateness(
    stub: pb_grpc.DelayQueueServiceStub, n: int, spread_ms: int = 5000
) -> dict[str, float]:
    base = int(time.time() * 1000) + 1000
    reqs = [
        pb.EnqueueRequest(topic="late", payload=str(i), execute_at_ms=base + i * spread_ms // n)
        for i in range(n)
    ]
    for i in range(0, n, 500):
        await stub.EnqueueBatch(pb.EnqueueBatchRequest(requests=reqs[i : i + 500]))
    late: list[float] = []
    early = 0

    async def consume() -> None:
        nonlocal early
        while len(late) < n:
            got = await stub.Retrieve(pb.RetrieveRequest(topic="late", batch_size=10, wait_ms=1000))
            now = time.time() * 1000
            for t in got.tasks:
                late.append(now - t.execute_time_ms)
                early += (t.lease_deadline_ms - 30_000) < t.execute_time_ms
            if got.tasks:
                await stub.AckBatch(
                    pb.AckBatchRequest(
                        acks=[pb.AckRequest(id=t.id, lease_token=t.lease_token) for t in got.tasks]
                    )
                )

    await asyncio.wait_for(asyncio.gather(*(consume() for _ in range(4))), LIMIT_S)
    late.sort()
    return {
        "p50": statistics.median(late),
        "p99": late[int(len(late) * 0.99) - 1],
        "max": late[-1],
        "early": early,
    }


async def run(address: str, tasks: int) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.DelayQueueServiceStub(channel)
        unary = await enqueue_unary(stub, tasks // 4)
        batch = await enqueue_batch(stub, tasks)
        drain = await fetch_ack(stub, "batch", tasks)
        lat = await lateness(stub, 1000)
    print(f"| enqueue, unary (32 in flight) | {unary:,.0f} tasks/s |")
    print(f"| enqueue, EnqueueBatch of 500 | {batch:,.0f} tasks/s |")
    print(f"| fetch+ack, 4 consumers, Retrieve 100 + AckBatch | {drain:,.0f} tasks/s |")
    print(
        f"| lateness of 1,000 delayed tasks (4 long-polling consumers) | p50 {lat['p50']:.1f} ms, "
        f"p99 {lat['p99']:.1f} ms, max {lat['max']:.1f} ms, early starts {lat['early']} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--address", help="an atp server to use instead of starting one")
    parser.add_argument("--tasks", type=int, default=20_000)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPUs; python {sys.version.split()[0]}; one server process")
    if args.address:
        asyncio.run(run(args.address, args.tasks))
        return
    with appliance() as address:
        asyncio.run(run(address, args.tasks))


if __name__ == "__main__":
    main()
