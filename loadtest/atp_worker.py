"""The atp "worker process" of the benchmarks: a handler that appends a start record
(loadtest/harness.py) per task, run either by the SDK's Worker or by bare gRPC consumers
(long-poll Retrieve of a batch, run the handlers, one AckBatch).

    python loadtest/atp_worker.py --address HOST:PORT --topic T --records FILE
        [--mode sdk|grpc] [--handler incr|noop|sleep] [--concurrency N]

Handlers (SDK mode):
  incr   a plain synchronous `def` that records its start, then does one Redis INCR on a
         counter key (what a user writes; the fair W1 of every system does the same)
  noop   an `async def` that only records its start (the do-nothing row)
  mark   incr, its record's due field the task's payload (W7: a chain's run and step)
  sleep  a synchronous `def` that records its start (due = the task's number, its payload),
         sleeps --sleep-s, then records its finish in --finish-records (W3)

Uses only the public API (the SDK, the generated stubs of proto/queue.proto) and redis-py for
the handler's own INCR; runs until SIGTERM/SIGINT or --max-seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import grpc
import redis
from harness import COUNTER_KEY, Recorder

from appliance import Worker
from appliance.model import Task
from appliance.proto import queue_pb2 as pb
from appliance.proto import queue_pb2_grpc as pb_grpc


def incr_handler(
    args: argparse.Namespace, recorder: Recorder, mark: Callable[[Task], float] | None = None
) -> Callable[[Task], None]:
    """Record the start (marked with the due time, or `mark(task)`), then one INCR."""
    counter = redis.Redis.from_url(args.redis_url, max_connections=args.concurrency + 8)
    marked = mark or (lambda task: float(task.execute_time_ms))

    def incr(task: Task) -> None:
        recorder.record(marked(task))
        counter.incr(COUNTER_KEY)

    return incr


def sleep_handler(args: argparse.Namespace, recorder: Recorder) -> Callable[[Task], None]:
    finished = Recorder(args.finish_records)

    def sleep(task: Task) -> None:
        number = float(task.payload)
        recorder.record(number)
        time.sleep(args.sleep_s)
        finished.record(number)

    return sleep


def noop_handler(recorder: Recorder) -> Callable[[Task], Any]:
    async def noop(task: Task) -> None:
        recorder.record(float(task.execute_time_ms))

    return noop


def make_handler(kind: str, args: argparse.Namespace, recorder: Recorder) -> Callable[[Task], Any]:
    if kind == "incr":
        return incr_handler(args, recorder)
    if kind == "sleep":
        return sleep_handler(args, recorder)
    if kind == "mark":  # W7's step: its payload is the chain's run and step (harness.mark)
        return incr_handler(args, recorder, lambda task: float(task.payload))
    return noop_handler(recorder)


def run_sdk(args: argparse.Namespace, recorder: Recorder) -> None:
    extra: dict[str, Any] = {}
    if args.batch:  # the stream's window beyond the slots (the SDK has no batch size)
        extra["prefetch"] = args.batch
    if args.lease_s:
        extra["visibility_timeout"] = args.lease_s
    worker = Worker(args.address, concurrency=args.concurrency, drain_timeout=2.0, **extra)
    handler = make_handler(args.handler, args, recorder)
    for topic in args.topic.split(","):  # several: the cluster bench spreads W1 over masters
        worker.register(topic, handler)
    if args.background_topic:  # W6's steady load: the same handler, its own record file
        background = Recorder(args.background_records)
        worker.register(args.background_topic, make_handler(args.handler, args, background))
    signal.signal(signal.SIGALRM, lambda *_: worker.stop())
    signal.alarm(int(args.max_seconds))
    worker.run()


async def consume(
    stub: pb_grpc.DelayQueueServiceStub,
    args: argparse.Namespace,
    recorder: Recorder,
    stop: asyncio.Event,
) -> None:
    """One consumer: Retrieve (long-poll), handle each task, AckBatch them all."""
    request = pb.RetrieveRequest(topic=args.topic, batch_size=args.batch, wait_ms=args.wait_ms)
    while not stop.is_set():
        try:
            reply = await stub.Retrieve(request, timeout=args.wait_ms / 1000 + 10)
        except grpc.aio.AioRpcError as exc:
            if stop.is_set():
                return
            print(f"retrieve: {exc.code().name}", file=sys.stderr)
            await asyncio.sleep(0.1)
            continue
        if not reply.tasks:
            continue
        for task in reply.tasks:
            recorder.record(float(task.execute_time_ms))
        acks = [pb.AckRequest(id=t.id, lease_token=t.lease_token) for t in reply.tasks]
        await stub.AckBatch(pb.AckBatchRequest(acks=acks), timeout=30)


async def run_grpc(args: argparse.Namespace, recorder: Recorder) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.call_later(args.max_seconds, stop.set)
    async with grpc.aio.insecure_channel(args.address) as channel:
        stub = pb_grpc.DelayQueueServiceStub(channel)
        consumers = [
            asyncio.create_task(consume(stub, args, recorder, stop)) for _ in range(args.consumers)
        ]
        await stop.wait()
        await asyncio.sleep(0.1)  # let a just-started long poll reach the server before the cut
        for c in consumers:
            c.cancel()
        await asyncio.gather(*consumers, return_exceptions=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--address", required=True)
    p.add_argument("--topic", required=True, help="sdk: a comma list serves several")
    p.add_argument("--records", required=True)
    p.add_argument("--mode", choices=("sdk", "grpc"), default="sdk")
    p.add_argument("--handler", choices=("incr", "noop", "sleep", "mark"), default="noop")
    p.add_argument("--redis-url", default="", help="incr: the Redis of the counter key")
    p.add_argument("--concurrency", type=int, default=1000, help="SDK: tasks in flight")
    p.add_argument(
        "--batch",
        type=int,
        default=0,
        help="grpc: tasks per Retrieve; SDK: the stream's prefetch (0 = default)",
    )
    p.add_argument("--lease-s", type=float, default=0.0, help="SDK visibility_timeout (0: default)")
    p.add_argument("--sleep-s", type=float, default=3.0, help="sleep: seconds per task")
    p.add_argument("--finish-records", default="", help="sleep: where finishes are recorded")
    p.add_argument("--background-topic", default="", help="also serve this topic (noop)")
    p.add_argument("--background-records", default="")
    p.add_argument("--consumers", type=int, default=4, help="grpc: concurrent consumers")
    p.add_argument("--wait-ms", type=int, default=5000, help="grpc: long-poll wait per Retrieve")
    p.add_argument("--max-seconds", type=float, default=300.0)
    args = p.parse_args()
    if args.mode == "grpc" and not args.batch:
        args.batch = 250
    recorder = Recorder(args.records)
    try:
        if args.mode == "sdk":
            run_sdk(args, recorder)
        else:
            asyncio.run(run_grpc(args, recorder))
    finally:
        recorder.close()


if __name__ == "__main__":
    main()
