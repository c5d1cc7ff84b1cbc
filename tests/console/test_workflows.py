"""The console's workflow pages and visual editor (ADR 0018) in a real headless Chromium against
a real `atp --role=all`, with an SDK worker that runs every step's task: the editor builds a
3-step fan-out with a delay by clicks and drags only, saves it, starts a run and sees each step
succeed; a run's graph is coloured by state; cancel and signal work; definitions round-trip
between the editor and YAML. Screenshots go to test-artifacts/console/."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from appliance.client import Client, Workflow, drafts
from appliance.console import flows
from appliance.proto import queue_pb2 as pb
from appliance.workflows import definitions
from tests.console.appliance import ROOT, Appliance
from tests.console.conftest import ADMIN, ARTIFACTS, VIEWER
from tests.console.web import Web
from tests.waiting import wait_for

selenium = pytest.importorskip("selenium", reason="selenium (pip install -e '.[dev]') is missing")
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

TOPICS = ("wf-a", "wf-b")  # the SDK worker runs these; "wf-idle" has none
GREEN = "rgb(92,184,92)"  # graph.js's SUCCEEDED
GREY = "rgb(108,117,125)"  # CANCELED


class StepWorker:
    """An SDK worker on TOPICS: each task acked with {"done": <task id>} as its output."""

    def __init__(self, appliance: Appliance) -> None:
        self.client = appliance.client()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.is_set():
            for topic in TOPICS:
                for task in self.client.retrieve(topic, batch_size=10, wait=0.2):
                    self.client.ack(task, result=json.dumps({"done": task.id}))


@pytest.fixture(scope="module")
def flow_appliance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Appliance]:
    appliance = Appliance(tmp_path_factory.mktemp("console-flows") / "data")
    assert wait_for(lambda: Web(appliance.base).get("/workflows")[0] == 200, 20)
    worker = StepWorker(appliance)
    worker.thread.start()
    try:
        yield appliance
    finally:
        worker.stop.set()
        worker.thread.join(10)
        worker.client.close()
        assert appliance.stop() == 0, appliance.log()[-3000:]


def shoot(driver: WebDriver, name: str) -> None:
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def wait_text(driver: WebDriver, css: str, text: str, timeout: float = 15) -> None:
    WebDriverWait(driver, timeout).until(
        expected_conditions.text_to_be_present_in_element((By.CSS_SELECTOR, css), text)
    )


def node_colours(driver: WebDriver) -> dict[str, str]:
    colours = driver.execute_script(
        "return document.getElementById('graph').atpGraph.nodes()"
        ".map(function (n) { return [n.id(), n.style('background-color')]; });"
    )
    return {name: colour.replace(" ", "") for name, colour in colours}


def step_states(driver: WebDriver) -> dict[str, str]:
    """Read in one script: the run page swaps its body every second while the run goes on."""
    pairs = driver.execute_script(
        "return Array.from(document.querySelectorAll('#steps tr[data-step]')).map("
        "function (r) { return [r.dataset.step, r.querySelector('td.state').textContent]; });"
    )
    return dict(pairs)


def type_into(driver: WebDriver, field: str, text: str) -> None:
    box = driver.find_element(By.ID, field)
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(text)


def drag_edge(driver: WebDriver, source: str, target: str) -> None:
    """With Connect on: press on `source`, move in small steps onto `target`, release."""
    canvas = driver.find_element(By.ID, "canvas")
    size = canvas.size
    where = driver.execute_script(
        "var cy = window.atpEditor.cy, out = {};"
        "cy.nodes().forEach(function (n) { out[n.data('name')] = n.renderedPosition(); });"
        "return out;"
    )
    (x0, y0), (x1, y1) = ((where[n]["x"], where[n]["y"]) for n in (source, target))
    chain = ActionChains(driver, duration=20)
    chain.move_to_element_with_offset(canvas, x0 - size["width"] / 2, y0 - size["height"] / 2)
    chain.click_and_hold()
    for _ in range(10):
        chain.move_by_offset((x1 - x0) / 10, (y1 - y0) / 10)
    chain.pause(0.3).release().perform()


def add_step(driver: WebDriver, name: str, topic: str, payload: str, delay: str = "") -> None:
    driver.find_element(By.ID, "add-step").click()
    type_into(driver, "f-name", name)
    type_into(driver, "f-topic", topic)
    type_into(driver, "f-payload", payload)
    if delay:
        type_into(driver, "f-delay", delay)


def test_the_editor_builds_a_fan_out_with_a_delay_saves_it_and_a_run_succeeds(
    browser: WebDriver, flow_appliance: Appliance
) -> None:
    browser.get(f"{flow_appliance.base}/editor")
    type_into(browser, "wf-name", "fan-out")
    add_step(browser, "start", "wf-a", '{"user": "{{ input.user }}"}')
    add_step(browser, "later", "wf-b", '{"from": "{{ steps.start.output.done }}"}', delay="1s")
    add_step(browser, "now", "wf-b", "{}")
    browser.find_element(By.ID, "connect").click()
    drag_edge(browser, "start", "later")
    drag_edge(browser, "start", "now")
    assert browser.execute_script("return window.atpEditor.cy.edges().length") == 2
    wait_text(browser, "#check", "valid")
    browser.find_element(By.ID, "layout").click()
    shoot(browser, "editor")
    browser.find_element(By.ID, "save").click()
    wait_text(browser, "#saved-version", "Saved version 1")
    assert "+    delay_ms: 1s" in browser.find_element(By.ID, "save-diff").text
    with flow_appliance.client() as client:
        stored = client.get_workflow("fan-out")
    assert [(s.name, s.topic, list(s.after), s.delay_ms) for s in stored.steps] == [
        ("start", "wf-a", [], 0),
        ("later", "wf-b", ["start"], 1000),
        ("now", "wf-b", ["start"], 0),
    ]
    type_into(browser, "start-input", '{"user": "ada"}')
    browser.find_element(By.ID, "start-run").click()
    link = WebDriverWait(browser, 10).until(
        expected_conditions.visibility_of_element_located((By.ID, "run-link"))
    )
    link.click()
    wait_text(browser, "#run-state", "SUCCEEDED", timeout=30)
    assert step_states(browser) == {"start": "SUCCEEDED", "later": "SUCCEEDED", "now": "SUCCEEDED"}
    assert set(node_colours(browser).values()) == {GREEN}
    shoot(browser, "run")
    run_id = browser.current_url.rsplit("/", 1)[1]
    with flow_appliance.client() as client:
        run = client.get_run(run_id)
    by_name = {s.name: s for s in run.steps}
    assert by_name["later"].due_ms >= by_name["start"].finished_ms + 1000  # the delay held
    assert json.loads(by_name["start"].output) == {"done": by_name["start"].task_id}


def test_a_bad_definition_shows_the_server_s_message_and_saves_nothing(
    browser: WebDriver, flow_appliance: Appliance
) -> None:
    browser.get(f"{flow_appliance.base}/editor")
    type_into(browser, "wf-name", "broken")
    add_step(browser, "only", "wf-a", "{{ input.x ")
    wait_text(browser, "#check", "steps[0].payload")
    browser.find_element(By.ID, "save").click()
    wait_text(browser, "#check", "steps[0].payload")
    assert browser.find_element(By.ID, "check").get_attribute("class") == "bad"
    assert browser.find_element(By.ID, "saved").get_attribute("hidden") is not None
    with flow_appliance.client() as client:
        assert "broken" not in {w.name for w in client.list_workflows()}


def demo_workflows() -> list[dict[str, Any]]:
    raw: list[dict[str, Any]] = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())[
        "workflows"
    ]
    return raw


def test_yaml_and_the_editor_make_the_same_definition(
    browser: WebDriver, flow_appliance: Appliance
) -> None:
    """config/demo.yaml's workflows, put as the config file puts them, opened in the editor and
    saved unchanged: the new version is the same definition, and the editor's YAML parses back
    to it."""
    with flow_appliance.client() as client:
        for item in demo_workflows():
            [checked] = definitions.from_config([item], 1 << 20)
            from_yaml = client.get_workflow(
                item["name"], client.put_workflow(drafts.to_pb(checked))
            )
            browser.get(f"{flow_appliance.base}/editor?workflow={item['name']}")
            wait_text(browser, "#check", "valid")
            browser.find_element(By.ID, "save").click()
            wait_text(browser, "#saved-version", f"Saved version {from_yaml.version + 1}")
            assert "+" not in {k for k, _ in flows.diff(from_yaml, from_yaml)}
            from_editor = client.get_workflow(item["name"])
            assert list(from_editor.steps) == list(from_yaml.steps), item["name"]
            shown = yaml.safe_load(browser.find_element(By.ID, "yaml-preview").text)
            assert definitions.from_config(shown, 1 << 20) == [checked]


def test_a_definition_page_draws_the_graph_lists_versions_and_diffs(
    browser: WebDriver, flow_appliance: Appliance
) -> None:
    with flow_appliance.client() as client:
        client.put_workflow(Workflow("versions").step("a", "wf-a").step("b", "wf-a", after="a"))
        client.put_workflow(
            Workflow("versions").step("a", "wf-a").step("b", "wf-a", after="a", delay="2s")
        )
    browser.get(f"{flow_appliance.base}/workflows")
    shoot(browser, "workflows")
    browser.find_element(By.LINK_TEXT, "versions").click()
    wait_text(browser, "#version", "version 2 (latest)")
    WebDriverWait(browser, 10).until(lambda d: len(node_colours(d)) == 2)
    edges = browser.execute_script(
        "return document.getElementById('graph').atpGraph.edges().map(e => e.id())"
    )
    assert edges == ["a->b"]
    diff = browser.find_element(By.ID, "diff").text
    assert "+    delay_ms: 2s" in diff and "version 1" in diff
    versions = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#versions li")]
    assert versions[0].startswith("version 2") and versions[1].startswith("version 1")
    shoot(browser, "workflow")


def start_runs(client: Client, count: int) -> list[str]:
    client.put_workflow(Workflow("idle").step("wait", "wf-idle"))
    return [client.start_run("idle", id=f"idle-{i:02d}") for i in range(count)]


def test_runs_are_listed_with_filters_and_pages(
    browser: WebDriver, flow_appliance: Appliance
) -> None:
    with flow_appliance.client() as client:
        ids = start_runs(client, 27)
        client.cancel_run(ids[0])
    browser.get(f"{flow_appliance.base}/runs?workflow=idle")
    first = [
        r.get_attribute("data-id")
        for r in browser.find_elements(By.CSS_SELECTOR, "#runs tr[data-id]")
    ]
    assert len(first) == 25
    browser.find_element(By.ID, "next-page").click()
    wait_text(browser, "#first-page", "first page")
    rest = [
        r.get_attribute("data-id")
        for r in browser.find_elements(By.CSS_SELECTOR, "#runs tr[data-id]")
    ]
    assert sorted(first + rest) == sorted(ids)
    browser.get(f"{flow_appliance.base}/runs")
    browser.find_element(By.CSS_SELECTOR, '#filter-workflow option[value="idle"]').click()
    browser.find_element(By.CSS_SELECTOR, '#filter-state option[value="CANCELED"]').click()
    browser.find_element(By.ID, "filter").click()
    WebDriverWait(browser, 10).until(expected_conditions.url_contains("state=CANCELED"))
    shown = [
        r.get_attribute("data-id")
        for r in browser.find_elements(By.CSS_SELECTOR, "#runs tr[data-id]")
    ]
    assert shown == [ids[0]]
    shoot(browser, "runs")


def test_cancel_a_run_from_its_page(browser: WebDriver, flow_appliance: Appliance) -> None:
    with flow_appliance.client() as client:
        client.put_workflow(
            Workflow("slow").step("first", "wf-a").step("later", "wf-a", after="first", delay="1h")
        )
        run_id = client.start_run("slow")
    browser.get(f"{flow_appliance.base}/runs/{run_id}")
    wait_text(browser, "#steps tr[data-step=first] td.state", "SUCCEEDED")
    assert step_states(browser)["later"] == "SCHEDULED"
    browser.find_element(By.ID, "cancel-run").click()
    wait_text(browser, "#flash", f"run {run_id} canceled")
    assert browser.find_element(By.ID, "run-state").text == "CANCELED"
    assert node_colours(browser) == {"first": GREEN, "later": GREY}
    with flow_appliance.client() as client:
        assert client.get_run(run_id).state == pb.RUN_CANCELED


def test_signal_a_run_from_its_page(browser: WebDriver, flow_appliance: Appliance) -> None:
    with flow_appliance.client() as client:
        client.put_workflow(
            Workflow("gate")
            .signal("paid", "paid")
            .step("ship", "wf-b", "{{ steps.paid.output }}", after="paid")
        )
        run_id = client.start_run("gate")
    browser.get(f"{flow_appliance.base}/runs/{run_id}")
    assert browser.find_element(By.ID, "signal-name").get_attribute("value") == "paid"
    type_into(browser, "signal-payload", '{"amount": 12}')
    browser.find_element(By.ID, "send-signal").click()
    wait_text(browser, "#flash", "signal paid sent")
    wait_text(browser, "#run-state", "SUCCEEDED")
    with flow_appliance.client() as client:
        steps = {s.name: s for s in client.get_run(run_id).steps}
    assert steps["paid"].output == '{"amount": 12}'
    assert steps["ship"].state == pb.STEP_SUCCEEDED
    shoot(browser, "run-signaled")


def test_a_viewer_sees_the_workflow_pages_but_cannot_act(token_appliance: Appliance) -> None:
    with token_appliance.client(ADMIN) as client:
        client.put_workflow(
            Workflow("guarded").signal("ok", "ok").step("then", "wf-idle", after="ok")
        )
        run_id = client.start_run("guarded")
    web = Web(token_appliance.base)
    assert web.sign_in(VIEWER)[0] == 303
    for path in ("/workflows", "/workflows/guarded", "/runs", f"/runs/{run_id}", "/editor"):
        assert web.get(path)[0] == 200, path
    csrf = web.csrf(f"/runs/{run_id}")
    for path, form in (
        (f"/runs/{run_id}/cancel", {}),
        (f"/runs/{run_id}/signal", {"name": "ok", "payload": "{}"}),
        ("/workflows/guarded/start", {"input": "{}"}),
    ):
        code, _, body = web.post(path, {"csrf": csrf, **form})
        assert code == 403 and "(viewer) may not call" in body, body[:300]
    definition = json.dumps({"name": "guarded", "steps": [{"name": "a", "topic": "wf-a"}]})
    code, _, body = web.post("/editor/save", {"csrf": csrf, "definition": definition})
    assert json.loads(body)["status"] == "PermissionDenied"
    admin = Web(token_appliance.base)
    admin.sign_in(ADMIN)
    assert admin.post(f"/runs/{run_id}/cancel", {"csrf": "forged"})[0] == 403  # CSRF
    with token_appliance.client(ADMIN) as client:
        run = client.get_run(run_id)
        assert run.state == pb.RUN_RUNNING and run.steps[0].state == pb.STEP_SCHEDULED
        assert not run.steps[0].output  # no signal came
        assert client.get_workflow("guarded").version == 1
        assert client.list_runs("guarded").runs[0].id == run_id
        assert len(client.list_runs("guarded").runs) == 1
