"""`atp <command>` as a real subprocess against a real `atp --role=server` process."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from appliance import Client
from tests.conftest import ServerProcess
from tests.redis_server import free_port


@pytest.fixture(scope="module")
def address(redis_url: str) -> Iterator[str]:
    """One server process for the module; tests keep apart by unique topics and ids."""
    proc = ServerProcess(redis_url)
    yield proc.address
    proc.stop()


@pytest.fixture
def topic() -> str:
    return f"cli-{uuid.uuid4().hex[:10]}"


def atp(
    *args: str, addr: str | None = None, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "appliance", *args, *(["--addr", addr] if addr else [])]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATP_")} | (env or {})
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, env=env, timeout=30)


def ok(*args: str, addr: str) -> str:
    done = atp(*args, addr=addr)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def ok_json(*args: str, addr: str) -> Any:
    return json.loads(ok(*args, "--json", addr=addr))


def test_enqueue_then_get_and_cancel(address: str, topic: str) -> None:
    task_id = ok("enqueue", topic, '{"order_id":1024}', "--delay", "30m", addr=address)
    shown = ok("task", "get", task_id, addr=address)
    assert f"id:          {task_id}" in shown and "state:       PENDING" in shown
    assert 'payload:     {"order_id":1024}' in shown
    assert ok("task", "cancel", task_id, addr=address) == f"canceled {task_id}"
    assert ok_json("task", "get", task_id, addr=address)["state"] == "CANCELED"


def test_task_history(address: str, topic: str) -> None:
    task_id = ok("enqueue", topic, "p", addr=address)
    with Client(address) as client:
        (task,) = client.retrieve(topic)
        client.nack(task, "boom\nmore", dead_letter=True)
    shown = ok("task", "history", task_id, addr=address).splitlines()
    assert shown[0] == f"{task_id} ({topic}, DEAD)"
    assert shown[1].split() == ["TIME", "EVENT", "DETAIL"]
    assert [line.split()[1] for line in shown[2:]] == ["enqueue", "lease", "nack", "dead"]
    assert shown[4].split()[2:] == ["boom", "more"]
    data = ok_json("task", "history", task_id, addr=address)
    assert (data["id"], data["topic"], data["state"]) == (task_id, topic, "DEAD")
    assert [e["kind"] for e in data["events"]] == ["enqueue", "lease", "nack", "dead"]
    assert data["events"][1]["detail"].startswith("retrieve ")
    assert atp("task", "history", "no-such-id", addr=address).returncode == 1


def test_enqueue_options_in_json(address: str, topic: str) -> None:
    before_ms = int(time.time() * 1000)
    reply = ok_json("enqueue", topic, "p", "--id", f"id-{topic}", "--max-retries", "0",
                    "--delay", "1500ms", addr=address)  # fmt: skip
    assert reply == {"id": f"id-{topic}", "duplicate": False}
    task = ok_json("task", "get", f"id-{topic}", addr=address)
    assert task["max_retries"] == 0 and task["topic"] == topic and task["state"] == "PENDING"
    assert 1000 <= task["execute_time_ms"] - before_ms < 5000
    at = (dt.datetime.now() + dt.timedelta(hours=2)).isoformat()
    task_id = ok("enqueue", topic, "later", "--at", at, addr=address)
    due = ok_json("task", "get", task_id, addr=address)["execute_time_ms"]
    assert abs(due - (before_ms + 7_200_000)) < 10_000


def test_payload_from_stdin(address: str, topic: str) -> None:
    done = atp("enqueue", topic, "-", addr=address, stdin="line one\nline two")
    assert done.returncode == 0, done.stderr
    assert ok_json("task", "get", done.stdout.strip(), addr=address)["payload"] == (
        "line one\nline two"
    )


def test_dead_letter_commands(address: str, topic: str) -> None:
    with Client(address) as client:
        ids = client.enqueue_many(topic, ["a", "b", "c"], max_retries=0)
        for task in client.retrieve(topic, batch_size=3):
            client.nack(task, f"failed\n{task.payload}")
    table = ok("dlq", "list", topic, addr=address).splitlines()
    assert table[0].split() == ["ID", "DEAD", "AT", "ATTEMPTS", "LAST", "ERROR"]
    assert sorted(line.split()[0] for line in table[1:]) == sorted(ids)
    assert all("failed " in line for line in table[1:])
    first = ok_json("dlq", "list", topic, "--limit", "2", addr=address)
    assert len(first["dead_letters"]) == 2 and first["next_cursor"]
    rest = ok_json("dlq", "list", topic, "--cursor", first["next_cursor"], addr=address)
    assert len(rest["dead_letters"]) == 1 and rest["next_cursor"] == ""
    assert rest["dead_letters"][0]["state"] == "DEAD"
    assert ok("dlq", "requeue", topic, ids[0], addr=address) == "requeued 1"
    assert ok_json("dlq", "purge", topic, addr=address) == {"purged": 2}
    assert ok("dlq", "list", topic, addr=address) == "(none)"


def test_stats(address: str, topic: str) -> None:
    ok("enqueue", topic, "p", addr=address)
    ok("enqueue", topic, "p", "--delay", "1h", addr=address)
    rows = ok("stats", topic, addr=address).splitlines()
    assert rows[0].split() == ["TOPIC", "PENDING", "DUE", "RUNNING", "DEAD", "LAG"]
    assert rows[1].split()[:5] == [topic, "2", "1", "0", "0"]
    data = ok_json("stats", addr=address)
    assert data["now_ms"] > 0
    assert {"topic": topic, "pending": 2, "due": 1, "running": 0, "dead": 0} == {
        k: v for k, v in next(s for s in data["topics"] if s["topic"] == topic).items()
        if k != "oldest_due_ms"
    }  # fmt: skip


def test_server_refusals_exit_1_with_one_line(address: str) -> None:
    missing = atp("task", "get", "no-such-task", addr=address)
    assert missing.returncode == 1
    assert missing.stderr == "atp: NOT_FOUND: no task with id 'no-such-task'\n"
    bad = atp("enqueue", "bad topic!", "p", addr=address)
    assert bad.returncode == 1 and bad.stderr.startswith("atp: INVALID_ARGUMENT: topic")


def test_unreachable_server_exits_69() -> None:
    done = atp("stats", addr=f"127.0.0.1:{free_port()}")
    assert done.returncode == 69 and done.stderr.startswith("atp: UNAVAILABLE: ")
    assert len(done.stderr.splitlines()) == 1


def test_usage_errors_exit_2() -> None:
    assert atp("enqueue", "only-topic").returncode == 2
    assert atp("enqueue", "t", "p", "--delay", "soon").returncode == 2
    assert atp("enqueue", "t", "p", "--delay", "1s", "--at", "1").returncode == 2
    assert atp("dlq", "list").returncode == 2
    assert atp("frobnicate").returncode == 2
    assert atp("stats", "--help").returncode == 0


def test_token_from_the_environment(redis_url: str, tmp_path: Path, topic: str) -> None:
    from appliance.auth import hash_token

    config = tmp_path / "server.yaml"
    config.write_text(
        json.dumps({"tokens": [{"name": "ops", "hash": hash_token("ops-secret"), "role": "admin"}]})
    )
    proc = ServerProcess(redis_url, extra=[f"--config={config}"])
    try:
        refused = atp("stats", addr=proc.address)
        assert refused.returncode == 1 and refused.stderr.startswith("atp: UNAUTHENTICATED: ")
        allowed = atp("enqueue", topic, "p", addr=proc.address, env={"ATP_TOKEN": "ops-secret"})
        assert allowed.returncode == 0, allowed.stderr
    finally:
        proc.stop()


def test_address_from_env_and_config_file(address: str, topic: str, tmp_path: Path) -> None:
    by_env = atp("enqueue", topic, "p", env={"ATP_GRPC_ADDR": address})
    assert by_env.returncode == 0, by_env.stderr
    config = tmp_path / "atp.yaml"
    config.write_text(f"grpc_addr: {address}\n")
    by_file = atp("stats", topic, "--json", "--config", str(config))
    assert by_file.returncode == 0, by_file.stderr
    assert json.loads(by_file.stdout)["topics"][0]["pending"] == 1
    config.write_text("no_such_setting: 1\n")
    bad = atp("stats", "--config", str(config))
    assert bad.returncode == 78 and "no_such_setting" in bad.stderr
