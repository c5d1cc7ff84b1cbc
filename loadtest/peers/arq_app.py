"""The arq worker of the benchmarks: one no-op job that appends a start record, with arq's
default worker settings. Run by the bench venv: `arq arq_app.WorkerSettings` with
BENCH_REDIS_URL and BENCH_RECORDS set (loadtest/peers/arq_driver.py does).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from arq.connections import RedisSettings
from harness import Recorder

_recorder = Recorder(os.environ.get("BENCH_RECORDS", os.devnull))


async def noop(ctx: dict[str, Any], due_ms: float, payload: str = "") -> None:
    _recorder.record(due_ms)


class WorkerSettings:
    functions = [noop]  # noqa: RUF012 - arq reads class attributes
    redis_settings = RedisSettings.from_dsn(
        os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
