"""Durations and times as people write them, and the one way atp prints a time. Stdlib only.

One parser serves the CLI's flags, ATP_* variables, the config file and schedule definitions
(docs/adr/0008-durations-times-and-flags.md):
- a duration is a number with a unit: 500ms, 30s, 1.5m, 2h, 1d. A bare number is allowed only
  where the name says the unit (a `*_ms` key or a `--*-ms` flag), and means milliseconds there.
  A duration is never negative.
- an instant is epoch milliseconds or an ISO 8601 time; one without a zone is read in the zone
  the caller names (the CLI's --at: local time; a schedule's window: its time zone).
- a time is printed as ISO 8601 in UTC with milliseconds: 2026-11-30T13:19:41.123Z.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION = re.compile(r"^\s*(-?)(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
NEGATIVE_DURATION = re.compile(r"^-\d+(?:\.\d+)?(?:ms|s|m|h|d)$")
"""A negative duration argparse would take for an option ('-5s'); see join_negative_values."""


class BadValue(ValueError):
    """A duration or time that cannot be used; the message says why (the caller names the field)."""


def duration_ms(value: Any, *, bare_ms: bool) -> int:
    """Milliseconds from a duration: a str with a unit ('1.5s'), or with `bare_ms` a bare number
    (str or int) of milliseconds. Negative values are refused."""
    if isinstance(value, bool):
        raise BadValue(f"expected a duration like 30s or 500ms, got {value!r}")
    if isinstance(value, int) and bare_ms:
        return _not_negative(value, value)
    match = _DURATION.match(value) if isinstance(value, str) else None
    if not match:
        example = "30s, 500ms or a number of milliseconds" if bare_ms else "30s, 500ms, 5m or 1h"
        raise BadValue(f"expected a duration like {example}, got {value!r}")
    sign, number, unit = match.groups()
    if unit is None and not bare_ms:
        raise BadValue(f"{value.strip()!r} has no unit: write {number}s or {number}ms")
    ms = round(float(number) * UNIT_MS[unit or "ms"])
    return _not_negative(-ms if sign else ms, value)


def _not_negative(ms: int, given: Any) -> int:
    if ms < 0:
        raise BadValue(f"must be >= 0, got {given!r}")
    return ms


def instant_ms(value: Any, zone: dt.tzinfo | Callable[[], dt.tzinfo] | None) -> int:
    """Epoch ms from epoch ms (int or digits) or an ISO 8601 date/time (text, or a datetime or
    date as YAML hands it); without a zone it is read in `zone` (None: this machine's; a
    callable is asked only then)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return _not_negative(value, value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    moment: dt.datetime | None = None
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, dt.date):
        moment = dt.datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            moment = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            moment = None
    if moment is None:
        raise BadValue(
            f"expected epoch ms or an ISO 8601 time like 2026-03-01T09:30:00Z, got {value!r}"
        )
    if moment.tzinfo is None:
        tz = zone() if callable(zone) else zone
        moment = moment.replace(tzinfo=tz) if tz is not None else moment.astimezone()
    return round(moment.timestamp() * 1000)


def iso(ms: int) -> str:
    """The printed form of a time: ISO 8601, UTC, milliseconds ('2026-11-30T13:19:41.123Z')."""
    moment = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def duration_text(ms: int) -> str:
    """The shortest exact way to write `ms` with a unit: 30000 -> '30s', 1500 -> '1500ms'."""
    for unit in ("d", "h", "m", "s"):
        if ms and ms % UNIT_MS[unit] == 0:
            return f"{ms // UNIT_MS[unit]}{unit}"
    return f"{ms}ms"


def join_negative_values(argv: list[str]) -> list[str]:
    """argparse reads '-5s' after '--delay' as an option and says 'expected one argument'; glue
    such a value to its flag ('--delay=-5s') so the parser itself refuses it as negative."""
    out: list[str] = []
    for arg in argv:
        if (
            out
            and NEGATIVE_DURATION.match(arg)
            and out[-1].startswith("--")
            and out[-1] != "--"
            and "=" not in out[-1]
        ):
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out
