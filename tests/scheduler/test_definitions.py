"""definitions.py: validation names the field; the config section names the item and key."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest

from appliance.errors import ConfigError, InvalidArgument, TooLarge
from appliance.scheduler.definitions import (
    Definition,
    Misfire,
    Schedule,
    Source,
    check,
    from_config,
    from_fields,
    schedule_id,
)

GOOD = Definition(id="report", topic="reports", cron="0 2 * * *", timezone="Europe/Berlin")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"id": ""}, "id is empty"),
        ({"id": "has space"}, "id 'has space'"),
        ({"id": "x" * 101}, "id"),
        ({"topic": ""}, "topic is empty"),
        ({"topic": "bad/topic"}, "topic"),
        ({"cron": "61 * * * *"}, "cron"),
        ({"cron": "* * * *"}, "cron"),
        ({"timezone": "Mars/Base"}, "timezone"),
        ({"cron": "", "timezone": ""}, "cron/interval_ms"),
        ({"interval_ms": 1000}, "cron/interval_ms"),
        ({"cron": "", "timezone": "", "interval_ms": 50}, "interval_ms"),
        ({"cron": "", "interval_ms": 1000}, "timezone applies to cron"),
        ({"max_retries": -1}, "max_retries"),
        ({"jitter_ms": -5}, "jitter_ms"),
        ({"start_ms": 2000, "end_ms": 1000}, "end_ms"),
    ],
)
def test_bad_definitions_name_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidArgument, match=f"^schedule.{field}"):
        check(dataclasses.replace(GOOD, **changes), prefix="schedule.")


def test_payload_over_the_limit() -> None:
    with pytest.raises(TooLarge, match="payload"):
        check(dataclasses.replace(GOOD, payload="x" * 11), payload_max_bytes=10)


def test_check_normalises_the_expression() -> None:
    assert check(dataclasses.replace(GOOD, cron="  0   2 * * * ")).cron == "0 2 * * *"
    assert schedule_id("a.b:c@d/e+f=g-h_1") == "a.b:c@d/e+f=g-h_1"


def test_task_ids_and_jitter_are_stable() -> None:
    d = dataclasses.replace(GOOD, jitter_ms=500)
    assert d.task_id(1_700_000_000_000) == "sched:report:1700000000000"
    dues = [
        d.due_ms(1_700_000_000_000 + n * 1000) - (1_700_000_000_000 + n * 1000) for n in range(50)
    ]
    assert all(0 <= j <= 500 for j in dues) and len(set(dues)) > 10
    assert d.due_ms(1_700_000_000_000) == d.due_ms(1_700_000_000_000)
    assert GOOD.due_ms(5) == 5


def test_fields_round_trip() -> None:
    d = Definition(
        id="x",
        topic="t",
        payload='{"a": 1}',
        interval_ms=1500,
        max_retries=0,
        misfire=Misfire.RUN_ONCE,
        jitter_ms=7,
        start_ms=10,
        end_ms=20_000,
        paused=True,
        source=Source.CONFIG,
    )
    fields = {**d.to_fields(), "next": "1.7e+12", "last": "5", "rev": "3"}
    s = from_fields(fields)
    assert s == Schedule(d, next_fire_ms=1_700_000_000_000, last_fire_ms=5, rev=3)
    assert from_fields(GOOD.to_fields()).definition.max_retries is None


# -- the config section ----------------------------------------------------------------------


def test_from_config_parses_durations_policies_and_times() -> None:
    raw = [
        {"id": "a", "topic": "t", "cron": "0 2 * * *", "timezone": "Europe/Berlin"},
        {
            "id": "b",
            "topic": "t",
            "payload": {"kind": "daily"},
            "interval_ms": "30s",
            "misfire_policy": "run_once",
            "jitter_ms": "2s",
            "max_retries": 0,
            "start_ms": "2030-01-01T00:00:00",
            "end_ms": dt.datetime(2031, 1, 1, tzinfo=dt.UTC),
            "paused": True,
        },
    ]
    a, b = from_config(raw)
    assert a.source == Source.CONFIG and a.misfire == Misfire.SKIP and a.max_retries is None
    assert b.interval_ms == 30_000 and b.jitter_ms == 2000 and b.misfire == Misfire.RUN_ONCE
    assert b.payload == '{"kind":"daily"}' and b.max_retries == 0 and b.paused
    assert b.start_ms == 1_893_456_000_000  # naive: UTC for an interval schedule
    assert b.end_ms == 1_924_992_000_000


def test_naive_config_times_are_in_the_schedules_zone() -> None:
    (d,) = from_config(
        [
            {
                "id": "a",
                "topic": "t",
                "cron": "0 2 * * *",
                "timezone": "Europe/Berlin",
                "start_ms": "2030-01-01T00:00:00",
            }
        ]
    )
    assert d.start_ms == 1_893_456_000_000 - 3_600_000


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"id": "c", "topic": "t", "cron": "not a cron"}, r"schedules\[2\]\.cron"),
        ({"id": "c", "topic": "t", "cron": "0 2 * * *", "timezone": "X/Y"}, r"\[2\]\.timezone"),
        ({"id": "c", "topic": "", "interval_ms": 1000}, r"schedules\[2\]\.topic is empty"),
        ({"id": "c", "topic": "t"}, r"schedules\[2\]\.cron/interval_ms"),
        ({"id": "c", "topic": "t", "interval_ms": "soon"}, r"schedules\[2\]\.interval_ms"),
        ({"id": "c", "topic": "t", "interval_ms": 1000, "every": 1}, r"schedules\[2\]\.every"),
        ({"id": "c", "topic": "t", "interval_ms": 1000, "misfire_policy": "x"}, r"misfire_policy"),
        ({"id": "c", "topic": "t", "interval_ms": 1000, "paused": "yes"}, r"\[2\]\.paused"),
        ({"id": "c", "topic": "t", "interval_ms": 1000, "start_ms": "May"}, r"\[2\]\.start_ms"),
        ({"id": "a", "topic": "t", "interval_ms": 1000}, r"schedules\[2\]\.id: 'a' is declared"),
        ("just text", r"schedules\[2\]: expected a mapping"),
    ],
)
def test_bad_config_names_item_and_key(item: Any, message: str) -> None:
    raw = [
        {"id": "a", "topic": "t", "interval_ms": 1000},
        {"id": "b", "topic": "t", "interval_ms": 1000},
        item,
    ]
    with pytest.raises(ConfigError, match=message):
        from_config(raw)


def test_config_section_must_be_a_list() -> None:
    with pytest.raises(ConfigError, match="schedules: expected a list"):
        from_config({"id": "a"})  # type: ignore[arg-type]
    assert from_config([]) == []
