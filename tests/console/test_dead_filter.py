"""The dead-letter filter the Dead letters page and its requeue/purge-matching use."""

from __future__ import annotations

from appliance.client import DeadLetter
from appliance.console.views import DeadFilter
from appliance.model import Task, TaskState

NOW = 1_800_000_000_000
HOUR = 3_600_000


def letter(error: str, dead_ago_ms: int) -> DeadLetter:
    task = Task("t1", "a", "{}", NOW, NOW, 0, 1, TaskState.DEAD, last_error=error)
    return DeadLetter(task, NOW - dead_ago_ms)


def test_error_text_matches_in_any_case_and_empty_matches_all() -> None:
    assert DeadFilter("DECLINED").matches(letter("card declined", 0), NOW)
    assert not DeadFilter("timeout").matches(letter("card declined", 0), NOW)
    assert DeadFilter().matches(letter("anything", 10 * 24 * HOUR), NOW)
    assert DeadFilter().empty and DeadFilter(within="").empty


def test_within_keeps_only_recent_deaths() -> None:
    assert DeadFilter(within="1h").matches(letter("x", HOUR - 1), NOW)
    assert not DeadFilter(within="1h").matches(letter("x", HOUR + 1), NOW)
    assert DeadFilter(within="24h").matches(letter("x", 2 * HOUR), NOW)
    assert not DeadFilter("x", "7d").empty
