"""What each console page shows and each action does, through the SDK (appliance.client) only:
the same calls, tokens and roles as any API user. No HTTP here (app.py), no grpc import.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import time
from collections.abc import Iterator

from appliance.client import Client, DeadLetter
from appliance.client.browse import DeadLetterFilter, TaskPage
from appliance.errors import InvalidArgument
from appliance.model import TaskState, TopicStats, WorkerStream

STATS_PAGE = 1000  # topics per GetStats call when the overview reads every topic
STATS_FRESH_S = 5.0  # the overview reuses one reading of every topic this long
SORT_KEYS = ("topic", "pending", "due", "running", "dead", "lag")
PAGE_SIZES = (25, 50, 100, 500)
DEAD_PAGE = 100  # dead letters per ListDeadLetters call
TASK_PAGE = 50  # pending or running tasks per Topic page


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
    workers: int = -1  # worker streams connected to any server (-1: not read)


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
REDRIVE_ROUNDS = 100  # a requeue/purge-matching looks at 100 x 10,000 dead letters at most


@dataclasses.dataclass(frozen=True)
class DeadFilter:
    """Dead letters whose last error contains `error` (any case), dead for at most `within`
    and in [from_ms, until_ms) (0: open); the server applies it (DeadLetterFilter)."""

    error: str = ""
    within: str = ""  # a WITHIN key; "": any time
    from_ms: int = 0
    until_ms: int = 0

    @property
    def empty(self) -> bool:
        return not (self.error or WITHIN.get(self.within) or self.from_ms or self.until_ms)

    def server_filter(self, now_ms: int) -> DeadLetterFilter:
        start, window = self.from_ms, WITHIN.get(self.within, 0)
        if window:
            start = max(start, now_ms - window)
        return DeadLetterFilter(self.error, start, self.until_ms)


def local_ms(value: str, offset_min: str) -> int:
    """A datetime-local form value ('2026-11-30T16:05') in the browser's zone, whose offset the
    page sends (JavaScript's getTimezoneOffset(), minutes behind UTC), as ms since the epoch;
    0 when empty. AtpError (InvalidArgument) when it is no such time."""
    if not value:
        return 0
    try:
        naive = dt.datetime.fromisoformat(value)
        offset = int(offset_min or 0)
    except ValueError:
        raise InvalidArgument(f"not a date and time: {value[:40]!r}") from None
    utc = naive.replace(tzinfo=dt.UTC) + dt.timedelta(minutes=offset)
    return int(utc.timestamp() * 1000)


def dead_page(
    client: Client, topic: str, wanted: DeadFilter, cursor: str
) -> tuple[list[DeadLetter], str]:
    """One page of a topic's dead letters, those `wanted` matches (filtered by the server)."""
    now_ms = int(time.time() * 1000)
    page = client.list_dead_letters(topic, DEAD_PAGE, cursor, wanted.server_filter(now_ms))
    return page.letters, page.next_cursor


def act_on_dead(client: Client, topic: str, wanted: DeadFilter, action: str) -> int:
    """Requeue or purge a topic's dead letters that `wanted` matches, on the server: every one
    when the filter is empty (one call), else RedriveDeadLetters, 10,000 looked at per call."""
    if wanted.empty:
        call = client.requeue_dead_letters if action == "requeue" else client.purge_dead_letters
        return call(topic)
    criteria, cursor, moved = wanted.server_filter(int(time.time() * 1000)), "", 0
    for _ in range(REDRIVE_ROUNDS):
        done = client.redrive_dead_letters(topic, action == "requeue", criteria, cursor=cursor)
        moved += done.count
        cursor = done.next_cursor
        if not cursor:
            break
    return moved


def task_page(
    client: Client, topic: str, state: TaskState, cursor: str, id_prefix: str
) -> TaskPage:
    return client.list_tasks(topic, state, TASK_PAGE, cursor, id_prefix)


@dataclasses.dataclass(frozen=True)
class Worker:
    stream: WorkerStream
    seen_ago_s: float  # since the worker's last message


def connected(client: Client) -> int:
    """How many worker streams are connected to any server (ListWorkers)."""
    return len(client.list_workers().streams)


def workers(client: Client) -> list[Worker]:
    found = client.list_workers()
    return [Worker(w, max(found.now_ms - w.last_seen_ms, 0) / 1000) for w in found.streams]
