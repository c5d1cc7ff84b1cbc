"""The overview's paging, sorting and search over HTTP against a real `atp --role=all` with
123 topics: the first page by name is one GetStats page (the fast first paint), any other
order or a search reads every topic; the summary sums every topic."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from appliance.client import Client
from tests.console.appliance import Appliance
from tests.console.web import Web

EXTRA = [f"t-{i:03d}" for i in range(120)]
BULK = 130  # dead letters of topic "t-bulk": more than one page (views.DEAD_PAGE = 100)


@pytest.fixture(scope="module")
def web(open_appliance: Appliance) -> Iterator[Web]:
    with open_appliance.client() as client:
        for i, topic in enumerate(EXTRA):
            client.enqueue_many(topic, ["{}"] * (i % 7 + 1))
        client.enqueue_many("t-bulk", ["{}"] * BULK, ids=[f"b{i:03d}" for i in range(BULK)])
        for task in client.retrieve("t-bulk", batch_size=BULK):
            client.nack(task, "even" if int(task.id[1:]) % 2 == 0 else "odd", dead_letter=True)
        client.enqueue("t-bulk", "done soon", id="ok")
        (done,) = client.retrieve("t-bulk")
        client.ack(done, result='{"sent": 3}')
    yield Web(open_appliance.base)


def shown(body: str) -> list[str]:
    return re.findall(r'<tr data-topic="([^"]+)">', body)


def next_link(body: str) -> str:
    found = re.search(r'<a href="/console(/\?[^"]+)" rel="next">', body)
    assert found, body[-800:]
    return found.group(1).replace("&amp;", "&")


def every(client: Client) -> dict[str, tuple[int, int]]:
    stats = client.stats()
    assert not stats.next_page_token
    return {t.topic: (t.pending, t.dead) for t in stats.topics}


def test_the_first_pages_go_by_name(web: Web) -> None:
    names = sorted(["billing", "emails", "reports", "t-bulk", *EXTRA])
    code, _, body = web.get("/?size=25")
    assert code == 200 and shown(body) == names[:25]
    assert 'hx-get="/console/summary"' in body  # the summary comes after the first paint
    _, _, second = web.get(next_link(body))
    assert shown(second) == names[25:50]


def test_any_other_order_sorts_every_topic(web: Web, open_appliance: Appliance) -> None:
    with open_appliance.client() as client:
        figures = every(client)
    by_pending = sorted(figures, key=lambda t: figures[t][0], reverse=True)
    _, _, body = web.get("/?sort=pending&dir=desc&size=25&page=2")
    got = shown(body)
    assert [figures[t][0] for t in got] == [figures[t][0] for t in by_pending[25:50]]
    assert "page 2 of 5" in body
    _, _, body = web.get("/?sort=topic&dir=desc&size=25&page=1")
    assert shown(body) == sorted(figures, reverse=True)[:25]


def test_search_and_the_summary(web: Web, open_appliance: Appliance) -> None:
    _, _, body = web.get("/?q=T-11&size=25")
    assert shown(body) == [f"t-11{i}" for i in range(10)]
    assert "10 of 124 topics" in body
    with open_appliance.client() as client:
        figures = every(client)
    _, _, summary = web.get("/summary")
    pending = re.search(r'id="total-pending">(\d+)<', summary)
    assert pending and int(pending.group(1)) == sum(p for p, _ in figures.values())
    assert "124 of 124 topics" in summary


def letter_ids(body: str) -> list[str]:
    return re.findall(r'<tr data-id="([^"]+)">', body)


def test_a_topic_pages_its_dead_letters(web: Web) -> None:
    _, _, first = web.get("/topic/t-bulk?show=dead")
    assert '<dd id="dead">130</dd>' in first
    found = re.search(
        r'href="/console(/topic/t-bulk\?show=dead&(?:amp;)?cursor=[^"]+)" rel="next"', first
    )
    assert found, first[-800:]
    _, _, second = web.get(found.group(1).replace("&amp;", "&"))
    ids = letter_ids(first) + letter_ids(second)
    assert len(letter_ids(first)) == 100 and sorted(ids) == [f"b{i:03d}" for i in range(BULK)]
    assert 'rel="next"' not in second


def test_requeue_matching_spans_every_page(web: Web, open_appliance: Appliance) -> None:
    form = {"csrf": web.csrf("/dead?topic=t-bulk"), "topic": "t-bulk", "error": "ODD"}
    code, _, _ = web.post("/dead/requeue", form)
    assert code == 303
    with open_appliance.client() as client:
        bulk = client.stats(["t-bulk"]).topics[0]
        assert (bulk.dead, bulk.due) == (BULK // 2, BULK // 2)
        assert client.get_task("b001", "t-bulk").state.value == "PENDING"
        assert client.get_task("b000", "t-bulk").state.value == "DEAD"


def test_the_task_page_shows_a_succeeded_task_s_result(web: Web) -> None:
    code, _, body = web.get("/task/ok?topic=t-bulk")
    assert code == 200 and '<dd id="state">SUCCEEDED</dd>' in body
    assert '<pre id="result">{&#34;sent&#34;: 3}</pre>' in body
