"""A recording worker process built on the SDK's AsyncClient: Retrieve, run, Ack/Nack, and write
every step with its result to an append-only log (chaos/history.py), Ack refusals included.

`python -m chaos.worker --addr HOST:PORT --topics a,b --log PATH --name w1`. The payload says
what to do: `{"ms": 120, "mode": "ok" | "fail_once" | "fail_always" | "dead"}`. Unlike the
SDK's Worker it keeps trying to settle after its lease ran out (for up to --settle-for seconds)
so that a stale Ack really reaches the server and is seen refused. SIGTERM: stop fetching,
finish what is in flight, exit 0. Uses only the SDK (appliance.AsyncClient) and its errors.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import signal
import sys
from pathlib import Path
from typing import Any

from appliance import AsyncClient
from appliance.client import RpcFailed
from appliance.errors import AtpError, NotFound, StaleLease, WrongState
from appliance.model import Task
from chaos.history import NOT_FOUND, OK, REFUSED, STALE, WRONG_STATE, LogWriter, now_ms


def result_of(exc: AtpError | None) -> str:
    if exc is None:
        return OK
    if isinstance(exc, StaleLease):
        return STALE
    if isinstance(exc, NotFound):
        return NOT_FOUND
    if isinstance(exc, WrongState):
        return WRONG_STATE
    status = exc.status if isinstance(exc, RpcFailed) else type(exc).__name__
    return f"error:{status}"


def final(result: str) -> bool:
    """The server answered (yes or no): retrying would not change the outcome."""
    return not result.startswith("error:")


class RecordingWorker:
    def __init__(self, client: AsyncClient, log: LogWriter, ns: argparse.Namespace) -> None:
        self.client = client
        self.log = log
        self.name: str = ns.name
        self.lease_s: float = ns.lease_ms / 1000
        self.wait_s: float = ns.wait_ms / 1000
        self.batch: int = ns.batch
        self.settle_for_s: float = ns.settle_for
        self.stop = asyncio.Event()

    async def fetch_loop(self, topic: str) -> None:
        pause = 0.05
        while not self.stop.is_set():
            try:
                tasks = await self.client.retrieve(topic, self.batch, self.lease_s, self.wait_s)
                pause = 0.05
            except AtpError:
                await asyncio.sleep(pause * random.uniform(0.5, 1.0))
                pause = min(pause * 2, 1.0)
                continue
            await asyncio.gather(*(self.execute(t) for t in tasks))

    async def execute(self, task: Task) -> None:
        spec = _spec(task.payload)
        self.log.write(
            "start",
            worker=self.name,
            task=task.id,
            topic=task.topic,
            token=task.lease_token,
            attempt=task.attempt,
            max_retries=task.max_retries,
            due_ms=task.execute_time_ms,
            lease_ms=round(self.lease_s * 1000),
            deadline_ms=task.lease_deadline_ms,
            start_ms=now_ms(),
        )
        heartbeat = asyncio.create_task(self.heartbeat(task))
        try:
            await asyncio.sleep(float(spec.get("ms", 20)) / 1000)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
        outcome = _outcome(str(spec.get("mode", "ok")), task.attempt)
        self.log.write("end", token=task.lease_token, end_ms=now_ms(), outcome=outcome)
        await self.settle(task, outcome)

    async def heartbeat(self, task: Task) -> None:
        """ExtendLease every third of the lease while the handler runs (as the SDK's Worker),
        until the server refuses one (the lease is gone)."""
        result = OK
        while result not in REFUSED:
            await asyncio.sleep(self.lease_s / 3)
            sent = now_ms()
            deadline = 0
            try:
                deadline = await self.client.extend_lease(task, self.lease_s)
                result = OK
            except AtpError as exc:
                result = result_of(exc)
            self.log.write(
                "call",
                token=task.lease_token,
                kind="extend",
                sent_ms=sent,
                done_ms=now_ms(),
                result=result,
                deadline_ms=deadline,
            )

    async def settle(self, task: Task, outcome: str) -> None:
        """Ack or Nack, retried on transport errors for settle_for seconds (past the lease on
        purpose: a stale token must be refused by the server, not spared by the client)."""
        give_up = asyncio.get_running_loop().time() + self.settle_for_s
        pause = 0.1
        while True:
            result = await self._settle_once(task, outcome)
            if final(result) or asyncio.get_running_loop().time() > give_up:
                return
            await asyncio.sleep(pause)
            pause = min(pause * 2, 1.0)

    async def _settle_once(self, task: Task, outcome: str) -> str:
        sent = now_ms()
        fields: dict[str, Any] = {}
        try:
            if outcome == "ack":
                await self.client.ack(task)
            else:
                dead = outcome == "dead_letter"
                reply = await self.client.nack(task, f"chaos: {outcome}", dead_letter=dead)
                fields = {
                    "dead_lettered": reply.dead_lettered,
                    "next_due_ms": reply.next_execute_time_ms,
                }
            result = OK
        except AtpError as exc:
            result = result_of(exc)
        self.log.write(
            "call",
            token=task.lease_token,
            kind="ack" if outcome == "ack" else "nack",
            sent_ms=sent,
            done_ms=now_ms(),
            result=result,
            dead_letter=outcome == "dead_letter",
            **fields,
        )
        return result


def _spec(payload: str) -> dict[str, Any]:
    try:
        spec = json.loads(payload)
    except ValueError:
        return {}
    return spec if isinstance(spec, dict) else {}


def _outcome(mode: str, attempt: int) -> str:
    if mode == "fail_always" or (mode == "fail_once" and attempt == 1):
        return "nack"
    if mode == "dead":
        return "dead_letter"
    return "ack"


async def run(ns: argparse.Namespace) -> None:
    topics = [t for t in ns.topics.split(",") if t]
    with LogWriter(Path(ns.log)) as log:
        async with AsyncClient(ns.addr, timeout=ns.call_timeout) as client:
            worker = RecordingWorker(client, log, ns)
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGTERM, worker.stop.set)
            loop.add_signal_handler(signal.SIGINT, worker.stop.set)
            loops = [
                asyncio.create_task(worker.fetch_loop(topic))
                for topic in topics
                for _ in range(ns.concurrency)
            ]
            log.write("ready", worker=ns.name, t_ms=now_ms())
            await worker.stop.wait()
            await _finish(loops, worker.wait_s + ns.call_timeout + ns.settle_for)


async def _finish(loops: list[asyncio.Task[None]], within_s: float) -> None:
    """Let each loop finish its current Retrieve and tasks (they check the stop event)."""
    _, late = await asyncio.wait(loops, timeout=within_s)
    for task in late:
        task.cancel()
    await asyncio.gather(*late, return_exceptions=True)


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m chaos.worker")
    p.add_argument("--addr", required=True)
    p.add_argument("--topics", required=True, help="comma list")
    p.add_argument("--log", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--concurrency", type=int, default=4, help="fetch loops per topic")
    p.add_argument("--batch", type=int, default=2, help="tasks per Retrieve")
    p.add_argument("--lease-ms", type=int, default=1500)
    p.add_argument("--wait-ms", type=int, default=1000, help="long-poll wait")
    p.add_argument("--call-timeout", type=float, default=3.0, help="seconds per RPC")
    p.add_argument("--settle-for", type=float, default=15.0, help="retry Ack/Nack this long")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    asyncio.run(run(parse(sys.argv[1:] if argv is None else argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
