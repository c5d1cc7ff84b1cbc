"""appliance.times: the one duration and time syntax, and the one printed form of a time."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re

import pytest

from appliance import logs, times

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.mark.parametrize(
    ("text", "bare_ms", "ms"),
    [("10s", False, 10_000), ("1.5m", False, 90_000), ("250ms", False, 250), ("2h", True, 7.2e6),
     ("1d", False, 86_400_000), ("1500", True, 1500), (1500, True, 1500), ("0s", False, 0)],
)  # fmt: skip
def test_durations(text: object, bare_ms: bool, ms: float) -> None:
    assert times.duration_ms(text, bare_ms=bare_ms) == ms


@pytest.mark.parametrize(
    ("text", "bare_ms", "message"),
    [("10", False, "'10' has no unit: write 10s or 10ms"), (10, False, "expected a duration"),
     ("-5s", False, "must be >= 0"), ("-5", True, "must be >= 0"), (-1, True, "must be >= 0"),
     ("soon", True, "expected a duration"), (True, True, "expected a duration")],
)  # fmt: skip
def test_bad_durations(text: object, bare_ms: bool, message: str) -> None:
    with pytest.raises(times.BadValue, match=re.escape(message)):
        times.duration_ms(text, bare_ms=bare_ms)


def test_instants() -> None:
    berlin = dt.timezone(dt.timedelta(hours=1))
    assert times.instant_ms("1700000000000", None) == 1_700_000_000_000
    assert times.instant_ms("2030-01-02T03:04:05Z", None) == times.instant_ms(
        "2030-01-02T04:04:05", berlin
    )
    assert times.instant_ms(dt.date(2030, 1, 2), dt.UTC) == 1_893_542_400_000
    with pytest.raises(times.BadValue, match="ISO 8601"):
        times.instant_ms("tomorrow", None)


def test_one_printed_form() -> None:
    assert times.iso(1_893_542_400_123) == "2030-01-02T00:00:00.123Z"
    assert [times.duration_text(ms) for ms in (30_000, 1500, 3_600_000, 0)] == [
        "30s", "1500ms", "1h", "0ms"
    ]  # fmt: skip
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None)
    assert ISO_UTC.match(json.loads(logs.JsonFormatter("server").format(record))["time"])
    line = logs.TextFormatter("%(asctime)s %(message)s").format(record)
    assert ISO_UTC.match(line.split()[0]), line


def test_negative_values_reach_the_parser() -> None:
    assert times.join_negative_values(["enqueue", "t", "p", "--delay", "-5s"]) == [
        "enqueue", "t", "p", "--delay=-5s"
    ]  # fmt: skip
    kept = ["--delay=-5s", "--", "-5s", "--id", "-x", "-5"]
    assert times.join_negative_values(kept) == kept
