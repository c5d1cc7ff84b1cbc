"""A real `atp --role=all` (embedded Redis, throwaway data dir) for the console tests, and a
seeded workload whose figures the pages must show."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from appliance.api._proto import queue_pb2 as pb
from appliance.client import Client
from tests.redis_server import free_port
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]

# topic: (tasks due now, tasks due in an hour, dead letters with each error)
WORKLOAD: dict[str, tuple[int, int, dict[str, int]]] = {
    "billing": (7, 3, {"card declined": 4, "timeout talking to bank": 2}),
    "emails": (12, 0, {"smtp 550 mailbox unavailable": 3}),
    "reports": (0, 5, {}),
}
SCHEDULE_ID = "nightly-report"


class Appliance:
    """`atp --role=all` on free loopback ports; stop() drains it (SIGTERM) and checks exit 0."""

    def __init__(self, data_dir: Path, tokens: list[dict[str, str]] | None = None) -> None:
        self.grpc_addr = f"127.0.0.1:{free_port()}"
        self.http_addr = f"127.0.0.1:{free_port()}"
        self.base = f"http://{self.http_addr}/console"
        self.data_dir = data_dir
        config = data_dir.parent / f"{data_dir.name}.json"  # JSON is YAML
        config.write_text(json.dumps({"tokens": tokens or []}))
        argv = [
            *(sys.executable, "-m", "appliance", "--role=all", "--workers=1"),
            *(f"--config={config}", f"--data-dir={data_dir}", "--drain-timeout=5s"),
            *(f"--grpc-addr={self.grpc_addr}", f"--http-addr={self.http_addr}"),
        ]
        self.log_path = data_dir.parent / f"{data_dir.name}.log"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=log)
        if not wait_for(self._ready, 60, every=0.1):
            self.stop()
            raise RuntimeError(f"atp did not become ready:\n{self.log()[-3000:]}")

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.http_addr}/readyz", timeout=2) as reply:
                return bool(reply.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def client(self, token: str | None = None) -> Client:
        return Client(self.grpc_addr, token=token)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


def seed(client: Client) -> None:
    """WORKLOAD's dead letters (enqueued, leased, nacked to the dead-letter set), then its due
    and delayed tasks, and one schedule (a daily cron in Paris)."""
    for topic, (due, later, dead) in WORKLOAD.items():
        for error, count in dead.items():
            key = error.split()[0]
            for i in range(count):
                client.enqueue(topic, f'{{"fails": "{key}"}}', id=f"{topic}-{key}-{i}")
            for task in client.retrieve(topic, batch_size=count):
                client.nack(task, error, dead_letter=True)
        for i in range(due):
            client.enqueue(topic, f'{{"n": {i}}}', id=f"{topic}-due-{i}")
        for i in range(later):
            client.enqueue(topic, f'{{"later": {i}}}', id=f"{topic}-later-{i}", delay=3600)
    schedule = pb.Schedule(
        id=SCHEDULE_ID, topic="reports", payload="{}", cron="0 3 * * *", timezone="Europe/Paris"
    )
    client.create_schedule(schedule)


def expected(topic: str) -> dict[str, Any]:
    due, later, dead = WORKLOAD[topic]
    return {"pending": due + later, "due": due, "running": 0, "dead": sum(dead.values())}
