"""The supervised appliance with real roles (server, watchdog, worker) against a real Redis:
a worker SIGKILLed mid-task is restarted and the task delivered again after its lease; SIGTERM
during work loses nothing; a role that cannot start stops the supervisor with the reason."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
import yaml

from appliance.proto import queue_pb2 as pb
from appliance.proto import queue_pb2_grpc as pb_grpc
from tests.redis_server import free_port
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]


class Supervised:
    """`python -m appliance --role=server,watchdog,worker` with the test handlers."""

    def __init__(self, redis_url: str, tmp: Path, topics: dict[str, object], *extra: str) -> None:
        self.grpc, self.http = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
        self.marks = tmp / "marks"
        self.marks.mkdir(exist_ok=True)
        config = tmp / "atp.yaml"
        config.write_text(yaml.safe_dump({"topics": topics}))
        self.log_path = tmp / "supervisor.log"
        self.log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        args = [
            sys.executable,
            "-m",
            "appliance",
            "--role=server,watchdog,worker",
            "--workers=1",
            f"--redis-url={redis_url}",
            f"--config={config}",
            f"--grpc-addr={self.grpc}",
            f"--http-addr={self.http}",
            "--drain-timeout=5s",
            *extra,
        ]
        env = {**os.environ, "ATPTEST_MARKS": str(self.marks)}
        self.proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=self.log, stderr=self.log)

    def health(self) -> dict[str, object]:
        with urllib.request.urlopen(f"http://{self.http}/healthz", timeout=2) as reply:
            return dict(json.loads(reply.read()))

    def ready(self) -> None:
        def is_ready() -> bool:
            try:
                with urllib.request.urlopen(f"http://{self.http}/readyz", timeout=2) as reply:
                    return reply.status == 200
            except OSError:
                return False

        assert wait_for(is_ready, 30), self.output()

    def child(self, role: str) -> dict[str, object]:
        return next(c for c in self.health()["children"] if c["role"] == role)  # type: ignore[attr-defined]

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)
            self.log.close()


@pytest.fixture
def stub_for() -> Iterator[Callable[[str], pb_grpc.DelayQueueServiceStub]]:
    channels: list[grpc.Channel] = []

    def make(address: str) -> pb_grpc.DelayQueueServiceStub:
        channels.append(grpc.insecure_channel(address))
        return pb_grpc.DelayQueueServiceStub(channels[-1])

    yield make
    for channel in channels:
        channel.close()


SLOW = {"slow": {"executor": "python", "callable": "tests.roles.handlers:slow"}}


def test_sigkilled_worker_is_restarted_and_its_task_delivered_again(
    redis_url: str, redis_client: object, tmp_path: Path, stub_for
) -> None:  # type: ignore[no-untyped-def]
    app = Supervised(redis_url, tmp_path, SLOW, "--visibility-timeout=1500ms")
    try:
        app.ready()
        stub = stub_for(app.grpc)
        stub.Enqueue(pb.EnqueueRequest(topic="slow", payload="3", id="k1"))
        assert wait_for(lambda: (app.marks / "k1.1.start").exists()), app.output()
        worker = app.child("worker")
        os.kill(int(worker["pid"]), signal.SIGKILL)  # type: ignore[call-overload]
        assert wait_for(
            lambda: (
                app.child("worker")["restarts"] == 1 and app.child("worker")["state"] == "RUNNING"
            )
        )
        assert wait_for(lambda: (app.marks / "k1.2.end").exists(), 30), app.output()
        assert wait_for(lambda: stub.GetTask(pb.GetTaskRequest(id="k1")).state == pb.SUCCEEDED)
        assert not (app.marks / "k1.1.end").exists()
    finally:
        assert app.stop() == 0, app.output()


def test_sigterm_during_work_finishes_or_releases_every_task(
    redis_url: str, redis_client: object, tmp_path: Path, stub_for
) -> None:  # type: ignore[no-untyped-def]
    app = Supervised(redis_url, tmp_path, SLOW)
    app.ready()
    stub = stub_for(app.grpc)
    ids = [f"t{i}" for i in range(6)]
    for i, task_id in enumerate(ids):
        stub.Enqueue(pb.EnqueueRequest(topic="slow", payload="1" if i % 2 else "30", id=task_id))
    assert wait_for(lambda: len(list(app.marks.glob("*.start"))) == 6), app.output()
    assert app.stop() == 0, app.output()
    from tests.conftest import ServerProcess

    server = ServerProcess(redis_url)
    try:
        check = stub_for(server.address)
        states = {i: check.GetTask(pb.GetTaskRequest(id=i)).state for i in ids}
    finally:
        server.stop()
    assert all(states[i] == pb.SUCCEEDED for i in ids[1::2]), states  # 1 s tasks finished
    assert all(states[i] == pb.PENDING for i in ids[0::2]), states  # 30 s tasks released


def test_a_role_that_cannot_start_stops_the_supervisor_with_the_reason(
    redis_url: str, redis_client: object, tmp_path: Path
) -> None:
    bad = {"slow": {"executor": "python", "callable": "tests.roles.handlers:no_such_function"}}
    app = Supervised(redis_url, tmp_path, bad)
    code = app.proc.wait(60)
    app.log.close()
    assert code == 78
    out = app.output()
    assert "no_such_function" in out and "worker-1" in out


def test_a_command_executor_whose_program_is_missing_stops_atp_with_78_naming_the_topic(
    redis_url: str, redis_client: object, tmp_path: Path
) -> None:
    missing = {"hooks": {"executor": "command", "command": "atp-no-such-program --flag"}}
    app = Supervised(redis_url, tmp_path, missing)
    try:
        code = app.proc.wait(60)
    finally:
        app.stop()
    assert code == 78
    errors = [
        json.loads(line)["message"]
        for line in app.log_path.read_text().splitlines()
        if line.startswith("{") and json.loads(line)["level"] == "error"
    ]
    assert any("topics.hooks.command" in m and "atp-no-such-program" in m for m in errors), errors
    assert not any("Traceback" in m for m in errors)
