"""SAQ's worker for W3 (a worker SIGKILLed mid-run): one job that records its start, sleeps,
records its finish; SAQ's defaults bar `concurrency` (BENCH_CONCURRENCY). SAQ runs only
`async def` jobs. Run by the bench venv: `saq saq_app.settings` with BENCH_REDIS_URL,
BENCH_RECORDS and BENCH_FINISHES set (loadtest/peers/py_peers.py does).
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import Recorder
from saq import Queue

_starts = Recorder(os.environ.get("BENCH_RECORDS", os.devnull))
_finishes = Recorder(os.environ.get("BENCH_FINISHES", os.devnull))


async def sleep(ctx: dict[str, Any], *, number: float) -> None:
    _starts.record(number)
    await asyncio.sleep(float(os.environ.get("BENCH_SLEEP_S", "3")))
    _finishes.record(number)


settings = {
    "queue": Queue.from_url(os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")),
    "functions": [sleep],
    "concurrency": int(os.environ.get("BENCH_CONCURRENCY", "10")),
}
