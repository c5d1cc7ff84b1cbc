"""Next-fire math for schedules: cron expressions (croniter, IANA zones via zoneinfo) and fixed
intervals, inside an optional [start, end] window. Pure: no Redis, no clock of its own (callers
pass "now"), so the same inputs give the same ticks on every scheduler replica.

Must not import the store, grpc or anything of atp but appliance.errors.

Cron expressions have 5 fields (minute hour day-of-month month day-of-week) or 6 with a leading
seconds field; croniter's `@daily`-style aliases work too. Ticks are milliseconds since the epoch.

Daylight-saving time, in the schedule's zone (tested with Europe/Berlin, 2025):
- Spring forward (02:00 -> 03:00): a wall time that does not exist fires once, at the first
  instant after the gap; "30 2 * * *" runs at 03:00 CEST that day (croniter's semantics, as in
  Vixie cron). Expressions for every hour ("30 * * * *") simply have no 02:30 that day: their
  ticks stay one real hour apart.
- Fall back (03:00 -> 02:00): a wall time that happens twice fires once, at its first
  occurrence (CEST), when the hour field names specific hours ("30 2 * * *", "*/15 2 * * *").
  croniter alone would fire it twice; we drop the repeat, as Vixie cron and cronie do, so a
  daily job runs once a day. Expressions for every hour fire in both passes (02:30 CEST and
  02:30 CET are one real hour apart, like every other pair of hourly ticks).

Intervals are zone-free: ticks at `start_ms + k * interval_ms`, or at multiples of the interval
since the Unix epoch when there is no start (every 1 s on whole seconds, every 1 m on whole
UTC minutes), so replicas and restarts agree on tick times without any stored phase.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter

UTC = dt.UTC
MAX_SEARCH_YEARS = 30  # a cron expression with no tick in this many years is refused
HOUR_FIELD = 1  # croniter's `expanded` order: minute, hour, day, month, weekday, second


class CronError(ValueError):
    """A cron expression or time zone that cannot be used; the message says why."""


@functools.lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo:
    """The IANA zone `name` ("" means UTC)."""
    if not name:
        return ZoneInfo("UTC")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise CronError(
            f"unknown time zone {name!r} (use an IANA name like Europe/Berlin)"
        ) from exc


def check_cron(expr: str) -> str:
    """The expression, stripped, if croniter accepts it with 5 or 6 fields and it ever fires."""
    text = " ".join(expr.split())
    if not text:
        raise CronError("cron expression is empty")
    fields = len(text.split(" "))
    if not text.startswith("@") and fields not in (5, 6):
        raise CronError(f"cron {text!r} has {fields} fields; use 5, or 6 with leading seconds")
    try:
        _iterator(text, dt.datetime(2000, 1, 1, tzinfo=UTC)).get_next(dt.datetime)
    except CroniterBadDateError as exc:
        raise CronError(f"cron {text!r} never fires") from exc
    except (CroniterError, ValueError, KeyError, IndexError) as exc:
        raise CronError(f"cron {text!r} is not valid: {exc}") from exc
    return text


def _iterator(expr: str, start: dt.datetime) -> croniter:
    six = not expr.startswith("@") and len(expr.split(" ")) == 6
    return croniter(
        expr, start, second_at_beginning=six, max_years_between_matches=MAX_SEARCH_YEARS
    )


def _every_hour(it: croniter) -> bool:
    hours = it.expanded[HOUR_FIELD]
    return hours == ["*"] or len(hours) == 24


def _repeat(moment: dt.datetime, tz: ZoneInfo) -> bool:
    """True for the second occurrence of a wall time repeated at a fall-back change."""
    first = moment.replace(tzinfo=None).replace(tzinfo=tz, fold=0)
    return first.timestamp() < moment.timestamp()


def _ms(moment: dt.datetime) -> int:
    return round(moment.timestamp() * 1000)


def _at(ms: int, tz: ZoneInfo) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, tz)


@dataclasses.dataclass(frozen=True, slots=True)
class Timetable:
    """When a schedule ticks. Exactly one of `cron` and `interval_ms` is set (checked by
    definitions.py); `start_ms`/`end_ms` of 0 leave that side of the window open."""

    cron: str = ""
    timezone: str = ""
    interval_ms: int = 0
    start_ms: int = 0
    end_ms: int = 0

    def next_after(self, after_ms: int) -> int | None:
        """The first tick strictly after `after_ms`, or None when the window has ended."""
        after = max(after_ms, self.start_ms - 1)
        tick = self._interval_next(after) if self.interval_ms else self._cron_next(after)
        if tick is None or (self.end_ms and tick > self.end_ms):
            return None
        return tick

    def last_at_or_before(self, at_ms: int) -> int | None:
        """The latest tick at or before `at_ms` (inside the window), or None if there is none."""
        at = min(at_ms, self.end_ms) if self.end_ms else at_ms
        tick = self._interval_prev(at) if self.interval_ms else self._cron_prev(at)
        if tick is None or tick < self.start_ms:
            return None
        return tick

    def _interval_next(self, after: int) -> int:
        anchor, step = self.start_ms, self.interval_ms
        if after < anchor:
            return anchor
        return anchor + ((after - anchor) // step + 1) * step

    def _interval_prev(self, at: int) -> int | None:
        anchor, step = self.start_ms, self.interval_ms
        if at < anchor:
            return None
        return anchor + ((at - anchor) // step) * step

    def _cron_next(self, after: int) -> int | None:
        tz = zone(self.timezone)
        it = _iterator(self.cron, _at(after, tz))
        every_hour = _every_hour(it)
        try:
            while True:
                moment = it.get_next(dt.datetime)
                if every_hour or not _repeat(moment, tz):
                    return _ms(moment)
        except CroniterBadDateError:
            return None

    def _cron_prev(self, at: int) -> int | None:
        tz = zone(self.timezone)
        it = _iterator(self.cron, _at(at + 1, tz))  # get_prev is strictly before its start
        every_hour = _every_hour(it)
        try:
            while True:
                moment = it.get_prev(dt.datetime)
                if every_hour or not _repeat(moment, tz):
                    return _ms(moment)
        except CroniterBadDateError:
            return None
