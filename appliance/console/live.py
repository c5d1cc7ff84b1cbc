"""The overview's live charts (ADR 0018): every SAMPLE_S, while a browser watches, one sample
per watching token of the enqueued and acked counters (summed over the appliance's processes
from its metrics directory, or its /metrics) and of pending, due, running and dead of the
topics with traffic (one GetStats of those topics). Every topic's totals are read every
TOTALS_EVERY samples only (10,000 topics are ten GetStats pages), or taken free from the
overview's fresh reading, and carried between by the busy topics' changes. The last 15
minutes kept, answered as uPlot's series.

Stdlib and prometheus_client only; must not import redis, grpc or the store.
"""

from __future__ import annotations

import collections
import dataclasses
import glob
import json
import logging
import os
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from appliance.client import Client
from appliance.console.app import Console, Request, Response
from appliance.console.views import Row, row
from appliance.errors import AtpError
from appliance.metrics import OTHER_TOPIC
from appliance.supervisor.http import split_addr

log = logging.getLogger(__name__)
SAMPLE_S = 5.0  # one sample per watching token this often
KEEP = 180  # samples: 15 minutes
WATCH_S = 30.0  # sampling goes on this long after the last browser asked
TOTALS_EVERY = 60  # samples: every topic's totals are read every 5 minutes at least
ALL = ""  # the series of every topic together
COUNTERS = {"atp_tasks_enqueued": 0, "atp_tasks_acked": 1}
GAUGES = ("pending", "due", "running", "dead")


@dataclasses.dataclass(frozen=True)
class Sample:
    at_ms: int
    counters: dict[str, tuple[float, float]]  # topic -> (enqueued, acked) totals
    gauges: dict[str, tuple[int, int, int, int]]  # topic (ALL: the sums) -> pending, due, ...


def read_counters(text: str) -> dict[str, tuple[float, float]]:
    """/metrics' enqueued and acked totals by topic, summed over processes. Only those lines
    go through the parser (a tenth of the CPU: /metrics has thousands of lines)."""
    wanted = tuple(f"{name}_total{{" for name in COUNTERS)
    lines = "\n".join(line for line in text.splitlines() if line.startswith(wanted))
    families = text_string_to_metric_families(lines + "\n")
    # untyped without their TYPE lines: the samples are named *_total
    return _by_topic(one for family in families for one in family.samples)


def local_counters() -> dict[str, tuple[float, float]] | None:
    """The enqueued and acked totals straight from this appliance's multiprocess metrics
    directory (under the supervisor the console is one of its processes): the counter files
    only, summed as the supervisor's /metrics sums them, without its other work (every file,
    every queue's depth from Redis), which cost the charts most of their CPU. None: no such
    directory (a console on its own), read /metrics instead."""
    from prometheus_client import multiprocess

    try:  # the directory the library itself reads, set by the supervisor for its children
        directory = multiprocess.MultiProcessCollector(None)._path  # type: ignore[no-untyped-call]
    except ValueError:
        return None
    files = glob.glob(os.path.join(directory, "counter_*.db"))
    metrics = multiprocess.MultiProcessCollector.merge(files)  # type: ignore[no-untyped-call]
    return _by_topic(one for metric in metrics for one in metric.samples)


def _by_topic(samples: Iterable[Any]) -> dict[str, tuple[float, float]]:
    """The enqueued and acked totals by topic of these metric samples, summed."""
    found: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0])
    for one in samples:
        at = COUNTERS.get(one.name.removesuffix("_total"))
        if at is not None and "topic" in one.labels:
            found[one.labels["topic"]][at] += one.value
    return {topic: (v[0], v[1]) for topic, v in found.items()}


def sample(
    at_ms: int,
    counters: dict[str, tuple[float, float]],
    rows: Iterable[Row],
    sums: tuple[int, int, int, int],
) -> Sample:
    """One token's sample: the counters of the topics it sees (and of the topics past the
    metrics' label limit, together), their gauges, and every topic's totals."""
    seen = {r.topic: r for r in rows}
    mine = {t: c for t, c in counters.items() if t in seen or t == OTHER_TOPIC}
    figures = {t: gauges(r) for t, r in seen.items() if t in mine}
    figures[ALL] = sums
    return Sample(at_ms, mine, figures)


Gauges = tuple[int, int, int, int]


def gauges(r: Row) -> Gauges:
    return (r.pending, r.due, r.running, r.dead)


@dataclasses.dataclass
class Totals:
    """Every topic's sums as last read, and the busy topics' figures at that reading."""

    age: int  # samples since
    sums: Gauges
    base: dict[str, Gauges]

    @classmethod
    def read(cls, every: list[Row], busy: Iterable[str]) -> Totals:
        wanted = set(busy)
        return cls(0, totals(every), {r.topic: gauges(r) for r in every if r.topic in wanted})

    def now(self, busy: dict[str, Gauges]) -> Gauges:
        """The sums moved by what the busy topics changed since (a topic busy since the
        reading counts from its first sample)."""
        for topic, figures in busy.items():
            self.base.setdefault(topic, figures)
        moved = [self.sums[i] + sum(busy[t][i] - self.base[t][i] for t in busy) for i in range(4)]
        return (moved[0], moved[1], moved[2], moved[3])


def totals(rows: Iterable[Row]) -> tuple[int, int, int, int]:
    listed = list(rows)
    found = [sum(getattr(r, g) for r in listed) for g in GAUGES]
    return (found[0], found[1], found[2], found[3])


