"""The overview's live charts (appliance/console/live.py, ADR 0018): the counters read from
/metrics, the series uPlot draws, and in a real headless Chromium against a real `atp
--role=all` the charts show the enqueued and acked rates and the depths of a real workload."""

from __future__ import annotations

import time

import pytest

from appliance.console import live
from appliance.console.views import Row
from tests.console.appliance import Appliance
from tests.waiting import wait_for

METRICS = """# HELP atp_tasks_enqueued_total Tasks created.
# TYPE atp_tasks_enqueued_total counter
atp_tasks_enqueued_total{topic="a"} 10.0
atp_tasks_enqueued_total{topic="b"} 4.0
atp_tasks_enqueued_created{topic="a"} 1.7e9
# HELP atp_tasks_acked_total Tasks acknowledged.
# TYPE atp_tasks_acked_total counter
atp_tasks_acked_total{topic="a"} 6.0
# HELP atp_tasks_nacked_total Failed attempts.
# TYPE atp_tasks_nacked_total counter
atp_tasks_nacked_total{topic="a"} 99.0
"""


def test_the_counters_are_the_enqueued_and_acked_totals_by_topic() -> None:
    assert live.read_counters(METRICS) == {"a": (10.0, 6.0), "b": (4.0, 0.0)}


def test_the_series_are_rates_between_samples_and_the_depths() -> None:
    rows = [Row("a", 5, 3, 1, 2, 0), Row("b", 1, 1, 0, 0, 0)]
    every = live.totals([*rows, Row("quiet", 7, 0, 0, 1, 0)])
    first = live.sample(
        10_000, {"a": (10.0, 6.0), "b": (4.0, 0.0), "hidden": (9.0, 9.0)}, rows, every
    )
    second = live.sample(
        15_000, {"a": (20.0, 16.0), "b": (9.0, 0.0), "_other": (5.0, 0.0)}, rows, every
    )
    assert set(first.counters) == {"a", "b"}  # a topic this token does not see is left out
    one = live.series([first, second], "a")
    assert one["t"] == [10.0, 15.0]
    assert one["enqueued"] == [None, 2.0] and one["acked"] == [None, 2.0]
    assert (one["pending"], one["dead"]) == ([5, 5], [2, 2])
    together = live.series([first, second], live.ALL)
    assert together["enqueued"] == [None, 4.0]  # (20 + 9 + 5 past the label limit - 14) / 5 s
    assert together["pending"] == [13, 13] and together["dead"] == [3, 3]


def test_a_counter_that_went_back_counts_as_no_traffic() -> None:
    rows = [Row("a", 0, 0, 0, 0, 0)]
    before = live.sample(0, {"a": (100.0, 100.0)}, rows, (0, 0, 0, 0))
    after = live.sample(5000, {"a": (3.0, 1.0)}, rows, (0, 0, 0, 0))  # every process restarted
    assert live.series([before, after], "a")["enqueued"] == [None, 0.0]


selenium = pytest.importorskip("selenium", reason="selenium (pip install -e '.[dev]') is missing")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402

from tests.console.conftest import ARTIFACTS  # noqa: E402


def samples(driver: WebDriver) -> int:
    return int(driver.find_element(By.ID, "live").get_attribute("data-samples") or 0)


def test_the_overview_charts_show_the_real_rates_and_depths(
    browser: WebDriver, open_appliance: Appliance
) -> None:
    browser.get(f"{open_appliance.base}/")
    assert wait_for(lambda: samples(browser) >= 1, 10)
    with open_appliance.client() as client:
        for i in range(50):
            client.enqueue("live-a", "{}", id=f"live-{i}")
        for task in client.retrieve("live-a", batch_size=20):
            client.ack(task)
    assert wait_for(lambda: samples(browser) >= 3, 20)
    browser.find_element(By.CSS_SELECTOR, '#live-topic option[value="live-a"]').click()
    assert wait_for(
        lambda: browser.find_element(By.ID, "live").get_attribute("data-topic") == "live-a", 10
    )
    data = browser.execute_script(
        "var r = window.atpLive.rates.data, d = window.atpLive.depths.data;"
        "return {t: r[0], enqueued: r[1], acked: r[2], pending: d[1], running: d[3]};"
    )
    steps = [b - a for a, b in zip(data["t"], data["t"][1:], strict=False)]
    enqueued = sum(r * s for r, s in zip(data["enqueued"][1:], steps, strict=True))
    acked = sum(r * s for r, s in zip(data["acked"][1:], steps, strict=True))
    assert (round(enqueued), round(acked)) == (50, 20)  # the rates add up to the real counts
    assert data["pending"][-1] == 30 and data["running"][-1] == 0
    time.sleep(0.5)  # the charts' last draw
    browser.save_screenshot(str(ARTIFACTS / "overview-live.png"))


def test_every_topic_s_totals_move_with_the_busy_topics_between_readings() -> None:
    every = [Row("a", 5, 3, 1, 2, 0), Row("quiet", 7, 0, 0, 1, 0)]
    kept = live.Totals.read(every, ["a"])
    assert kept.now({"a": (5, 3, 1, 2)}) == (12, 3, 1, 3)  # as read
    assert kept.now({"a": (9, 6, 0, 2), "b": (4, 4, 0, 0)}) == (16, 6, 0, 3)  # b counts later
    assert kept.now({"a": (9, 6, 0, 2), "b": (1, 1, 0, 0)}) == (13, 3, 0, 3)
