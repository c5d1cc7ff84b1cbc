"""A bounded producer process: enqueues `--count` tasks at `--rate` per second through the SDK's
AsyncClient, each with a client-given id and an absolute due time, and records every enqueue the
server acknowledged (chaos/history.py). A failed call is retried with the same id (idempotent)
until it is acknowledged or --give-up seconds pass. Some tasks are canceled right after their
enqueue (mode `cancel`, due a few seconds later); the cancel's result is recorded too.

The mix of modes (ok, fail_once, fail_always, dead, cancel) and delays comes from --seed, so a
run can be repeated. Uses only the SDK.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from appliance import AsyncClient
from appliance.errors import AtpError, NotFound, WrongState
from chaos.history import NOT_FOUND, OK, WRONG_STATE, LogWriter, now_ms

T = TypeVar("T")
# mode: (weight, max_retries)
MODES: dict[str, tuple[int, int]] = {
    "ok": (78, 5),
    "fail_once": (8, 3),
    "fail_always": (5, 2),
    "dead": (5, 3),
    "cancel": (4, 3),
}


def plan(n: int, rng: random.Random, long_every: int) -> tuple[str, int, int]:
    """Task n's mode, handler time (ms) and delay (ms)."""
    names = list(MODES)
    mode = rng.choices(names, weights=[MODES[m][0] for m in names])[0]
    ms = rng.randint(20, 300)
    if long_every and n % long_every == 0 and mode == "ok":
        ms = 2500  # outlives a lease: only heartbeats keep it
    delay = rng.choice([0, 0, 0, 100, 500, 1500]) if mode != "cancel" else 3000
    return mode, ms, delay


async def retrying(call: Callable[[], Awaitable[T]], give_up_s: float) -> T:
    """Retry transport errors (an id makes a repeat harmless) until give_up_s passes; the
    server's answers (NotFound, WrongState) are raised at once."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + give_up_s
    pause = 0.1
    while True:
        try:
            return await call()
        except (NotFound, WrongState):
            raise
        except AtpError:
            if loop.time() > give_up:
                raise
            await asyncio.sleep(pause)
            pause = min(pause * 2, 1.0)


class Producer:
    def __init__(self, client: AsyncClient, log: LogWriter, ns: argparse.Namespace) -> None:
        self.client = client
        self.log = log
        self.ns = ns
        self.give_up_s: float = ns.give_up

    async def retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        return await retrying(call, self.give_up_s)

    async def one(self, n: int, rng: random.Random) -> None:
        ns = self.ns
        mode, ms, delay = plan(n, rng, ns.long_every)
        task_id = f"{ns.prefix}-{n:05d}"
        max_retries = MODES[mode][1]
        due = now_ms() + delay
        payload = json.dumps({"ms": ms, "mode": mode})
        try:
            await self.retrying(
                lambda: self.client.enqueue(
                    ns.topic, payload, at=due, id=task_id, max_retries=max_retries
                )
            )
        except AtpError as exc:
            self.log.write("enqueue_failed", id=task_id, error=str(exc)[:200])
            return
        self.log.write(
            "enqueue",
            id=task_id,
            topic=ns.topic,
            mode=mode,
            max_retries=max_retries,
            due_ms=due,
            acked_ms=now_ms(),
        )
        if mode == "cancel":
            await self.cancel(task_id)

    async def cancel(self, task_id: str) -> None:
        sent = now_ms()
        try:
            await self.retrying(lambda: self.client.cancel(task_id))
            result = OK
        except NotFound:
            result = NOT_FOUND
        except WrongState:
            result = WRONG_STATE
        except AtpError as exc:
            result = f"error:{type(exc).__name__}"
        self.log.write("cancel", id=task_id, sent_ms=sent, done_ms=now_ms(), result=result)


async def run(ns: argparse.Namespace) -> None:
    rng = random.Random(ns.seed)
    with LogWriter(Path(ns.log)) as log:
        async with AsyncClient(ns.addr, timeout=ns.call_timeout) as client:
            producer = Producer(client, log, ns)
            loop = asyncio.get_running_loop()
            start = loop.time()
            pending: set[asyncio.Task[None]] = set()
            for n in range(ns.count):
                await asyncio.sleep(max(start + n / ns.rate - loop.time(), 0))
                while len(pending) >= ns.inflight:
                    _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                pending.add(asyncio.create_task(producer.one(n, random.Random(rng.random()))))
            if pending:
                await asyncio.wait(pending)
            log.write("done", t_ms=now_ms(), count=ns.count)


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m chaos.producer")
    p.add_argument("--addr", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--prefix", required=True, help="task ids are <prefix>-<n>")
    p.add_argument("--count", type=int, default=400)
    p.add_argument("--rate", type=float, default=40.0, help="enqueues per second")
    p.add_argument("--inflight", type=int, default=16, help="enqueue calls at once")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--long-every", type=int, default=0, help="every n-th ok task runs 2.5 s")
    p.add_argument("--call-timeout", type=float, default=3.0)
    p.add_argument("--give-up", type=float, default=60.0)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    asyncio.run(run(parse(sys.argv[1:] if argv is None else argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
