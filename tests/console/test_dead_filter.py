"""The Dead letters page's filter: what it asks the server for (DeadLetterFilter), and the
time range typed in the browser's zone."""

from __future__ import annotations

import pytest

from appliance.console.views import DeadFilter, local_ms
from appliance.errors import InvalidArgument

NOW = 1_800_000_000_000
HOUR = 3_600_000


def test_error_text_and_empty() -> None:
    sent = DeadFilter("DECLINED").server_filter(NOW)
    assert (sent.error, sent.from_ms, sent.until_ms) == ("DECLINED", 0, 0)
    assert DeadFilter().empty and DeadFilter(within="").empty
    assert not DeadFilter("x", "7d").empty and not DeadFilter(until_ms=5).empty


def test_within_and_a_range_make_one_window() -> None:
    assert DeadFilter(within="1h").server_filter(NOW).from_ms == NOW - HOUR
    both = DeadFilter(within="24h", from_ms=NOW - HOUR, until_ms=NOW - 5).server_filter(NOW)
    assert (both.from_ms, both.until_ms) == (NOW - HOUR, NOW - 5)  # the later start
    wide = DeadFilter(within="1h", from_ms=NOW - 48 * HOUR).server_filter(NOW)
    assert wide.from_ms == NOW - HOUR


def test_a_local_time_with_the_browser_s_offset() -> None:
    assert local_ms("2026-11-30T16:05", "0") == 1_796_054_700_000
    assert local_ms("2026-11-30T17:05", "-60") == 1_796_054_700_000  # Paris in winter: UTC+1
    assert local_ms("", "0") == 0
    with pytest.raises(InvalidArgument):
        local_ms("yesterday", "0")
