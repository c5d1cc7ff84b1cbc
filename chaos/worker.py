"""A recording worker process built on the SDK's AsyncClient, over either transport, writing
every step with its result to an append-only log (chaos/history.py), Ack refusals included.

`python -m chaos.worker --addr HOST:PORT --topics a,b --log PATH --name w1 [--transport
stream|unary]`. The payload says what to do: `{"ms": 120, "mode": "ok" | "fail_once" |
"fail_always" | "dead"}`. An Ack carries the lease token as its result, so a workflow step's
output names the execution its run counted (chaos/runcheck.py).

- `unary`: fetch loops of Retrieve (long poll), ExtendLease every third of the lease while the
  handler runs, Ack/Nack.
- `stream`: one Work stream (`AsyncClient.open_work`) with `--concurrency` handler slots and
  `--prefetch` more deliveries held; settles on the stream; on a reconnect it adopts what it
  holds with HOLD (logged as an extend: the renewed deadline).

Both start a delivery only by the SDK Worker's rule: its lease deadline at least
DEADLINE_MARGIN_MS ahead (`deadline_refusal`) and, on the stream, a ping sent within FRESH_S
answered (`WorkStream.start_refusal`, the one the SDK Worker calls); a refused one is logged as
`skip` and never started (stream: RELEASEd; unary: left to its lease). Unlike the SDK's Worker
it keeps trying to settle after its lease ran out (for up to --settle-for seconds) so that a
stale Ack really reaches the server and is seen refused. SIGTERM: stop fetching, finish what is
in flight, exit 0. Uses only the SDK (appliance.AsyncClient, its work stream) and its errors.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import json
import random
import signal
import sys
from pathlib import Path
from typing import Any

from appliance import AsyncClient
from appliance.client import RpcFailed
from appliance.client.work import Delivery, Settle, SettleKind, WorkStream, deadline_refusal
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


def start_refusal(deadline_ms: int, now_ms: float) -> str | None:
    """Why a unary delivery must not start now (None: it may), by the SDK Worker's rule:
    `now_ms` is the server's time as estimated here (a stream asks its WorkStream)."""
    return deadline_refusal(deadline_ms, now_ms)


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
        # The reply's deadline is on the Redis clock, which is this host's wall clock.
        refusal = start_refusal(task.lease_deadline_ms, now_ms())
        if refusal is not None:
            log_skip(self.log, self.name, task, task.lease_deadline_ms, refusal)
            return  # unary: left to its lease (Nack would count an attempt)
        log_start(self.log, self.name, task, self.lease_s, task.lease_deadline_ms, "unary")
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
                await self.client.ack(task, result=task.lease_token)
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
        log_settle(self.log, task, outcome, sent, result, **fields)
        return result


def log_start(
    log: LogWriter, name: str, task: Task, lease_s: float, deadline_ms: int, transport: str
) -> None:
    log.write(
        "start",
        worker=name,
        task=task.id,
        topic=task.topic,
        token=task.lease_token,
        attempt=task.attempt,
        max_retries=task.max_retries,
        due_ms=task.execute_time_ms,
        lease_ms=round(lease_s * 1000),
        deadline_ms=deadline_ms,
        first_deadline_ms=task.lease_deadline_ms,
        start_ms=now_ms(),
        transport=transport,
    )


def log_settle(
    log: LogWriter, task: Task, outcome: str, sent_ms: int, result: str, **fields: Any
) -> None:
    """The "call" record of an Ack or Nack (unary or on the stream) the checker matches."""
    log.write(
        "call",
        token=task.lease_token,
        kind="ack" if outcome == "ack" else "nack",
        sent_ms=sent_ms,
        done_ms=now_ms(),
        result=result,
        dead_letter=outcome == "dead_letter",
        **fields,
    )


def log_skip(log: LogWriter, name: str, task: Task, deadline_ms: int, why: str) -> None:
    log.write(
        "skip",
        worker=name,
        task=task.id,
        token=task.lease_token,
        attempt=task.attempt,
        deadline_ms=deadline_ms,
        t_ms=now_ms(),
        why=why,
    )


