"""cron.py: 5 and 6 field expressions, zones across DST changes, intervals and windows."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from appliance.scheduler.cron import CronError, Timetable, check_cron, zone

BERLIN = ZoneInfo("Europe/Berlin")


def ms(text: str) -> int:
    """'2025-03-30T03:00:00+02:00' -> epoch ms."""
    return round(dt.datetime.fromisoformat(text).timestamp() * 1000)


def ticks(tt: Timetable, after: str, n: int) -> list[str]:
    out, at = [], ms(after)
    for _ in range(n):
        nxt = tt.next_after(at)
        assert nxt is not None
        out.append(dt.datetime.fromtimestamp(nxt / 1000, BERLIN).isoformat())
        at = nxt
    return out


def test_five_fields_next_is_strictly_after() -> None:
    tt = Timetable(cron="*/15 * * * *")
    assert tt.next_after(ms("2025-01-01T00:00:00+00:00")) == ms("2025-01-01T00:15:00+00:00")
    assert tt.next_after(ms("2025-01-01T00:14:59.999+00:00")) == ms("2025-01-01T00:15:00+00:00")


def test_six_fields_have_a_leading_seconds_field() -> None:
    every_10s = Timetable(cron="*/10 * * * * *")
    start = ms("2025-01-01T00:00:00.500+00:00")
    assert every_10s.next_after(start) == ms("2025-01-01T00:00:10+00:00")
    at_30s_past_the_hour = Timetable(cron="30 0 * * * *")
    assert at_30s_past_the_hour.next_after(start) == ms("2025-01-01T00:00:30+00:00")
    assert at_30s_past_the_hour.next_after(ms("2025-01-01T00:00:30+00:00")) == ms(
        "2025-01-01T01:00:30+00:00"
    )


def test_aliases_and_zones() -> None:
    assert check_cron("  @daily ") == "@daily"
    tt = Timetable(cron="0 2 * * *", timezone="Europe/Berlin")
    assert tt.next_after(ms("2025-01-01T00:00:00+00:00")) == ms("2025-01-01T02:00:00+01:00")


@pytest.mark.parametrize(
    ("expr", "reason"),
    [
        ("", "empty"),
        ("* * * *", "4 fields"),
        ("* * * * * * *", "7 fields"),
        ("61 * * * *", "not valid"),
        ("foo bar baz qux quux", "not valid"),
        ("H * * * *", "not valid"),
        ("0 0 30 2 *", "never fires"),
    ],
)
def test_bad_expressions_are_refused(expr: str, reason: str) -> None:
    with pytest.raises(CronError, match=reason):
        check_cron(expr)


def test_unknown_zone_is_refused() -> None:
    with pytest.raises(CronError, match="unknown time zone"):
        zone("Mars/Olympus_Mons")
    with pytest.raises(CronError):
        zone("../../etc/passwd")
    assert zone("") == ZoneInfo("UTC")


# -- DST, Europe/Berlin 2025: spring forward 30 March 02:00 -> 03:00, fall back 26 October
# 03:00 -> 02:00 (see the module docstring for the rules).


def test_spring_forward_daily_0230_fires_at_0300_once() -> None:
    tt = Timetable(cron="30 2 * * *", timezone="Europe/Berlin")
    assert ticks(tt, "2025-03-29T12:00:00+01:00", 3) == [
        "2025-03-30T03:00:00+02:00",  # 02:30 does not exist: the first instant after the gap
        "2025-03-31T02:30:00+02:00",
        "2025-04-01T02:30:00+02:00",
    ]


def test_spring_forward_hourly_ticks_stay_an_hour_apart() -> None:
    tt = Timetable(cron="30 * * * *", timezone="Europe/Berlin")
    assert ticks(tt, "2025-03-30T00:45:00+01:00", 3) == [
        "2025-03-30T01:30:00+01:00",
        "2025-03-30T03:30:00+02:00",  # one real hour after 01:30 CET
        "2025-03-30T04:30:00+02:00",
    ]


def test_fall_back_daily_0230_fires_once() -> None:
    tt = Timetable(cron="30 2 * * *", timezone="Europe/Berlin")
    assert ticks(tt, "2025-10-25T12:00:00+02:00", 3) == [
        "2025-10-26T02:30:00+02:00",  # the first 02:30 (CEST); the repeat at 02:30 CET is dropped
        "2025-10-27T02:30:00+01:00",
        "2025-10-28T02:30:00+01:00",
    ]


def test_fall_back_fixed_hour_minutes_fire_in_the_first_pass_only() -> None:
    tt = Timetable(cron="*/15 2 * * *", timezone="Europe/Berlin")
    assert ticks(tt, "2025-10-25T12:00:00+02:00", 5) == [
        "2025-10-26T02:00:00+02:00",
        "2025-10-26T02:15:00+02:00",
        "2025-10-26T02:30:00+02:00",
        "2025-10-26T02:45:00+02:00",
        "2025-10-27T02:00:00+01:00",
    ]


def test_fall_back_hourly_fires_in_both_passes() -> None:
    tt = Timetable(cron="30 * * * *", timezone="Europe/Berlin")
    assert ticks(tt, "2025-10-26T01:00:00+02:00", 4) == [
        "2025-10-26T01:30:00+02:00",
        "2025-10-26T02:30:00+02:00",
        "2025-10-26T02:30:00+01:00",  # one real hour later: an hourly job runs
        "2025-10-26T03:30:00+01:00",
    ]


def test_latest_tick_skips_the_repeat_too() -> None:
    tt = Timetable(cron="30 2 * * *", timezone="Europe/Berlin")
    assert tt.last_at_or_before(ms("2025-10-26T12:00:00+01:00")) == ms("2025-10-26T02:30:00+02:00")
    assert tt.last_at_or_before(ms("2025-03-30T12:00:00+02:00")) == ms("2025-03-30T03:00:00+02:00")
    exact = ms("2025-03-31T02:30:00+02:00")
    assert tt.last_at_or_before(exact) == exact
    assert tt.last_at_or_before(exact - 1) == ms("2025-03-30T03:00:00+02:00")


# -- intervals and windows -----------------------------------------------------------------


def test_interval_ticks_are_aligned_to_the_epoch() -> None:
    tt = Timetable(interval_ms=1000)
    assert tt.next_after(1_700_000_000_123) == 1_700_000_001_000
    assert tt.next_after(1_700_000_001_000) == 1_700_000_002_000
    assert tt.last_at_or_before(1_700_000_001_999) == 1_700_000_001_000
    minute = Timetable(interval_ms=60_000)
    assert minute.next_after(ms("2025-01-01T10:00:30+00:00")) == ms("2025-01-01T10:01:00+00:00")


def test_interval_ticks_start_at_the_window_start() -> None:
    start = 1_700_000_000_250
    tt = Timetable(interval_ms=1000, start_ms=start, end_ms=start + 2500)
    assert tt.next_after(0) == start
    assert tt.next_after(start) == start + 1000
    assert tt.next_after(start + 1000) == start + 2000
    assert tt.next_after(start + 2000) is None  # start + 3000 is past the end
    assert tt.last_at_or_before(start - 1) is None
    assert tt.last_at_or_before(start + 10_000) == start + 2000


def test_cron_window() -> None:
    tt = Timetable(
        cron="0 * * * *",
        start_ms=ms("2025-01-01T10:30:00+00:00"),
        end_ms=ms("2025-01-01T12:00:00+00:00"),
    )
    assert tt.next_after(0) == ms("2025-01-01T11:00:00+00:00")
    assert tt.next_after(ms("2025-01-01T11:00:00+00:00")) == ms("2025-01-01T12:00:00+00:00")
    assert tt.next_after(ms("2025-01-01T12:00:00+00:00")) is None
    assert tt.last_at_or_before(ms("2025-01-01T10:45:00+00:00")) is None
    assert tt.last_at_or_before(ms("2025-01-02T00:00:00+00:00")) == ms("2025-01-01T12:00:00+00:00")