def series(samples: list[Sample], topic: str) -> dict[str, Any]:
    """uPlot's data for one topic (ALL: every topic): seconds, then enqueued/s and acked/s
    (None before the second sample), then the four gauges."""
    out: dict[str, list[Any]] = {k: [] for k in ("t", "enqueued", "acked", *GAUGES)}
    before: Sample | None = None
    for s in samples:
        out["t"].append(s.at_ms / 1000)
        for i, name in enumerate(("enqueued", "acked")):
            out[name].append(_rate(before, s, topic, i))
        gauge = s.gauges.get(topic)
        for i, name in enumerate(GAUGES):
            out[name].append(gauge[i] if gauge else None)
        before = s
    return out


def _total(s: Sample, topic: str, at: int) -> float:
    if topic == ALL:
        return sum(c[at] for c in s.counters.values())
    return s.counters[topic][at] if topic in s.counters else 0.0


def _rate(before: Sample | None, now: Sample, topic: str, at: int) -> float | None:
    if before is None or now.at_ms <= before.at_ms:
        return None
    delta = _total(now, topic, at) - _total(before, topic, at)
    return round(max(delta, 0.0) * 1000 / (now.at_ms - before.at_ms), 3)  # a restart resets


class Live:
    """Samples for each token a browser watches with; one daemon thread, started at the first
    request and idle while nobody watches."""

    def __init__(
        self,
        metrics_url: str,
        client: Callable[[str], Client],
        every_topic: Callable[[str], list[Row]],
        fresh: Callable[[str], list[Row] | None] = lambda token: None,
    ) -> None:
        self.metrics_url = metrics_url
        self._client = client  # token -> its SDK client
        self._every_topic = every_topic  # token -> every topic's figures (the stats cache)
        self._fresh = fresh  # token -> the stats cache's fresh reading, if any (no call)
        self._lock = threading.Lock()
        self._samples: dict[str, collections.deque[Sample]] = {}
        self._totals: dict[str, Totals] = {}
        self._watched: dict[str, float] = {}  # token -> when a browser last asked (monotonic)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def data(self, token: str, topic: str) -> dict[str, Any]:
        with self._lock:
            first = token not in self._watched
            self._watched[token] = time.monotonic()
            if self._thread is None:
                self._thread = threading.Thread(target=self.run, name="atp-live", daemon=True)
                self._thread.start()
        if first:
            self.run_once()
        with self._lock:
            samples = list(self._samples.get(token, ()))
        topics = sorted({t for s in samples for t in s.counters} - {OTHER_TOPIC})
        chosen = topic if topic in topics else ALL
        return {"step_s": SAMPLE_S, "topics": topics, "topic": chosen, **series(samples, chosen)}

    def run(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            self.run_once()

    def run_once(self) -> None:
        """One sample for each token watched within WATCH_S; a failure is logged, not raised."""
        now = time.monotonic()
        with self._lock:
            tokens = [t for t, at in self._watched.items() if now - at < WATCH_S]
            for gone in [t for t, at in self._watched.items() if now - at >= KEEP * SAMPLE_S]:
                del self._watched[gone]
                self._samples.pop(gone, None)
        if not tokens:
            return
        try:
            counters = local_counters()
            if counters is None:
                with urllib.request.urlopen(self.metrics_url, timeout=5) as reply:
                    counters = read_counters(reply.read().decode())
            at_ms = int(time.time() * 1000)
            for token in tokens:
                taken = self._sample(token, at_ms, counters)
                with self._lock:
                    self._samples.setdefault(token, collections.deque(maxlen=KEEP)).append(taken)
        except Exception:
            log.warning("live chart sample failed", exc_info=True)

    def _sample(self, token: str, at_ms: int, counters: dict[str, tuple[float, float]]) -> Sample:
        busy = sorted(t for t in counters if t != OTHER_TOPIC)
        try:
            stats = self._client(token).stats(busy) if busy else None
            rows = [row(t, stats.now_ms) for t in stats.topics] if stats else []
        except AtpError:  # e.g. a token kept to some topics: its own view of every topic
            rows = [r for r in self._every_topic(token) if r.topic in counters]
        kept = self._totals.get(token)
        every = self._fresh(token)
        if every is None and (kept is None or kept.age >= TOTALS_EVERY):
            every = self._every_topic(token)
        if every is not None:
            kept = Totals.read(every, busy)
        assert kept is not None
        kept.age += 1
        self._totals[token] = kept
        return sample(at_ms, counters, rows, kept.now({r.topic: gauges(r) for r in rows}))

    def close(self) -> None:
        self._stop.set()


def metrics_url(http_addr: str) -> str:
    """The appliance's /metrics on loopback when it listens on every address."""
    host, port = split_addr(http_addr)
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/metrics"


def routes(console: Console) -> dict[tuple[str, str], Callable[[Request, list[str]], Response]]:
    """GET /live?topic=T: the charts' data as JSON (a browser polls it every SAMPLE_S)."""
    found = Live(
        metrics_url(console.settings.http_addr),
        console.client,
        lambda token: console.stats.rows(console.client(token), token),
        console.stats.peek,
    )
    console.closing.append(found.close)

    def answer(request: Request, _: list[str]) -> Response:
        body = json.dumps(found.data(request.token, request.arg("topic")))
        return Response(200, body.encode(), "application/json")

    return {("GET", "live"): answer}
