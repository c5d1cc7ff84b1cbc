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


@pytest.fixture(scope="module")
def web(open_appliance: Appliance) -> Iterator[Web]:
    with open_appliance.client() as client:
        for i, topic in enumerate(EXTRA):
            client.enqueue_many(topic, ["{}"] * (i % 7 + 1))
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
    names = sorted(["billing", "emails", "reports", *EXTRA])
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
    assert "10 of 123 topics" in body
    with open_appliance.client() as client:
        figures = every(client)
    _, _, summary = web.get("/summary")
    pending = re.search(r'id="total-pending">(\d+)<', summary)
    assert pending and int(pending.group(1)) == sum(p for p, _ in figures.values())
    assert "123 of 123 topics" in summary
