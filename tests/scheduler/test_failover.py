"""The issue's big test: three real `atp --role=scheduler` processes and a 1-second schedule for
about 20 s while the leader is SIGKILLed, then the next leader is SIGSTOPped past its lease and
SIGCONTed. Every tick in the window makes exactly one task, delivered once; the largest gap
between consecutive ticks stays within lease TTL + one period; the resumed old leader enqueues
nothing. Prints the failover gap and tick lateness (p50/p99), measured on the Redis clock:

    pytest -q -s tests/scheduler/test_failover.py
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis

from appliance.proto import queue_pb2 as pb
from tests.scheduler.helpers import read_lease
from tests.store.helpers import now_ms

TTL_MS = 2000
PERIOD_MS = 1000
LEASE_MS = 60_000  # the consumer's visibility timeout (claim time = deadline - this)
SCHEDULE = [{"id": "tick", "topic": "ticks", "payload": "beat", "interval_ms": PERIOD_MS}]


class SchedulerProcess:
    def __init__(self, redis_url: str) -> None:
        self.log = Path(tempfile.mkstemp(prefix="atp-scheduler-", suffix=".log")[1])
        cmd = [
            sys.executable,
            "-m",
            "appliance",
            "--role=scheduler",
            f"--redis-url={redis_url}",
            f"--leader-ttl-ms={TTL_MS}",
            "--log-level=debug",
            f"--schedules={json.dumps(SCHEDULE)}",
        ]
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=out)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self, since: int = 0) -> str:
        return self.log.read_bytes()[since:].decode(errors="replace")

    def size(self) -> int:
        return self.log.stat().st_size

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.unlink(missing_ok=True)


@pytest.fixture
def schedulers(redis_url: str, redis_client: redis.Redis) -> Iterator[list[SchedulerProcess]]:
    procs = [SchedulerProcess(redis_url) for _ in range(3)]
    try:
        yield procs
    finally:
        for p in procs:
            p.stop()


async def leader_pid(r: redis.Redis, not_pid: int = 0, timeout_s: float = 15.0) -> int:
    """The pid in the lease's holder id (host/pid/random), once it is not `not_pid`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        holder = read_lease(r).get("holder", "")
        if holder and int(holder.split("/")[1]) != not_pid:
            return int(holder.split("/")[1])
        await asyncio.sleep(0.01)
    raise AssertionError("no (new) scheduler leader")


@contextlib.asynccontextmanager
async def consumer(stub: object, delivered: dict[str, list[int]]) -> AsyncIterator[None]:
    """Retrieve + Ack every tick task as it comes due; records task id -> [tick, claimed at]."""

    async def run() -> None:
        while True:
            reply = await stub.Retrieve(  # type: ignore[attr-defined]
                pb.RetrieveRequest(
                    topic="ticks", batch_size=10, wait_ms=1000, visibility_timeout_ms=LEASE_MS
                )
            )
            for t in reply.tasks:
                assert t.id not in delivered and t.attempt == 1, t
                delivered[t.id] = [t.execute_time_ms, t.lease_deadline_ms - LEASE_MS]
                await stub.Ack(pb.AckRequest(id=t.id, lease_token=t.lease_token))  # type: ignore[attr-defined]

    task = asyncio.create_task(run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def percentile(values: list[int], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


async def test_failover_fires_every_tick_exactly_once(
    stub: object,
    schedulers: list[SchedulerProcess],
    redis_client: redis.Redis,
    capsys: pytest.CaptureFixture[str],
) -> None:
    r = redis_client
    by_pid = {p.pid: p for p in schedulers}
    delivered: dict[str, list[int]] = {}
    async with consumer(stub, delivered):
        first = await leader_pid(r)
        await asyncio.sleep(1.0)
        window_start = now_ms(r)
        await asyncio.sleep(4.0)

        os.kill(first, signal.SIGKILL)  # 1: the leader dies
        killed_at = now_ms(r)
        second = await leader_pid(r, not_pid=first)
        took_over_kill = now_ms(r) - killed_at
        await asyncio.sleep(3.0)

        os.kill(second, signal.SIGSTOP)  # 2: the next leader stalls past its lease
        stopped_at = now_ms(r)
        third = await leader_pid(r, not_pid=second)
        took_over_stop = now_ms(r) - stopped_at
        await asyncio.sleep(max(0.0, (TTL_MS + 1500 - (now_ms(r) - stopped_at)) / 1000))
        resumed_from = by_pid[second].size()
        os.kill(second, signal.SIGCONT)
        await asyncio.sleep(4.0)
        window_end = now_ms(r)
        await asyncio.sleep(1.5)  # the window's last ticks come due and are consumed

    # Every tick in the window made exactly one task, and it was delivered once.
    prefix = "sched:tick:"
    made = sorted(int(k.decode().rsplit(":", 1)[1]) for k in r.scan_iter("atp:{ticks}:task:*"))
    assert all(
        k.decode().startswith(f"atp:{{ticks}}:task:{prefix}")
        for k in r.scan_iter("atp:{ticks}:task:*")
    )
    window = [t for t in made if window_start <= t <= window_end]
    expected = list(
        range(window_start - window_start % PERIOD_MS + PERIOD_MS, window_end + 1, PERIOD_MS)
    )
    assert window == expected
    assert made == list(range(made[0], made[-1] + 1, PERIOD_MS))  # no gap, no extra anywhere
    got = {int(i.removeprefix(prefix)): v for i, v in delivered.items()}
    assert set(window) <= set(got)

    # The largest gap between consecutive ticks' deliveries is within TTL + one period.
    claimed = [got[t][1] for t in window]
    gaps = [b - a for a, b in itertools.pairwise(claimed)]
    lateness = [got[t][1] - got[t][0] for t in window]
    assert min(lateness) >= 0  # never before the tick
    assert max(gaps) <= TTL_MS + PERIOD_MS, gaps

    # The resumed old leader stepped down by itself and enqueued nothing.
    after = by_pid[second].output(resumed_from)
    assert "stepped down as scheduler leader" in after
    assert "enqueued task" not in after
    assert third != second and by_pid[third].proc.poll() is None
    for p in schedulers:
        if p.pid != first:
            assert (
                "scheduler leader is" in p.output() or "became the scheduler leader" in p.output()
            )

    steady = [x for t, x in zip(window, lateness, strict=True) if x < 100]
    with capsys.disabled():
        print(
            f"\nscheduler failover (TTL {TTL_MS} ms, period {PERIOD_MS} ms, {len(window)} ticks):"
            f"\n  takeover after SIGKILL {took_over_kill} ms, after SIGSTOP {took_over_stop} ms"
            f"\n  largest gap between consecutive tick deliveries {max(gaps)} ms"
            f" (bound {TTL_MS + PERIOD_MS} ms)"
            f"\n  tick lateness (delivery - tick): p50 {percentile(lateness, 50):.0f} ms,"
            f" p99 {percentile(lateness, 99):.0f} ms, max {max(lateness)} ms"
            f"\n  outside failovers ({len(steady)} ticks): p50 {percentile(steady, 50):.0f} ms,"
            f" p99 {percentile(steady, 99):.0f} ms"
        )
