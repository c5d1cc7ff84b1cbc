"""The Celery app of the benchmarks: one no-op task that appends a start record.

Run by the bench venv: `celery -A celery_app worker` with BENCH_REDIS_URL and BENCH_RECORDS set
(loadtest/peers/celery_driver.py does). Imports celery and loadtest/harness.py only.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from celery import Celery
from harness import Recorder

app = Celery("bench", broker=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
app.conf.update(
    task_ignore_result=True,  # no result backend: a no-op has nothing to return
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)
_recorder: Recorder | None = None


def noop(due_ms: float, payload: str = "") -> None:
    global _recorder
    if _recorder is None:  # opened in each pool process, after the fork
        _recorder = Recorder(os.environ["BENCH_RECORDS"])
    _recorder.record(due_ms)


noop_task = app.task(name="noop")(noop)