@dataclasses.dataclass(eq=False, slots=True)
class Held:
    """A delivery the stream worker holds: received, maybe running, not settled."""

    task: Task
    deadline_ms: int  # as delivered, or as renewed by a HOLD on a later stream
    started: bool = False
    settling: bool = False
    holding: bool = False  # being adopted on a new stream: not startable yet


class StreamWorker:
    """One Work stream at a time; `slots` handlers at once and `prefetch` more held."""

    def __init__(self, client: AsyncClient, log: LogWriter, ns: argparse.Namespace) -> None:
        self.client = client
        self.log = log
        self.name: str = ns.name
        self.topics = [t for t in ns.topics.split(",") if t]
        self.lease_ms: int = ns.lease_ms
        self.free: int = ns.concurrency
        self.credits: int = ns.concurrency + ns.prefetch
        self.settle_for_s: float = ns.settle_for
        self.stop = asyncio.Event()
        self.stream: WorkStream | None = None
        self.stream_up = asyncio.Event()
        self.held: dict[str, Held] = {}  # lease token -> held
        self.ready: collections.deque[Held] = collections.deque()
        self.jobs: set[asyncio.Task[None]] = set()

    async def connect(self) -> None:
        pause = 0.05
        while not self.stop.is_set():
            try:
                stream = await self.client.open_work(
                    {t: 0 for t in self.topics}, self.credits, self.lease_ms, self.name
                )
            except AtpError as exc:
                self.log.write("stream", worker=self.name, t_ms=now_ms(), error=str(exc))
                await asyncio.sleep(pause * random.uniform(0.5, 1.0))
                pause = min(pause * 2, 1.0)
                continue
            pause = 0.05
            self.log.write("stream", worker=self.name, t_ms=now_ms(), held=len(self.held))
            await self.serve(stream)

    async def serve(self, stream: WorkStream) -> None:
        self.stream = stream
        self.stream_up.set()
        adopting = asyncio.create_task(self.adopt(stream))
        reason = "stopped"
        try:
            async for event in stream.events():
                if isinstance(event, Delivery):
                    self.log.write(
                        "delivered",
                        worker=self.name,
                        t_ms=now_ms(),
                        tokens=[t.lease_token for t in event.tasks],
                        tasks=[t.id for t in event.tasks],
                    )
                    for task in event.tasks:
                        held = Held(task, task.lease_deadline_ms)
                        self.held[task.lease_token] = held
                        self.ready.append(held)
                self.dispatch()
        except AtpError as exc:
            reason = str(exc)
        finally:
            self.stream_up.clear()
            self.stream = None
            adopting.cancel()
            await stream.close(clean=False)
            self.log.write("stream_end", worker=self.name, t_ms=now_ms(), reason=reason)

    async def adopt(self, stream: WorkStream) -> None:
        """HOLD what is held and not settling, as the SDK Worker does after a reconnect."""
        todo = [h for h in self.held.values() if not h.settling]
        for h in todo:
            h.holding = True
        sent = now_ms()
        answers = await asyncio.gather(
            *(stream.settle(Settle(SettleKind.HOLD, h.task)) for h in todo)
        )
        for h, answer in zip(todo, answers, strict=True):
            h.holding = False
            result = result_of(answer.error)
            if answer.error is None:
                h.deadline_ms = answer.lease_deadline_ms
            elif final(result):  # refused: the lease is gone
                self.held.pop(h.task.lease_token, None)
                if h in self.ready:
                    self.ready.remove(h)
            self.log.write(
                "call",
                token=h.task.lease_token,
                kind="extend",
                via="hold",
                sent_ms=sent,
                done_ms=now_ms(),
                result=result,
                deadline_ms=answer.lease_deadline_ms,
            )
        self.dispatch()

    def dispatch(self) -> None:
        """Start what is ready while slots are free, by the SDK Worker's start rule."""
        stream = self.stream
        while self.ready and self.free > 0 and not self.stop.is_set():
            held = self.ready[0]
            if held.holding or stream is None:
                return
            refusal = stream.start_refusal(held.deadline_ms)
            if refusal == "stale stream":
                return  # wait for the server's next message (the SDK Worker's rule)
            self.ready.popleft()
            if refusal is not None:
                log_skip(self.log, self.name, held.task, held.deadline_ms, refusal)
                self._spawn(self.settle(held, "release"))
                continue
            held.started = True
            self.free -= 1
            self._spawn(self.execute(held))

    def _spawn(self, coro: Any) -> None:
        job = asyncio.create_task(coro)
        self.jobs.add(job)
        job.add_done_callback(self.jobs.discard)

    async def execute(self, held: Held) -> None:
        task = held.task
        spec = _spec(task.payload)
        log_start(self.log, self.name, task, self.lease_ms / 1000, held.deadline_ms, "stream")
        try:
            await asyncio.sleep(float(spec.get("ms", 20)) / 1000)
        finally:
            self.free += 1
        outcome = _outcome(str(spec.get("mode", "ok")), task.attempt)
        self.log.write("end", token=task.lease_token, end_ms=now_ms(), outcome=outcome)
        self.dispatch()
        await self.settle(held, outcome)

    async def settle(self, held: Held, outcome: str) -> None:
        """Settle on the stream; across reconnects on the next one, for settle_for seconds
        (past the lease on purpose: a stale token must be refused by the server)."""
        held.settling = True
        task = held.task
        give_up = asyncio.get_running_loop().time() + self.settle_for_s
        kind = {"ack": SettleKind.ACK, "release": SettleKind.RELEASE}.get(outcome, SettleKind.NACK)
        settle = Settle(
            kind,
            task,
            f"chaos: {outcome}",
            dead_letter=outcome == "dead_letter",
            result=task.lease_token if kind == SettleKind.ACK else "",
        )
        while True:
            stream = self.stream
            if stream is None:
                left = give_up - asyncio.get_running_loop().time()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stream_up.wait(), max(left, 0.001))
                if self.stream is None:
                    break
                continue
            sent = now_ms()
            answer = await stream.settle(settle)
            result = result_of(answer.error)
            if outcome != "release":  # a release of an unstarted delivery is no execution's
                log_settle(
                    self.log,
                    task,
                    outcome,
                    sent,
                    result,
                    dead_lettered=answer.dead_lettered,
                    next_due_ms=answer.next_execute_time_ms,
                )
            if final(result) or asyncio.get_running_loop().time() > give_up:
                break
            await asyncio.sleep(0.1)
        self.held.pop(task.lease_token, None)

    async def finish(self, within_s: float) -> None:
        """Goodbye, give back what has not started, let running handlers end, close."""
        stream = self.stream
        if stream is not None:
            stream.goodbye()
        while self.ready:
            self._spawn(self.settle(self.ready.popleft(), "release"))
        if self.jobs:
            await asyncio.wait(set(self.jobs), timeout=within_s)
        stream = self.stream
        if stream is not None:
            await stream.close(clean=True)


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
    if ns.transport == "stream":
        await run_stream(ns)
        return
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


async def run_stream(ns: argparse.Namespace) -> None:
    with LogWriter(Path(ns.log)) as log:
        async with AsyncClient(ns.addr, timeout=ns.call_timeout) as client:
            worker = StreamWorker(client, log, ns)
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGTERM, worker.stop.set)
            loop.add_signal_handler(signal.SIGINT, worker.stop.set)
            connection = asyncio.create_task(worker.connect())
            log.write("ready", worker=ns.name, t_ms=now_ms())
            await worker.stop.wait()
            await worker.finish(ns.call_timeout + ns.settle_for)
            connection.cancel()
            await asyncio.gather(connection, return_exceptions=True)


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
    p.add_argument("--transport", choices=("unary", "stream"), default="unary")
    p.add_argument(
        "--concurrency", type=int, default=4, help="unary: fetch loops per topic; stream: slots"
    )
    p.add_argument("--prefetch", type=int, default=3, help="stream: deliveries held beyond")
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
