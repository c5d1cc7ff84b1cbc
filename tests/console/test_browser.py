"""The console in a real headless Chromium (Debian's chromium + chromium-driver, driven by
Selenium) against a real `atp --role=all` at its http_addr: each page shows the seeded
workload's real figures, and the actions work and show their result. One browser per module;
screenshots go to test-artifacts/console/ (git-ignored)."""

from __future__ import annotations

import time

import pytest

from tests.console.appliance import SCHEDULE_ID, WORKLOAD, Appliance, expected

selenium = pytest.importorskip("selenium", reason="selenium (pip install -e '.[dev]') is missing")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from tests.console.conftest import ARTIFACTS  # noqa: E402


def shoot(driver: WebDriver, name: str) -> None:
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def cells(driver: WebDriver, topic: str) -> dict[str, int]:
    row = driver.find_element(By.CSS_SELECTOR, f'#topics tr[data-topic="{topic}"]')
    return {
        name: int(row.find_element(By.CSS_SELECTOR, f"td.{name}").text)
        for name in ("pending", "due", "running", "dead")
    }


def wait_url(driver: WebDriver, part: str) -> None:
    """After a click that navigates: wait until the new page is there."""
    WebDriverWait(driver, 10).until(expected_conditions.url_contains(part))


def wait_text(driver: WebDriver, css: str, text: str) -> None:
    WebDriverWait(driver, 10).until(
        expected_conditions.text_to_be_present_in_element((By.CSS_SELECTOR, css), text)
    )


def test_overview_shows_every_topic_s_real_figures(
    browser: WebDriver, open_appliance: Appliance
) -> None:
    browser.get(f"http://{open_appliance.http_addr}/")  # the appliance's address redirects
    assert browser.current_url.endswith("/console/")
    for topic in WORKLOAD:
        assert cells(browser, topic) == {k: v for k, v in expected(topic).items()}, topic
    wait_text(browser, "#topic-count", "3 of 3 topics")  # the summary comes after first paint
    totals = {k: browser.find_element(By.ID, f"total-{k}").text for k in ("pending", "due", "dead")}
    assert totals == {"pending": "27", "due": "19", "dead": "9"}
    assert browser.find_element(By.ID, "leader").text not in ("", "none")
    shoot(browser, "overview")


def test_overview_sorts_and_searches(browser: WebDriver, open_appliance: Appliance) -> None:
    browser.get(f"{open_appliance.base}/?sort=dead&dir=desc")
    order = [
        r.get_attribute("data-topic")
        for r in browser.find_elements(By.CSS_SELECTOR, "#topics tr[data-topic]")
    ]
    assert order == ["billing", "emails", "reports"]
    box = browser.find_element(By.ID, "q")
    box.send_keys("mail")  # htmx swaps the rows as you type
    wait_text(browser, "#topic-count", "1 of 3 topics")
    order = [
        r.get_attribute("data-topic")
        for r in browser.find_elements(By.CSS_SELECTOR, "#topics tr[data-topic]")
    ]
    assert order == ["emails"]
    assert "q=mail" in browser.current_url


def test_topic_and_task_pages_show_the_dead_letters_and_the_task(
    browser: WebDriver, open_appliance: Appliance
) -> None:
    browser.get(f"{open_appliance.base}/")
    browser.find_element(By.LINK_TEXT, "emails").click()
    wait_url(browser, "/topic/emails")
    assert browser.find_element(By.ID, "dead").text == "3"
    assert browser.find_element(By.ID, "pending").text == "12"
    browser.find_element(By.ID, "tab-dead").click()
    wait_url(browser, "show=dead")
    ids = {
        r.get_attribute("data-id")
        for r in browser.find_elements(By.CSS_SELECTOR, "#letters tr[data-id]")
    }
    assert ids == {"emails-smtp-0", "emails-smtp-1", "emails-smtp-2"}
    shoot(browser, "topic")
    browser.find_element(By.LINK_TEXT, "emails-smtp-1").click()
    wait_url(browser, "/task/emails-smtp-1")
    assert browser.find_element(By.ID, "state").text == "DEAD"
    assert browser.find_element(By.ID, "last-error").text == "smtp 550 mailbox unavailable"
    assert browser.find_element(By.ID, "payload").text == '{"fails": "smtp"}'
    shoot(browser, "task")


