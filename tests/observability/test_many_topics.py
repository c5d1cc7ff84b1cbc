"""20,000 topics: /metrics keeps a bounded number of series (metrics_max_topics topics with
labels of their own, the rest as topic="_other") and a scrape takes under 100 ms."""

from __future__ import annotations

import statistics
import time
import urllib.request
from pathlib import Path

import grpc
from prometheus_client.parser import text_string_to_metric_families

from appliance.proto import queue_pb2 as pb
from appliance.proto import queue_pb2_grpc as pb_grpc
from tests.roles.test_appliance import Supervised

TOPICS = 20_000
FAST = {"fast": {"executor": "python", "callable": "tests.roles.handlers:slow"}}


def timed_scrape(app: Supervised) -> tuple[float, str]:
    started = time.perf_counter()
    with urllib.request.urlopen(f"http://{app.http}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    return time.perf_counter() - started, text


def test_a_scrape_stays_small_and_fast_with_20k_topics(
    redis_url: str, redis_client: object, tmp_path: Path
) -> None:
    app = Supervised(redis_url, tmp_path, FAST, f"--max-topics={TOPICS + 10}")
    try:
        app.ready()
        with grpc.insecure_channel(app.grpc) as channel:
            stub = pb_grpc.DelayQueueServiceStub(channel)
            for start in range(0, TOPICS, 1000):
                requests = [
                    pb.EnqueueRequest(topic=f"many-{i:05d}", payload="x", delay_seconds=600)
                    for i in range(start, start + 1000)
                ]
                stub.EnqueueBatch(pb.EnqueueBatchRequest(requests=requests), timeout=30)
            timed_scrape(app)  # warm
            times, text = [], ""
            for _ in range(5):
                took, text = timed_scrape(app)
                times.append(took)
        series: dict[str, set[str]] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if "topic" in sample.labels:
                    series.setdefault(sample.name, set()).add(sample.labels["topic"])
        enqueued = series["atp_tasks_enqueued_total"]
        assert len(enqueued) <= 101 and "_other" in enqueued
        assert len(series["atp_queue_depth"]) <= 100
        assert f"atp_topics {float(TOPICS)}" in text
        median = statistics.median(times)
        print(f"\n/metrics with {TOPICS} topics: median {median * 1000:.1f} ms, {len(text)} bytes")
        assert median < 0.1, times
    finally:
        app.stop()
