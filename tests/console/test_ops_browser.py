"""The console's task history, topic task lists, dead-letter redrive by filter, payload edit,
fire now and workers pages in a real headless Chromium (Debian's chromium + chromium-driver,
Selenium) against a real `atp --role=all` seeded by tests/console/appliance.py: each page shows
the workload's real figures, each action works and shows its result, and a viewer token cannot
act. Screenshots go to test-artifacts/console/ (docs/adr/0017)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest

from appliance import AsyncClient
from appliance.model import TaskState
from tests.console.appliance import SCHEDULE_ID, Appliance
from tests.console.conftest import VIEWER
from tests.waiting import wait_for

selenium = pytest.importorskip("selenium", reason="selenium (pip install -e '.[dev]') is missing")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from tests.console.test_browser import shoot, wait_text, wait_url  # noqa: E402


def signed_in(browser: WebDriver, appliance: Appliance) -> None:
    """Wait for the sign-in's redirect to the overview (the login page's own address also
    contains /console/, so waiting for that part alone returns before the session exists)."""
    WebDriverWait(browser, 10).until(expected_conditions.url_to_be(f"{appliance.base}/"))


def row_ids(browser: WebDriver, table: str) -> list[str]:
    return [
        str(r.get_attribute("data-id"))
        for r in browser.find_elements(By.CSS_SELECTOR, f"#{table} tr[data-id]")
    ]


def test_the_task_page_shows_the_task_s_history(
    browser: WebDriver, open_appliance: Appliance
) -> None:
    browser.get(f"{open_appliance.base}/task/billing-card-1?topic=billing")
    events = [
        (r.get_attribute("data-kind"), r.find_element(By.CSS_SELECTOR, "td.detail").text)
        for r in browser.find_elements(By.CSS_SELECTOR, "#history tr[data-kind]")
    ]
    assert [kind for kind, _ in events] == ["enqueue", "lease", "nack", "dead"]
    assert events[1][1].startswith("retrieve ")  # who leased it
    assert events[2][1] == "card declined" and events[3][1] == "asked"
    shoot(browser, "task-history")


def test_the_topic_page_lists_pending_and_running_tasks_in_pages(
    browser: WebDriver, open_appliance: Appliance
) -> None:
    with open_appliance.client() as client:
        for i in range(60):
            client.enqueue("bulk", f'{{"n": {i}, "pad": "{"x" * 100}"}}', id=f"bulk-{i:02d}")
        held = client.retrieve("bulk", batch_size=2, visibility_timeout=600)
    browser.get(f"{open_appliance.base}/topic/bulk")
    assert browser.find_element(By.ID, "pending").text == "58"
    assert browser.find_element(By.ID, "running").text == "2"
    first = row_ids(browser, "tasks")
    assert first == [f"bulk-{i:02d}" for i in range(2, 52)]  # 50 a page, by due time
    preview = browser.find_element(By.CSS_SELECTOR, '#tasks tr[data-id="bulk-02"] code').text
    assert preview.startswith('{"n": 2, "pad": "xxx') and preview.endswith("…")
    shoot(browser, "topic-tasks")
    browser.find_element(By.ID, "next").click()
    wait_url(browser, "cursor=")
    assert row_ids(browser, "tasks") == [f"bulk-{i}" for i in range(52, 60)]
    browser.get(f"{open_appliance.base}/topic/bulk")
    browser.find_element(By.ID, "q").send_keys("bulk-5\n")  # search by id
    wait_url(browser, "q=bulk-5")
    assert row_ids(browser, "tasks") == [f"bulk-5{i}" for i in range(10)]
    browser.find_element(By.ID, "tab-running").click()
    wait_url(browser, "show=running")
    assert row_ids(browser, "tasks") == sorted(t.id for t in held)
    browser.find_element(By.ID, "tab-pending").click()
    wait_url(browser, "show=pending")
    browser.find_element(By.CSS_SELECTOR, '#tasks tr[data-id="bulk-02"] button.cancel').click()
    wait_text(browser, "#flash", "cancelled 1 task(s) of bulk")
    assert browser.find_element(By.ID, "pending").text == "57"
    assert "bulk-02" not in row_ids(browser, "tasks")
    with open_appliance.client() as client:
        assert client.get_task("bulk-02", "bulk").state == TaskState.CANCELED


def test_requeue_dead_letters_by_error_and_time_range(
    browser: WebDriver, open_appliance: Appliance
) -> None:
    browser.get(f"{open_appliance.base}/dead?topic=emails&error=SMTP&until=2001-01-01T00:00")
    assert not row_ids(browser, "letters")  # all of them died after 2001
    browser.find_element(By.ID, "until").clear()
    browser.execute_script("document.getElementById('from').value = '2001-01-01T00:00'")
    browser.find_element(By.ID, "apply").click()
    wait_url(browser, "from=2001-01-01")
    assert sorted(row_ids(browser, "letters")) == [f"emails-smtp-{i}" for i in range(3)]
    shoot(browser, "dead-letters-range")
    browser.find_element(By.ID, "requeue-matching").click()
    wait_text(browser, "#flash", "requeued 3 dead letter(s) of emails matching 'SMTP'")
    assert not row_ids(browser, "letters")
    with open_appliance.client() as client:
        assert client.stats(["emails"]).topics[0].dead == 0
        history = client.task_history("emails-smtp-2", "emails")
        assert history.events[-1].kind == "requeue"


def test_edit_a_dead_letter_s_payload_then_requeue_it(
    browser: WebDriver, open_appliance: Appliance
) -> None:
    browser.get(f"{open_appliance.base}/task/billing-timeout-0?topic=billing")
    assert browser.find_element(By.ID, "state").text == "DEAD"
    box = browser.find_element(By.ID, "edit-payload")
    box.clear()
    box.send_keys('{"fails": "no more", "fixed": true}')
    shoot(browser, "task-edit")
    browser.find_element(By.ID, "requeue-edited").click()
    wait_text(browser, "#flash", "requeued task billing-timeout-0 with the edited payload")
    assert browser.find_element(By.ID, "state").text == "PENDING"
    assert browser.find_element(By.ID, "payload").text == '{"fails": "no more", "fixed": true}'
    last = browser.find_elements(By.CSS_SELECTOR, "#history tr[data-kind]")[-1]
    assert last.get_attribute("data-kind") == "requeue"
    assert last.find_element(By.CSS_SELECTOR, "td.detail").text == "payload edited"


def test_fire_a_schedule_now_and_see_its_zones(
    browser: WebDriver, open_appliance: Appliance
) -> None:
    with open_appliance.client() as client:
        before = client.stats(["reports"]).topics[0].pending
    browser.get(f"{open_appliance.base}/schedules")
    row = f'#schedules tr[data-id="{SCHEDULE_ID}"]'
    assert "Europe/Paris" in browser.find_element(By.CSS_SELECTOR, f"{row} td.next-zoned").text
    assert browser.find_element(By.CSS_SELECTOR, f"{row} td.next-local").text not in ("", "—")
    assert browser.find_element(By.CSS_SELECTOR, f"{row} td.last").text == "never"
    browser.find_element(By.CSS_SELECTOR, f"{row} button.fire").click()
    wait_text(browser, "#flash", f"schedule {SCHEDULE_ID} fired: task sched:{SCHEDULE_ID}:")
    task_id = browser.find_element(By.ID, "flash").text.rpartition("task ")[2]
    assert browser.find_element(By.CSS_SELECTOR, f"{row} td.last").text != "never"
    shoot(browser, "schedules-fired")
    with open_appliance.client() as client:

        def enqueued() -> bool:
            try:
                return client.get_task(task_id, "reports").state == TaskState.PENDING
            except Exception:
                return False

        assert wait_for(enqueued, 10), "the leader did not enqueue the fired tick"
        time.sleep(1.5)  # later scheduler passes add nothing: exactly one task
        assert client.stats(["reports"]).topics[0].pending == before + 1


@pytest.fixture
def worker_stream(open_appliance: Appliance) -> Iterator[None]:
    """A worker stream named console-worker on topic `idle`, holding one task, in a thread."""
    opened, done = threading.Event(), threading.Event()

    async def hold() -> None:
        async with AsyncClient(open_appliance.grpc_addr) as client:
            await client.enqueue("idle", "work")
            stream = await client.open_work({"idle": 0}, 3, 60_000, name="console-worker")
            opened.set()
            await asyncio.to_thread(done.wait, 60)
            await stream.close(clean=False)

    thread = threading.Thread(target=asyncio.run, args=(hold(),), daemon=True)
    thread.start()
    assert opened.wait(10)
    yield
    done.set()
    thread.join(10)


def test_the_workers_page_shows_a_connected_stream(
    browser: WebDriver, open_appliance: Appliance, worker_stream: None
) -> None:
    row = '#workers tr[data-name="console-worker"]'

    def shown() -> bool:
        browser.get(f"{open_appliance.base}/workers")
        found = browser.find_elements(By.CSS_SELECTOR, f"{row} td.in-flight")
        return bool(found) and found[0].text == "1"

    assert wait_for(shown, 10), browser.page_source[-2000:]
    assert browser.find_element(By.CSS_SELECTOR, f"{row} td.topics").text == "idle"
    assert browser.find_element(By.CSS_SELECTOR, f"{row} td.credits").text == "3"
    assert browser.find_element(By.CSS_SELECTOR, f"{row} td.seen").text.endswith("s ago")
    shoot(browser, "workers")
    browser.get(f"{open_appliance.base}/")  # the overview's totals count the streams
    wait_text(browser, "#worker-total", "1")


def test_a_viewer_sees_the_new_pages_but_cannot_act(
    browser: WebDriver, token_appliance: Appliance
) -> None:
    browser.delete_all_cookies()
    browser.get(f"{token_appliance.base}/login")
    browser.find_element(By.ID, "token").send_keys(VIEWER + "\n")
    signed_in(browser, token_appliance)
    browser.get(f"{token_appliance.base}/task/billing-card-0?topic=billing")
    assert browser.find_elements(By.CSS_SELECTOR, "#history tr[data-kind]")
    browser.get(f"{token_appliance.base}/workers")
    assert browser.find_element(By.ID, "worker-count").text.endswith("stream(s)")
    acts = [
        ("/schedules", f'#schedules tr[data-id="{SCHEDULE_ID}"] button.fire'),
        ("/dead?topic=billing&error=card", "#requeue-matching"),
        ("/task/billing-card-0?topic=billing", "#requeue-edited"),
        ("/topic/billing", '#tasks tr[data-id="billing-due-0"] button.cancel'),
    ]
    for path, button in acts:
        browser.get(token_appliance.base + path)
        browser.find_element(By.CSS_SELECTOR, button).click()
        wait_text(browser, "#error-message", "(viewer) may not call")
    shoot(browser, "viewer-refused")
    with token_appliance.client(VIEWER) as viewer:
        assert viewer.get_schedule(SCHEDULE_ID).last_fire_time_ms == 0
        assert viewer.stats(["billing"]).topics[0].dead == 6
        assert viewer.get_task("billing-due-0", "billing").state == TaskState.PENDING