def test_requeue_dead_letters_matching_an_error_text(
    browser: WebDriver, open_appliance: Appliance
) -> None:
    browser.get(f"{open_appliance.base}/dead")
    options = [o.text for o in browser.find_elements(By.CSS_SELECTOR, "#topic option")]
    assert "billing (6)" in options and "emails (3)" in options
    browser.find_element(By.CSS_SELECTOR, '#topic option[value="billing"]').click()
    browser.find_element(By.ID, "error").send_keys("declined")
    browser.find_element(By.ID, "apply").click()
    wait_url(browser, "error=declined")
    shown = {
        r.get_attribute("data-id")
        for r in browser.find_elements(By.CSS_SELECTOR, "#letters tr[data-id]")
    }
    assert shown == {f"billing-card-{i}" for i in range(4)}
    shoot(browser, "dead-letters")
    browser.find_element(By.ID, "requeue-matching").click()
    wait_text(browser, "#flash", "requeued 4 dead letter(s) of billing matching 'declined'")
    left = {
        r.get_attribute("data-id")
        for r in browser.find_elements(By.CSS_SELECTOR, "#letters tr[data-id]")
    }
    assert left == {"billing-timeout-0", "billing-timeout-1"}  # the other error stays dead
    with open_appliance.client() as client:
        billing = client.stats(["billing"]).topics[0]
        assert (billing.dead, billing.due) == (2, 7 + 4)
        assert client.get_task("billing-card-0", "billing").state.value == "PENDING"
    browser.get(f"{open_appliance.base}/")
    assert cells(browser, "billing")["dead"] == 2


def test_pause_and_resume_a_schedule(browser: WebDriver, open_appliance: Appliance) -> None:
    browser.get(f"{open_appliance.base}/schedules")
    row = f'#schedules tr[data-id="{SCHEDULE_ID}"]'
    assert browser.find_element(By.CSS_SELECTOR, f"{row} td.state").text == "active"
    assert "Europe/Paris" in browser.find_element(By.CSS_SELECTOR, row).text
    browser.find_element(By.CSS_SELECTOR, f"{row} button.toggle").click()
    wait_text(browser, "#flash", f"schedule {SCHEDULE_ID} paused")
    assert browser.find_element(By.CSS_SELECTOR, f"{row} td.state").text == "paused"
    with open_appliance.client() as client:
        assert client.get_schedule(SCHEDULE_ID).paused
    shoot(browser, "schedules")
    browser.find_element(By.CSS_SELECTOR, f"{row} button.toggle").click()
    wait_text(browser, "#flash", f"schedule {SCHEDULE_ID} resumed")
    with open_appliance.client() as client:
        schedule = client.get_schedule(SCHEDULE_ID)
        assert not schedule.paused and schedule.next_fire_time_ms > time.time() * 1000


def test_find_a_task_by_id_and_cancel_it(browser: WebDriver, open_appliance: Appliance) -> None:
    browser.get(f"{open_appliance.base}/topic/reports")
    assert browser.find_element(By.ID, "pending").text == "5"
    browser.find_element(By.ID, "task-id").send_keys("reports-later-2\n")
    wait_url(browser, "id=reports-later-2")
    assert browser.find_element(By.ID, "state").text == "PENDING"
    browser.find_element(By.ID, "cancel").click()
    wait_text(browser, "#flash", "cancelled task reports-later-2")
    assert browser.find_element(By.ID, "state").text == "CANCELED"
    assert not browser.find_elements(By.ID, "cancel")
    with open_appliance.client() as client:
        assert client.stats(["reports"]).topics[0].pending == 4
