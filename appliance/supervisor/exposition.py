"""The supervisor's /metrics: every child's metrics summed from prometheus_client's multiprocess
directory, plus queue depth by topic and state read from Redis at scrape time (one pipeline of
O(1)/O(log n) commands per topic, over raw RESP) for at most `max_topics` topics: the configured
ones first, then the first by name (SORT ... LIMIT in Redis), so a scrape stays small and fast
with any number of topics; `atp_topics` counts them all (GetStats pages through every one).

`prepare()` must run before anything imports prometheus_client in this process (it picks the
multiprocess mode from the environment at import). Must not import redis or grpc.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

from appliance.keys import DEPTH_COMMANDS, Keys, depth
from appliance.supervisor import resp

log = logging.getLogger(__name__)
ENV = "PROMETHEUS_MULTIPROC_DIR"
STATES = ("pending", "due", "running", "dead")


def prepare() -> str:
    """A fresh multiprocess directory for this supervisor and its children (set in our env)."""
    directory = tempfile.mkdtemp(prefix="atp-metrics-")
    os.environ[ENV] = directory
    return directory


def cleanup(directory: str) -> None:
    shutil.rmtree(directory, ignore_errors=True)


def child_exited(pid: int) -> None:
    """Drop a dead child's live gauges (its counters stay in the sums)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


class QueueDepth:
    """A collector: atp_queue_depth{topic,state} and atp_queue_lag_seconds{topic}."""

    def __init__(
        self, redis_url: str, prefix: str, max_topics: int = 100, pinned: tuple[str, ...] = ()
    ) -> None:
        self.redis_url = redis_url
        self.prefix = prefix
        self.max_topics = max_topics
        self.pinned = pinned[:max_topics]
        self.known = 0

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        depth = GaugeMetricFamily(
            "atp_queue_depth",
            "Tasks by topic and state, read from Redis "
            "at scrape time (due: pending and already due).",
            labels=["topic", "state"],
        )
        lag = GaugeMetricFamily(
            "atp_queue_lag_seconds",
            "How long the oldest due task of a topic has been waiting (0 when none is due).",
            labels=["topic"],
        )
        known = GaugeMetricFamily(
            "atp_topics",
            "Topics known (queue depth and lag cover at most metrics_max_topics of them).",
        )
        try:
            for topic, values, lag_s in self._read():
                for state, value in zip(STATES, values, strict=True):
                    depth.add_metric([topic, state], value)
                lag.add_metric([topic], lag_s)
            known.add_metric([], self.known)
        except (OSError, ValueError) as exc:
            log.warning("queue depth not read: %s", exc)
        yield depth
        yield lag
        yield known

    def _read(self) -> Iterator[tuple[str, list[int], float]]:
        keys = Keys(self.prefix)
        first = ["SORT", keys.topics, "ALPHA", "LIMIT", "0", str(self.max_topics)]
        replies = resp.execute(self.redis_url, [["TIME"], ["SCARD", keys.topics], first])
        for reply in replies:
            if isinstance(reply, resp.RespError):
                raise ValueError(str(reply))
        now_reply, self.known, named = replies
        now = int(now_reply[0]) * 1000 + int(now_reply[1]) // 1000
        chosen = dict.fromkeys([*self.pinned, *(named or [])])
        topics = list(chosen)[: self.max_topics]
        commands = [c for t in topics for c in keys.topic(t).depth_commands(now)]
        replies = resp.execute(self.redis_url, commands) if commands else []
        n = DEPTH_COMMANDS
        for i, topic in enumerate(topics):
            pending, due, running, dead, oldest = depth(replies[i * n : i * n + n])
            yield topic, [pending, due, running, dead], max(now - (oldest or now), 0) / 1000


def handler(
    redis_url: str, prefix: str, max_topics: int = 100, pinned: tuple[str, ...] = ()
) -> Any:
    """The /metrics route: (code, content type, body) for the supervisor's HTTP server."""
    from prometheus_client import (
        CONTENT_TYPE_LATEST,
        CollectorRegistry,
        generate_latest,
        multiprocess,
    )

    def serve(_status: object) -> tuple[int, str, bytes]:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        registry.register(QueueDepth(redis_url, prefix, max_topics, pinned))
        return 200, CONTENT_TYPE_LATEST, generate_latest(registry)

    return serve
