"""Logging setup: readable lines on a terminal, one JSON object per line otherwise. Stdlib only."""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any

from appliance import times

_EXTRA = ("topic", "task_id", "attempt")


class JsonFormatter(logging.Formatter):
    def __init__(self, role: str) -> None:
        super().__init__()
        self.role = role

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": times.iso(int(record.created * 1000)),
            "level": record.levelname.lower(),
            "role": self.role,
            "pid": os.getpid(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in _EXTRA:
            if hasattr(record, key):
                out[key] = getattr(record, key)
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return json.dumps(out)


class TextFormatter(logging.Formatter):
    """A terminal line; its time printed the one way atp prints times (appliance.times)."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return times.iso(int(record.created * 1000))


def setup(level: str, role: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if sys.stderr.isatty():
        handler.setFormatter(
            TextFormatter(f"%(asctime)s %(levelname)-7s {role}[%(process)d] %(message)s")
        )
    else:
        handler.setFormatter(JsonFormatter(role))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
