"""Every Prometheus metric atp exports, defined once (names follow the conventions: `atp_`
prefix, `_total` counters, `_seconds` durations). Documented in docs/OPERATIONS.md.

Under the supervisor every child writes into prometheus_client's multiprocess directory
(PROMETHEUS_MULTIPROC_DIR, set by the supervisor before any child starts), and the
supervisor's /metrics sums them: a restarted child neither resets nor doubles a total.
Topic labels are bounded: each process gives its own label to the first `metrics_max_topics`
topics it sees (100 by default) and counts every other topic as topic="_other" (no topic can be
named so), so 20k topics cannot make 20k series per metric.
Imports prometheus_client only; must not import redis or grpc.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge, Histogram

TOPIC = ["topic"]
OTHER_TOPIC = "_other"
_labeled: set[str] = set()
_limit = [100]


def limit_topic_labels(limit: int) -> None:
    """How many topics get a label of their own in this process (settings.metrics_max_topics)."""
    _limit[0] = limit


def topic_label(topic: str) -> str:
    if topic in _labeled:
        return topic
    if len(_labeled) < _limit[0]:
        _labeled.add(topic)
        return topic
    return OTHER_TOPIC


def _bounded(values: tuple[Any, ...], named: dict[str, Any]) -> tuple[Any, ...]:
    if "topic" in named:
        named["topic"] = topic_label(str(named["topic"]))
    return (topic_label(str(values[0])), *values[1:]) if values else values


class TopicCounter(Counter):
    """A Counter whose `topic` label (the first) goes through topic_label."""

    def labels(self, *values: Any, **named: Any) -> TopicCounter:
        return super().labels(*_bounded(values, named), **named)


class TopicHistogram(Histogram):
    """A Histogram whose `topic` label (the first) goes through topic_label."""

    def labels(self, *values: Any, **named: Any) -> TopicHistogram:
        return super().labels(*_bounded(values, named), **named)


# Sub-millisecond to minutes: lateness is ms when healthy and minutes when a queue backs up.
_SUB_SECOND = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5)
LATENESS_BUCKETS = (*_SUB_SECOND, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)
# Handler and call durations: 1 ms to 5 min, the same ladder with fewer sub-ms steps.
DURATION_BUCKETS = (0.001, 0.005, *(b for b in LATENESS_BUCKETS if 0.01 <= b <= 300.0))

ENQUEUED = TopicCounter(
    "atp_tasks_enqueued",
    "Tasks created by Enqueue/EnqueueBatch or fired by a schedule (duplicates of an existing id "
    "are not counted).",
    TOPIC,
)
DELIVERED = TopicCounter(
    "atp_tasks_delivered", "Tasks handed out by Retrieve under a lease.", TOPIC
)
ACKED = TopicCounter("atp_tasks_acked", "Tasks acknowledged (SUCCEEDED).", TOPIC)
NACKED = TopicCounter(
    "atp_tasks_nacked", "Failed attempts reported by Nack (retried or dead-lettered).", TOPIC
)
RELEASED = TopicCounter(
    "atp_tasks_released", "Tasks given back unfinished by a stopping worker.", TOPIC
)
DEAD_LETTERED = TopicCounter(
    "atp_tasks_dead_lettered",
    "Tasks moved to the dead-letter queue, by Nack or by lease expiry with retries spent.",
    TOPIC,
)
CANCELED = TopicCounter(
    "atp_tasks_canceled", "Pending tasks canceled by Delete (each task once).", TOPIC
)
LEASES_LOST = TopicCounter(
    "atp_leases_lost",
    "Leases released because the worker stream holding them ended without a goodbye.",
    TOPIC,
)
LEASES_EXPIRED = TopicCounter(
    "atp_leases_expired",
    "Leases that expired and were recovered by a watchdog (the task retried or dead-lettered).",
    TOPIC,
)
LATENESS = TopicHistogram(
    "atp_delivery_lateness_seconds",
    "Delivery time minus due time, at Retrieve (Redis clock).",
    TOPIC,
    buckets=LATENESS_BUCKETS,
)
HANDLER = TopicHistogram(
    "atp_handler_duration_seconds",
    "Time a worker's handler ran, by outcome (ack, retry, dead_letter, release).",
    ["topic", "outcome"],
    buckets=DURATION_BUCKETS,
)
GRPC_REQUESTS = Counter(
    "atp_grpc_requests", "gRPC calls served, by method and status code.", ["method", "code"]
)
GRPC_LATENCY = Histogram(
    "atp_grpc_request_duration_seconds",
    "Time to answer a gRPC call (long-polls include their wait).",
    ["method"],
    buckets=DURATION_BUCKETS,
)
SCHEDULER_LEADER = Gauge(
    "atp_scheduler_leader",
    "1 while a scheduler process of this appliance leads.",
    multiprocess_mode="livemax",
)
TICKS_FIRED = Counter(
    "atp_scheduler_ticks_fired", "Schedule ticks enqueued by the leader.", ["schedule"]
)
CHILD_RESTARTS = Counter(
    "atp_supervisor_child_restarts",
    "Children the supervisor restarted after they exited.",
    ["child"],
)
