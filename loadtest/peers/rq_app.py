"""RQ's job for W3 (a worker SIGKILLed mid-run): record the start, sleep, record the finish.
Run by `rq worker-pool` with BENCH_RECORDS, BENCH_FINISHES and BENCH_SLEEP_S set and this
directory on PYTHONPATH (loadtest/peers/py_peers.py does); each job runs in its own forked work
horse, so the record files are opened per call. Imports loadtest/harness.py only.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import Recorder


def sleep(number: float) -> None:
    started = Recorder(os.environ["BENCH_RECORDS"])
    started.record(number)
    started.close()
    time.sleep(float(os.environ.get("BENCH_SLEEP_S", "3")))
    finished = Recorder(os.environ["BENCH_FINISHES"])
    finished.record(number)
    finished.close()
