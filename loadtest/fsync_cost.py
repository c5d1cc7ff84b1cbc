"""What `--redis-fsync always` costs: unary Enqueue throughput of `atp --role=all` (the embedded
Redis on a throwaway data dir) with `everysec` and with `always`, on loopback, public gRPC only.

    python loadtest/fsync_cost.py [--tasks N] [--concurrency C]

`compare()` is the hook for `just bench`: {"everysec": enqueues/s, "always": enqueues/s}.
Bounded: a fixed task count per mode and a time limit; everything started is ended by pid.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc

from appliance.proto import queue_pb2 as pb
from appliance.proto import queue_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parents[1]
LIMIT_S = 120.0
MODES = ("everysec", "always")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ready(http_addr: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{http_addr}/readyz", timeout=2) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


@contextlib.contextmanager
def appliance(fsync: str) -> Iterator[str]:
    """`atp --role=all --redis-fsync <fsync>` on a throwaway data dir; yields the gRPC address."""
    data = tempfile.mkdtemp(prefix="atp-fsync-")
    grpc_addr, http_addr = f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"
    argv = [
        *(sys.executable, "-m", "appliance", "--role=all", "--workers=1"),
        *(f"--redis-fsync={fsync}", f"--data-dir={data}", "--log-level=warning"),
        *(f"--grpc-addr={grpc_addr}", f"--http-addr={http_addr}"),
    ]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not _ready(http_addr):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"atp --role=all --redis-fsync={fsync} did not get ready")
            time.sleep(0.1)
        yield grpc_addr
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        shutil.rmtree(data, ignore_errors=True)


async def enqueue_rate(address: str, tasks: int, concurrency: int) -> float:
    """Unary Enqueue calls per second, `concurrency` callers, 100-byte payloads."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.DelayQueueServiceStub(channel)
        await stub.Enqueue(pb.EnqueueRequest(topic="warmup", payload="x"))

        async def caller(k: int) -> None:
            for i in range(k, tasks, concurrency):
                await stub.Enqueue(pb.EnqueueRequest(topic="fsync", payload=f"{i:0100d}"))

        start = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(caller(k) for k in range(concurrency))), LIMIT_S)
        return tasks / (time.perf_counter() - start)


def measure(fsync: str, tasks: int = 3000, concurrency: int = 32) -> float:
    with appliance(fsync) as address:
        return asyncio.run(enqueue_rate(address, tasks, concurrency))


def compare(tasks: int = 3000, concurrency: int = 32) -> dict[str, float]:
    return {mode: measure(mode, tasks, concurrency) for mode in MODES}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", type=int, default=3000)
    p.add_argument("--concurrency", type=int, default=32)
    ns = p.parse_args()
    result = compare(ns.tasks, ns.concurrency)
    result["always/everysec"] = result["always"] / result["everysec"]
    print(json.dumps({k: round(v, 2) for k, v in result.items()}))


if __name__ == "__main__":
    main()
