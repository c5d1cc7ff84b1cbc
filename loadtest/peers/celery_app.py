"""The Celery app of the benchmarks: a no-op task, an INCR task and a sleeping task, each
appending a start record (loadtest/harness.py).

Run by the bench venv: `celery -A celery_app worker` with BENCH_REDIS_URL and BENCH_RECORDS set
(loadtest/peers/py_peers.py does). Imports celery, redis-py and loadtest/harness.py only.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis
from celery import Celery
from harness import COUNTER_KEY, Recorder

app = Celery("bench", broker=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
app.conf.update(
    task_ignore_result=True,  # no result backend: the handlers have nothing to return
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)
_recorders: dict[str, Recorder] = {}
_counter: list[redis.Redis] = []


def _recorder(variable: str = "BENCH_RECORDS") -> Recorder:
    if variable not in _recorders:  # opened in each pool process, after the fork
        _recorders[variable] = Recorder(os.environ[variable])
    return _recorders[variable]


def noop(due_ms: float, payload: str = "") -> None:
    _recorder().record(due_ms)


def incr(due_ms: float, payload: str = "") -> None:
    """W1's handler: record the start, then one Redis INCR on a counter key."""
    _recorder().record(due_ms)
    if not _counter:
        _counter.append(redis.Redis.from_url(os.environ["BENCH_REDIS_URL"]))
    _counter[0].incr(COUNTER_KEY)


def sleep(number: float) -> None:
    """W3's handler: record the start, sleep, record the finish."""
    _recorder().record(number)
    time.sleep(float(os.environ.get("BENCH_SLEEP_S", "3")))
    _recorder("BENCH_FINISHES").record(number)


noop_task = app.task(name="noop")(noop)
incr_task = app.task(name="incr")(incr)
# W3: what Celery's docs ask of a task that must survive a worker crash: acknowledged after
# it ran (acks_late), and requeued when its worker process is lost (reject_on_worker_lost).
sleep_task = app.task(name="sleep", acks_late=True, reject_on_worker_lost=True)(sleep)
