"""100,000 runs waiting at once (each in a 3-day delay step) do not grow the hand-off: W7's
hand-off (loadtest/workflow_bench.py: 3-step chains started 20 ms apart on a running SDK
worker, one step's start to the next's) with none waiting and with 100,000 waiting, on one real
`atp --role=server` and redis-server; also Redis bytes per waiting run. Slow (minutes): run by
`just test-waiting` (WAITING_RUNS=... for a smaller try), not by the default run."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "loadtest"))

from atp_driver import appliance
from harness import median, redis_server, used_memory
from workflow_bench import chain, fill_waiting, handoff, put, waiting

WAITING = int(os.environ.get("WAITING_RUNS", "100000"))
CHAINS = 150  # per hand-off measurement (300 hand-offs), two measurements each way
FILL = 10_000  # runs started per fill step


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_a_hundred_thousand_waiting_runs_do_not_grow_the_hand_off(tmp_path: Path) -> None:
    with redis_server() as redis, appliance(redis, 1, tmp_path / "server.log") as address:
        asyncio.run(put(address, chain(), waiting()))
        empty = [handoff(address, redis.url, tmp_path, CHAINS, first=n) for n in (10**6, 2 * 10**6)]
        fill_waiting(address, 1, first=10**7)  # the workflow's and topic's own keys first
        time.sleep(0.5)
        before, began = used_memory(redis.port, clients=False), time.monotonic()
        for first in range(0, WAITING, FILL):
            fill_waiting(address, min(FILL, WAITING - first), first=first)
        filled_s = time.monotonic() - began
        time.sleep(1.0)
        per_run = (used_memory(redis.port, clients=False) - before) / WAITING
        full = [
            handoff(address, redis.url, tmp_path, CHAINS, first=n) for n in (3 * 10**6, 4 * 10**6)
        ]
    p50 = [median([h["handoff_p50_ms"] for h in hs]) for hs in (empty, full)]
    p99 = [median([h["handoff_p99_ms"] for h in hs]) for hs in (empty, full)]
    print(
        f"\n{WAITING:,} runs waiting (started in {filled_s:.0f} s): {per_run:.0f} bytes per "
        f"waiting run; hand-off p50 {p50[0]:.2f} -> {p50[1]:.2f} ms, "
        f"p99 {p99[0]:.2f} -> {p99[1]:.2f} ms (none waiting -> {WAITING:,} waiting)"
    )
    assert all(h["complete"] == CHAINS and h["twice"] == 0 for h in empty + full)
    assert per_run <= 1024
    # no growth: the medians within the machine's run-to-run noise (50% and 1 ms)
    assert p50[1] <= 1.5 * p50[0] + 1.0, (p50, p99)
