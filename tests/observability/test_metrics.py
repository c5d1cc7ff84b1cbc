"""/metrics of a running supervised appliance: counters follow a known workload, survive a
worker restart without resetting or doubling, and depth gauges match GetStats. Logs are JSON."""

from __future__ import annotations

import json
import os
import signal
import urllib.request
from pathlib import Path

import grpc
from prometheus_client.parser import text_string_to_metric_families

from appliance.proto import queue_pb2 as pb
from appliance.proto import queue_pb2_grpc as pb_grpc
from tests.roles.test_appliance import Supervised, wait_for

FAST = {"fast": {"executor": "python", "callable": "tests.roles.handlers:slow"}}


def scrape(app: Supervised) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://{app.http}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(samples: dict, name: str, **labels: str) -> float:  # type: ignore[type-arg]
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_follow_the_workload_and_survive_a_worker_restart(
    redis_url: str, redis_client: object, tmp_path: Path
) -> None:
    app = Supervised(redis_url, tmp_path, FAST)
    try:
        app.ready()
        with grpc.insecure_channel(app.grpc) as channel:
            stub = pb_grpc.DelayQueueServiceStub(channel)
            for i in range(5):
                stub.Enqueue(pb.EnqueueRequest(topic="fast", payload="0", id=f"f{i}"))
            stub.Enqueue(pb.EnqueueRequest(topic="later", payload="x", delay_seconds=600))
            assert wait_for(
                lambda: value(scrape(app), "atp_tasks_acked_total", topic="fast") == 5
            ), app.output()
            before = scrape(app)
            assert value(before, "atp_tasks_enqueued_total", topic="fast") == 5
            assert value(before, "atp_tasks_delivered_total", topic="fast") == 5
            assert value(before, "atp_delivery_lateness_seconds_count", topic="fast") == 5
            assert (
                value(before, "atp_handler_duration_seconds_count", topic="fast", outcome="ack")
                == 5
            )
            assert value(before, "atp_grpc_requests_total", method="Enqueue", code="OK") == 6
            stats = stub.GetStats(pb.GetStatsRequest(topics=["later", "fast"]))
            for row in stats.topics:
                for state in ("pending", "due", "running", "dead"):
                    assert value(
                        before, "atp_queue_depth", topic=row.topic, state=state
                    ) == getattr(row, state)

            worker = app.child("worker")
            os.kill(int(worker["pid"]), signal.SIGKILL)  # type: ignore[call-overload]
            assert wait_for(
                lambda: (
                    app.child("worker")["restarts"] == 1
                    and app.child("worker")["state"] == "RUNNING"
                )
            )
            stub.Enqueue(pb.EnqueueRequest(topic="fast", payload="0", id="after"))
            assert wait_for(
                lambda: value(scrape(app), "atp_tasks_acked_total", topic="fast") == 6
            ), app.output()
            after = scrape(app)
            assert (
                value(after, "atp_handler_duration_seconds_count", topic="fast", outcome="ack") == 6
            )
            assert value(after, "atp_supervisor_child_restarts_total", child="worker-1") == 1
    finally:
        assert app.stop() == 0, app.output()


def test_log_lines_are_json_with_the_fields(
    redis_url: str, redis_client: object, tmp_path: Path
) -> None:
    app = Supervised(redis_url, tmp_path, FAST)
    try:
        app.ready()
    finally:
        app.stop()
    lines = [
        json.loads(line) for line in app.log_path.read_text().splitlines() if line.startswith("{")
    ]
    assert lines
    for line in lines:
        assert {"time", "level", "role", "pid", "message"} <= set(line)
    assert {"supervisor", "server", "worker", "watchdog"} <= {line["role"] for line in lines}
