"""Secrets given as flags (the Redis password in --redis-url, --token) reach the children through
their environment: no child's command line (what `ps` shows every local user) and no log line
holds them; a URL password that does get logged is written as ***."""

from __future__ import annotations

import io
import json
import logging
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance import logs
from appliance.supervisor.arbiter import split_secrets
from tests.redis_server import RedisServer, free_port
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "pw-Zq81xv"
TOKEN = "atp_tok-Vb3m9s"


@pytest.fixture
def locked_redis() -> Iterator[RedisServer]:
    server = RedisServer(password=PASSWORD).start()
    try:
        yield server
    finally:
        server.cleanup()


def test_secret_flags_go_to_the_environment_in_every_spelling() -> None:
    argv = [
        "--redis-url=redis://:a@h:1/0",
        "--config=x.yaml",
        "--token",
        "t1",
        "--redis-u",
        "redis://:b@h:1/0",
        "--redis-timeout-ms=5",
        "--tokens=[]",
    ]
    clean, env = split_secrets(argv)
    assert clean == ["--config=x.yaml", "--redis-timeout-ms=5", "--tokens=[]"]
    assert env == {"ATP_REDIS_URL": "redis://:b@h:1/0", "ATP_TOKEN": "t1"}


def test_no_child_shows_a_secret_in_its_command_line_or_the_logs(
    locked_redis: RedisServer, tmp_path: Path
) -> None:
    grpc_addr, http_addr = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    argv = [
        *(sys.executable, "-m", "appliance", "--role=server,watchdog,worker", "--workers=1"),
        *(f"--redis-url={locked_redis.url}", "--token", TOKEN, "--log-level=debug"),
        *(f"--grpc-addr={grpc_addr}", f"--http-addr={http_addr}", "--drain-timeout=5s"),
    ]
    log_path = tmp_path / "atp.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=log)
    try:
        assert wait_for(lambda: _ready(http_addr), 60), log_path.read_text()[-3000:]
        pids = _child_pids(http_addr)
        assert len(pids) == 3
        for pid in pids:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode()
            assert PASSWORD not in cmdline and TOKEN not in cmdline, cmdline
            assert "--role=" in cmdline  # it is one of ours
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    assert code == 0
    text = log_path.read_text()
    assert "started (pid" in text  # the lines that used to show the whole argv
    assert PASSWORD not in text and TOKEN not in text


def test_url_passwords_are_redacted_in_every_log_line(monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    for tty in (False, True):
        stream = io.StringIO()
        stream.isatty = lambda tty=tty: tty  # type: ignore[method-assign]
        monkeypatch.setattr(sys, "stderr", stream)
        try:
            logs.setup("info", "test")
            log = logging.getLogger("test.secrets")
            log.warning("cannot reach %s", "redis://user:hunter2@db:6379/0")
            try:
                raise ConnectionError("rediss://:hunter2@db:6380/1 refused")
            except ConnectionError:
                log.exception("lost redis://:hunter2@db")
        finally:
            root.handlers[:], _ = saved
            root.setLevel(saved[1])
        out = stream.getvalue()
        assert "hunter2" not in out, out
        assert "redis://user:***@db:6379/0" in out and "rediss://:***@db:6380/1" in out
        if not tty:
            assert json.loads(out.splitlines()[0])["message"].endswith("user:***@db:6379/0")


def _ready(http_addr: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{http_addr}/readyz", timeout=2) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


def _child_pids(http_addr: str) -> list[int]:
    with urllib.request.urlopen(f"http://{http_addr}/healthz", timeout=2) as reply:
        return [int(c["pid"]) for c in json.loads(reply.read())["children"]]
