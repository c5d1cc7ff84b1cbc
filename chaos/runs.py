"""A bounded run producer: puts the chaos workflows (chaos/flows.py), then starts `--count` runs
at `--rate` per second through the SDK's AsyncClient, each with its own id (StartRun is
idempotent by id, so a failed call is retried with the same id), and records every start the
server acknowledged and every CancelRun and SignalRun with its answer (chaos/history.py).

From --seed, per run: `diamond` (step c ok, fail_once or dead; some runs canceled at a random
moment) or `order` (the signal `paid` sent around its deadline, before or after it by up to
--race-ms, sometimes twice with another payload, sometimes never). Uses only the SDK.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import random
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from appliance import AsyncClient
from appliance.client import Workflow
from appliance.errors import AtpError, WrongState
from chaos.flows import FLOWS, ORDER_TIMEOUT_MS
from chaos.history import OK, REPEAT, WRONG_STATE, LogWriter, now_ms
from chaos.producer import retrying
from chaos.runcheck import FlowSpec

T = TypeVar("T")
C_MODES = {"ok": 80, "fail_once": 10, "dead": 10}  # diamond's step c


def to_sdk(flow: FlowSpec) -> Workflow:
    """The definition through the SDK's builder."""
    built = Workflow(flow.name)
    for s in flow.steps:
        delay = dt.timedelta(milliseconds=s.delay_ms)
        if s.signal:
            timeout = dt.timedelta(milliseconds=s.timeout_ms)
            built.signal(s.name, s.signal, after=s.after, timeout=timeout, delay=delay)
        else:
            built.step(
                s.name,
                s.topic,
                s.payload,
                after=s.after,
                after_any=s.after_any,
                delay=delay,
                on_failure=s.on_failure,
            )
    return built


class RunProducer:
    def __init__(self, client: AsyncClient, log: LogWriter, ns: argparse.Namespace) -> None:
        self.client = client
        self.log = log
        self.ns = ns

    async def retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        return await retrying(call, self.ns.give_up)

    async def put_workflows(self) -> None:
        for flow in FLOWS.values():
            await self.retrying(lambda f=flow: self.client.put_workflow(to_sdk(f)))  # type: ignore[misc]

    async def one(self, n: int, rng: random.Random) -> None:
        run_id = f"run-{n:05d}"
        order = rng.random() < self.ns.order_share
        flow = "order" if order else "diamond"
        c_mode = rng.choices(list(C_MODES), weights=list(C_MODES.values()))[0]
        run_input = json.dumps({"ms": rng.randint(20, 120), "c": c_mode})
        sent = now_ms()
        try:
            await self.retrying(lambda: self.client.start_run(flow, run_input, id=run_id))
        except AtpError as exc:
            self.log.write("run_start_failed", id=run_id, error=str(exc)[:200])
            return
        acked = now_ms()
        self.log.write("run_start", id=run_id, workflow=flow, sent_ms=sent, acked_ms=acked)
        if order:
            await self.pay(run_id, sent, rng)
        elif rng.random() < self.ns.cancel_share:
            await asyncio.sleep(rng.uniform(0, 1.5))
            await self.call("cancel", run_id, lambda: self.client.cancel_run(run_id))

    async def pay(self, run_id: str, sent: int, rng: random.Random) -> None:
        """Send `paid` around the deadline (the run's creation, at or after `sent`, plus the
        timeout), sometimes twice, sometimes never."""
        if rng.random() < 0.15:
            return
        offset = rng.uniform(-self.ns.race_ms, self.ns.race_ms)
        await asyncio.sleep(max(sent + ORDER_TIMEOUT_MS + offset - now_ms(), 0) / 1000)
        payload = json.dumps({"run": run_id, "n": 1})
        await self.call(
            "signal", run_id, lambda: self.client.signal_run(run_id, "paid", payload), payload
        )
        if rng.random() < 0.3:
            again = json.dumps({"run": run_id, "n": 2})
            await self.call(
                "signal", run_id, lambda: self.client.signal_run(run_id, "paid", again), again
            )

    async def call(
        self, kind: str, run_id: str, rpc: Callable[[], Awaitable[bool]], payload: str = ""
    ) -> None:
        """One CancelRun/SignalRun (retried on transport errors), logged with its answer."""
        sent, tries = now_ms(), 0

        async def counted() -> bool:
            nonlocal tries
            tries += 1
            return await rpc()

        try:
            result = OK if await self.retrying(counted) else REPEAT
        except WrongState:
            result = WRONG_STATE
        except AtpError as exc:
            result = f"error:{type(exc).__name__}"
        name = "paid" if kind == "signal" else ""
        self.log.write(
            "run_call",
            kind=kind,
            run=run_id,
            sent_ms=sent,
            done_ms=now_ms(),
            result=result,
            name=name,
            payload=payload,
            attempts=tries,
        )


async def run(ns: argparse.Namespace) -> None:
    rng = random.Random(ns.seed)
    with LogWriter(Path(ns.log)) as log:
        async with AsyncClient(ns.addr, timeout=ns.call_timeout) as client:
            producer = RunProducer(client, log, ns)
            await producer.put_workflows()
            loop = asyncio.get_running_loop()
            start = loop.time()
            pending: set[asyncio.Task[None]] = set()
            for n in range(ns.count):
                await asyncio.sleep(max(start + n / ns.rate - loop.time(), 0))
                pending.add(asyncio.create_task(producer.one(n, random.Random(rng.random()))))
            if pending:
                await asyncio.wait(pending)
            log.write("done", t_ms=now_ms(), count=ns.count)


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m chaos.runs")
    p.add_argument("--addr", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--count", type=int, default=150)
    p.add_argument("--rate", type=float, default=10.0, help="runs started per second")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--order-share", type=float, default=0.3, help="runs of `order`")
    p.add_argument("--cancel-share", type=float, default=0.15, help="diamond runs canceled")
    p.add_argument("--race-ms", type=float, default=150.0, help="signal offset from deadline")
    p.add_argument("--call-timeout", type=float, default=3.0)
    p.add_argument("--give-up", type=float, default=60.0)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    asyncio.run(run(parse(sys.argv[1:] if argv is None else argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
