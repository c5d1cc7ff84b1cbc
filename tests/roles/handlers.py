"""Handlers for appliance tests, loaded by real worker processes as `python` executors.
Each records its start and end in the directory named by ATPTEST_MARKS."""

from __future__ import annotations

import os
import time
from pathlib import Path

from appliance.model import Task


def _mark(task: Task, what: str) -> None:
    marks = Path(os.environ["ATPTEST_MARKS"])
    (marks / f"{task.id}.{task.attempt}.{what}").write_text(str(os.getpid()))


def slow(task: Task) -> None:
    """Runs for the number of seconds in its payload."""
    _mark(task, "start")
    time.sleep(float(task.payload))
    _mark(task, "end")
