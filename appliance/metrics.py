"""Every Prometheus metric atp exports, defined once (names follow the conventions: `atp_`
prefix, `_total` counters, `_seconds` durations). Documented in docs/OPERATIONS.md.

Under the supervisor every child writes into prometheus_client's multiprocess directory
(PROMETHEUS_MULTIPROC_DIR, set by the supervisor before any child starts), and the
supervisor's /metrics sums them: a restarted child neither resets nor doubles a total.
Imports prometheus_client only; must not import redis or grpc.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

TOPIC = ["topic"]
# Sub-millisecond to minutes: lateness is ms when healthy and minutes when a queue backs up.
LATENESS_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
)
DURATION_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
)

ENQUEUED = Counter(
    "atp_tasks_enqueued",
    "Tasks created by Enqueue/EnqueueBatch or fired by a schedule (duplicates of an existing id "
    "are not counted).",
    TOPIC,
)
DELIVERED = Counter("atp_tasks_delivered", "Tasks handed out by Retrieve under a lease.", TOPIC)
ACKED = Counter("atp_tasks_acked", "Tasks acknowledged (SUCCEEDED).", TOPIC)
NACKED = Counter(
    "atp_tasks_nacked", "Failed attempts reported by Nack (retried or dead-lettered).", TOPIC
)
RELEASED = Counter("atp_tasks_released", "Tasks given back unfinished by a stopping worker.", TOPIC)
DEAD_LETTERED = Counter(
    "atp_tasks_dead_lettered",
    "Tasks moved to the dead-letter queue, by Nack or by lease expiry with retries spent.",
    TOPIC,
)
CANCELED = Counter(
    "atp_tasks_canceled", "Pending tasks canceled by Delete (each task once).", TOPIC
)
LEASES_EXPIRED = Counter(
    "atp_leases_expired",
    "Leases that expired and were recovered by a watchdog (the task retried or dead-lettered).",
    TOPIC,
)
LATENESS = Histogram(
    "atp_delivery_lateness_seconds",
    "Delivery time minus due time, at Retrieve (Redis clock).",
    TOPIC,
    buckets=LATENESS_BUCKETS,
)
HANDLER = Histogram(
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
