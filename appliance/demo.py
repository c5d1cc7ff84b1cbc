"""The demo handler behind `just run`: logs each task it runs and how late it started.

Configured by config/demo.yaml as the `python` executor of topic `demo`. Stdlib only.
"""

from __future__ import annotations

import logging
import time

from appliance.model import Task

log = logging.getLogger("atp.demo")


def show(task: Task) -> None:
    late_ms = time.time() * 1000 - task.execute_time_ms
    log.info(
        "demo task %s ran: payload=%s attempt=%d, %.1f ms after its due time",
        task.id,
        task.payload[:200],
        task.attempt,
        late_ms,
        extra={"topic": task.topic, "task_id": task.id, "attempt": task.attempt},
    )


def welcome(task: Task) -> dict[str, str]:
    """The demo user lifecycle's welcome step: logs like `show` and returns the step's output
    (the coupon step's payload names its message_id)."""
    show(task)
    return {"message_id": f"welcome-{task.id.rsplit(':', 2)[-2]}"}
