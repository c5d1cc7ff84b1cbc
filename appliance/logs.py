"""Logging setup: readable lines on a terminal, one JSON object per line otherwise; the password
of any URL in a line (redis://user:secret@host) is written as ***. Stdlib only."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from typing import Any

from appliance import times

_EXTRA = ("topic", "task_id", "attempt")
_URL_PASSWORD = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*:)[^\s/@]+@")


def redact(text: str) -> str:
    """`text` with the password of every URL in it replaced by ***."""
    return _URL_PASSWORD.sub(r"\1***@", text)


class RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


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
            "message": redact(record.getMessage()),
        }
        for key in _EXTRA:
            if hasattr(record, key):
                out[key] = getattr(record, key)
        if record.exc_info:
            out["error"] = redact(self.formatException(record.exc_info))
        return json.dumps(out)


class TextFormatter(RedactingFormatter):
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
