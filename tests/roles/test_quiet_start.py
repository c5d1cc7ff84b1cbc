"""A quiet, explicit start: a role says which Redis it uses and why, and waits for it with a
backoff instead of a line every 0.5 s; the built-in worker waits for the API instead of logging
refused connections; a taken gRPC or HTTP port is one line and exit 78, with no restart loop;
the demo's per-task line is at INFO."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from appliance.model import Task, TaskState
from tests.redis_server import RedisServer, free_port
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]


class Atp:
    """`python -m appliance <args>` with its log in a file, its environment without ATP_*."""

    def __init__(self, tmp: Path, *args: str, name: str = "atp") -> None:
        self.log_path = tmp / f"{name}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("ATP_")}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "appliance", *args],
                cwd=tmp,
                env={**env, "PYTHONPATH": str(ROOT)},
                stdout=log,
                stderr=log,
            )

    def records(self) -> list[dict[str, object]]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                out.append(json.loads(line))
        return out

    def messages(self, *levels: str) -> list[str]:
        return [str(r["message"]) for r in self.records() if not levels or r["level"] in levels]

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(20)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def atp(tmp_path: Path) -> Iterator[object]:
    started: list[Atp] = []

    def start(*args: str, name: str = "atp") -> Atp:
        started.append(Atp(tmp_path, *args, name=name))
        return started[-1]

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture
def held_port() -> Iterator[int]:
    """A loopback port some other program listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def test_a_role_without_redis_url_names_the_default_and_why(atp) -> None:  # type: ignore[no-untyped-def]
    proc = atp("--role=watchdog")
    assert wait_for(lambda: proc.messages(), 20), proc.text()
    first = proc.messages()[0]
    assert "connecting to Redis at 127.0.0.1:6379" in first, first
    assert "no --redis-url or ATP_REDIS_URL given" in first and "--role=all" in first
    assert proc.stop() == 0


def test_waiting_for_redis_backs_off_then_serves_once_it_answers(atp) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    grpc_addr = f"127.0.0.1:{free_port()}"
    proc = atp(
        "--role=server", f"--redis-url=redis://127.0.0.1:{port}/0", f"--grpc-addr={grpc_addr}"
    )
    time.sleep(4.5)  # tries at about 0, 0.5, 1.5 and 3.5 s
    waits = [m for m in proc.messages() if m.startswith("waiting for Redis")]
    assert 3 <= len(waits) <= 5, proc.messages()
    assert "next try in 0.5 s" in waits[0] and "next try in 2.0 s" in waits[2]
    assert not any("wake-up subscription" in m for m in proc.messages()), proc.messages()
    redis = RedisServer(port=port).start()
    try:
        assert wait_for(lambda: any("gRPC server listening" in m for m in proc.messages()), 20)
        assert any(
            m.startswith(f"Redis at 127.0.0.1:{port} answers after") for m in proc.messages()
        )
        assert proc.stop() == 0
    finally:
        redis.cleanup()
    assert not proc.messages("error", "warning"), proc.messages("error", "warning")


def test_the_built_in_worker_waits_quietly_for_the_api(atp, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "atp.yaml"
    config.write_text(
        yaml.safe_dump({"topics": {"t": {"executor": "python", "callable": "appliance.demo:show"}}})
    )
    api = f"127.0.0.1:{free_port()}"
    proc = atp("--role=worker", "--workers=1", f"--config={config}", f"--server-addr={api}")
    time.sleep(4.0)
    lines = proc.messages()
    assert all("waiting for the atp API at" in m for m in lines), lines
    assert 3 <= len(lines) <= 5, lines  # pauses 0.25, 0.5, 1, 2 s: not ~40 refused connections
    assert "refused" not in proc.text().lower() and "Traceback" not in proc.text()
    began = time.monotonic()
    assert proc.stop() == 0
    assert time.monotonic() - began < 5


def test_a_taken_grpc_port_is_one_line_and_exit_78(atp, held_port: int, redis_url: str) -> None:  # type: ignore[no-untyped-def]
    taken = f"127.0.0.1:{held_port}"
    alone = atp("--role=server", f"--redis-url={redis_url}", f"--grpc-addr={taken}")
    assert alone.proc.wait(30) == 78
    supervised = atp(
        "--role=server,watchdog",
        f"--redis-url={redis_url}",
        f"--grpc-addr={taken}",
        f"--http-addr=127.0.0.1:{free_port()}",
        name="supervised",
    )
    assert supervised.proc.wait(30) == 78
    for proc in (alone, supervised):
        (line,) = proc.messages("error")
        assert f"grpc_addr {taken} is already in use" in line and "--grpc-addr" in line, line
        assert "Traceback" not in proc.text() and "add_port" not in proc.text()
        assert "restarting" not in proc.text()
    assert "started (pid" not in supervised.text()  # refused before any child


def test_a_taken_http_port_is_one_line_and_exit_78(atp, held_port: int, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    proc = atp(
        "--role=all",
        f"--data-dir={tmp_path / 'data'}",
        f"--grpc-addr=127.0.0.1:{free_port()}",
        f"--http-addr=127.0.0.1:{held_port}",
    )
    assert proc.proc.wait(30) == 78
    (line,) = proc.messages("error")
    assert f"http_addr 127.0.0.1:{held_port} is already in use" in line, line
    assert "--http-addr" in line and "Traceback" not in proc.text()


def test_the_demo_task_line_is_info(caplog: pytest.LogCaptureFixture) -> None:
    from appliance import demo

    task = Task("d1", "demo", "{}", 0, 0, 3, 1, TaskState.RUNNING, "x")
    with caplog.at_level(logging.DEBUG, logger="atp.demo"):
        demo.show(task)
    (record,) = caplog.records
    assert record.levelno == logging.INFO and "demo task d1 ran" in record.getMessage()
