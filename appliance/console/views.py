"""What each console page shows and each action does, through the SDK (appliance.client) only:
the same calls, tokens and roles as any API user. No HTTP here (app.py), no grpc import.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator

from appliance.client import Client, DeadLetter
from appliance.model import TopicStats

STATS_PAGE = 1000  # topics per GetStats call when the overview reads every topic
STATS_FRESH_S = 5.0  # the overview reuses one reading of every topic this long
SORT_KEYS = ("topic", "pending", "due", "running", "dead", "lag")
PAGE_SIZES = (25, 50, 100, 500)
DEAD_PAGE = 100  # dead letters per ListDeadLetters call
DEAD_SCAN_MAX = 100_000  # a filtered requeue/purge looks at this many dead letters at most


@dataclasses.dataclass(frozen=True)
class Row:
    topic: str
    pending: int
    due: int
    running: int
    dead: int
    lag_ms: int  # age of the oldest due task; 0: none due

    def key(self, column: str) -> int | str:
        return self.lag_ms if column == "lag" else getattr(self, column)


@dataclasses.dataclass(frozen=True)
class Summary:
    matched: int  # topics matching the search
    topics: int  # every topic
    total: Row  # sums over every topic (lag: the largest)
    leader: str


@dataclasses.dataclass(frozen=True)
class Overview:
    rows: list[Row]  # this page
    page: int  # 0: a page by name (`after`), counted from nowhere
    pages: int
    summary: Summary | None  # None: the page shows it once read (after the first paint)
    next_after: str = ""  # by-name paging: the next page starts after this topic


def row(stats: TopicStats, now_ms: int) -> Row:
    lag = max(now_ms - stats.oldest_due_ms, 0) if stats.oldest_due_ms > 0 else 0
    return Row(stats.topic, stats.pending, stats.due, stats.running, stats.dead, lag)


class StatsCache:
    """Every topic's figures, read page by page and kept STATS_FRESH_S, one reading per token."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_token: dict[str, tuple[float, list[Row]]] = {}

    def rows(self, client: Client, token: str) -> list[Row]:
        with self._lock:
            cached = self._by_token.get(token)
            if cached is not None and time.monotonic() - cached[0] < STATS_FRESH_S:
                return cached[1]
        rows = list(read_all_stats(client))
        with self._lock:
            self._by_token[token] = (time.monotonic(), rows)
        return rows

    def peek(self, token: str) -> list[Row] | None:
        """The fresh reading, if there is one (no call)."""
        with self._lock:
            cached = self._by_token.get(token)
        fresh = cached is not None and time.monotonic() - cached[0] < STATS_FRESH_S
        return cached[1] if cached is not None and fresh else None

    def forget(self) -> None:
        """After an action: the next page shows fresh figures."""
        with self._lock:
            self._by_token.clear()


def read_all_stats(client: Client) -> Iterator[Row]:
    token = ""
    while True:
        stats = client.stats(page_size=STATS_PAGE, page_token=token)
        yield from (row(t, stats.now_ms) for t in stats.topics)
        token = stats.next_page_token
        if not token:
            return


def search(rows: list[Row], q: str) -> list[Row]:
    return [r for r in rows if q.lower() in r.topic.lower()] if q else rows


def summary(rows: list[Row], q: str, leader: str) -> Summary:
    total = Row(
        "all",
        sum(r.pending for r in rows),
        sum(r.due for r in rows),
        sum(r.running for r in rows),
        sum(r.dead for r in rows),
        max((r.lag_ms for r in rows), default=0),
    )
    return Summary(len(search(rows, q)), len(rows), total, leader)


def overview(
    rows: list[Row], q: str, sort: str, desc: bool, page: int, size: int, leader: str
) -> Overview:
    """A page of every topic, searched and sorted by any column (needs every topic's figures)."""
    matched = search(rows, q)
    column = sort if sort in SORT_KEYS else "topic"
    ordered = sorted(matched, key=lambda r: r.key(column), reverse=desc)
    pages = max((len(ordered) + size - 1) // size, 1)
    page = min(max(page, 1), pages)
    window = ordered[(page - 1) * size : page * size]
    return Overview(window, page, pages, summary(rows, q, leader))


def first_pages(client: Client, size: int, after: str) -> Overview:
    """By topic name, the order GetStats pages in: one call of `size` topics, so the first
    paint does not wait for 10,000 topics' figures (the summary comes after, by htmx)."""
    stats = client.stats(page_size=size, page_token=after)
    rows = [row(t, stats.now_ms) for t in stats.topics]
    return Overview(rows, 0, 0, None, stats.next_page_token)


def leader(client: Client) -> str:
    status = client.scheduler_status()
    return status.leader_id or "none"


WITHIN = {"": 0, "1h": 3_600_000, "24h": 86_400_000, "7d": 604_800_000}  # dead for at most


@dataclasses.dataclass(frozen=True)
class DeadFilter:
    """Dead letters whose last error contains `error` (any case), dead for at most `within`."""

    error: str = ""
    within: str = ""  # a WITHIN key; "": any time

    @property
    def empty(self) -> bool:
        return not self.error and not WITHIN.get(self.within)

    def matches(self, letter: DeadLetter, now_ms: int) -> bool:
        window = WITHIN.get(self.within, 0)
        if window and letter.dead_at_ms < now_ms - window:
            return False
        return self.error.lower() in letter.task.last_error.lower()


def matching_dead(
    client: Client, topic: str, wanted: DeadFilter, limit: int = DEAD_SCAN_MAX
) -> Iterator[DeadLetter]:
    """The topic's dead letters that `wanted` matches, looking at `limit` at most."""
    cursor, seen, now_ms = "", 0, int(time.time() * 1000)
    while seen < limit:
        page = client.list_dead_letters(topic, limit=DEAD_PAGE, cursor=cursor)
        seen += len(page.letters)
        yield from (d for d in page.letters if wanted.matches(d, now_ms))
        cursor = page.next_cursor
        if not cursor:
            return


def dead_page(
    client: Client, topic: str, wanted: DeadFilter, cursor: str
) -> tuple[list[DeadLetter], str]:
    """One page of a topic's dead letters, those `wanted` matches."""
    page = client.list_dead_letters(topic, limit=DEAD_PAGE, cursor=cursor)
    now_ms = int(time.time() * 1000)
    return [d for d in page.letters if wanted.matches(d, now_ms)], page.next_cursor


def act_on_dead(client: Client, topic: str, wanted: DeadFilter, action: str) -> int:
    """Requeue or purge a topic's dead letters that `wanted` matches: every one when the
    filter is empty (one call), else the matching ids, DEAD_PAGE a call (not one per task)."""
    call = client.requeue_dead_letters if action == "requeue" else client.purge_dead_letters
    if wanted.empty:
        return call(topic)
    ids = [d.task.id for d in matching_dead(client, topic, wanted)]
    return sum(call(topic, ids[i : i + DEAD_PAGE]) for i in range(0, len(ids), DEAD_PAGE))
