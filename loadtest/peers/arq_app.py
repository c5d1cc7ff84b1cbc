"""The arq worker of the benchmarks: a no-op job, an INCR job and a sleeping job, each
appending a start record, with arq's default worker settings bar max_jobs (BENCH_CONCURRENCY,
default 10 = arq's own default). arq only runs `async def` jobs, so the handlers are the async
equivalents of the other systems' sync ones. Run by the bench venv:
`arq arq_app.WorkerSettings` with BENCH_REDIS_URL and BENCH_RECORDS set (py_peers.py does).
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from arq.connections import RedisSettings
from harness import COUNTER_KEY, Recorder

_recorder = Recorder(os.environ.get("BENCH_RECORDS", os.devnull))
_finishes = Recorder(os.environ.get("BENCH_FINISHES", os.devnull))


async def noop(ctx: dict[str, Any], due_ms: float, payload: str = "") -> None:
    _recorder.record(due_ms)


async def incr(ctx: dict[str, Any], due_ms: float, payload: str = "") -> None:
    """W1's handler: record the start, then one Redis INCR (arq's own connection)."""
    _recorder.record(due_ms)
    await ctx["redis"].incr(COUNTER_KEY)


async def sleep(ctx: dict[str, Any], number: float) -> None:
    """W3's handler: record the start, sleep, record the finish."""
    _recorder.record(number)
    await asyncio.sleep(float(os.environ.get("BENCH_SLEEP_S", "3")))
    _finishes.record(number)


class WorkerSettings:
    functions = [noop, incr, sleep]  # noqa: RUF012 - arq reads class attributes
    max_jobs = int(os.environ.get("BENCH_CONCURRENCY", "10"))
    redis_settings = RedisSettings.from_dsn(
        os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
