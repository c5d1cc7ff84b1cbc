"""A new user's first hour with the real `atp` CLI against real server processes (issue 13,
items 3, 9, 10, 11 and 12): --token everywhere, boolean flag pairs, help that names every command
and explains every flag, --json everywhere with numbers as numbers, and one duration parser."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from appliance import commands
from appliance.auth import hash_token
from appliance.cli import role_parser
from tests.cli.test_commands import atp
from tests.conftest import ServerProcess
from tests.redis_server import free_port

COMMANDS = ["enqueue", "task", "dlq", "stats", "schedule", "token", "healthcheck"]
ISO_UTC = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


@pytest.fixture(scope="module")
def address(redis_url: str) -> Iterator[str]:
    proc = ServerProcess(redis_url)
    yield proc.address
    proc.stop()


@pytest.fixture(scope="module")
def guarded(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server that requires the admin token 'ops-secret'."""
    config = tmp_path_factory.mktemp("guarded") / "server.yaml"
    config.write_text(
        json.dumps({"tokens": [{"name": "ops", "hash": hash_token("ops-secret"), "role": "admin"}]})
    )
    proc = ServerProcess(redis_url, extra=[f"--config={config}"])
    yield proc.address
    proc.stop()


@pytest.fixture
def topic() -> str:
    return f"fh-{uuid.uuid4().hex[:10]}"


def run_ok(*args: str, addr: str | None = None, env: dict[str, str] | None = None) -> str:
    done = atp(*args, addr=addr, env=env)
    assert done.returncode == 0, (args, done.stderr)
    return done.stdout


def as_json(*args: str, addr: str | None = None) -> Any:
    out = run_ok(*args, "--json", addr=addr)
    assert len(out.strip().splitlines()) == 1, out  # one JSON object
    return json.loads(out)


# -- item 3: --token on every command; the first-start message's command works -----------------


def test_the_first_start_message_command_works(redis_url: str, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "server.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "appliance", "--role=server", f"--grpc-addr=0.0.0.0:{port}",
             f"--redis-url={redis_url}", f"--data-dir={tmp_path / 'data'}"],
            stdout=sink, stderr=sink,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while not (said := re.search(r"^\s*atp (stats --token \S+)", log.read_text(), re.M)):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        argv = said.group(1).split()
        while (done := atp(*argv, addr=f"127.0.0.1:{port}")).returncode == 69:
            assert time.monotonic() < deadline, done.stderr
            time.sleep(0.2)
        assert done.returncode == 0, done.stderr
        refused = atp("stats", addr=f"127.0.0.1:{port}")  # no token: the token is what works
        assert refused.returncode == 1 and "UNAUTHENTICATED" in refused.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_every_server_command_takes_token_and_env_still_works(guarded: str, topic: str) -> None:
    task = as_json("enqueue", topic, "p", "--delay", "1h", "--token", "ops-secret", addr=guarded)
    runs = [
        ["task", "get", task["id"]],
        ["dlq", "list", topic],
        ["dlq", "requeue", topic],
        ["dlq", "purge", topic],
        ["stats", topic],
        ["schedule", "list"],
        ["schedule", "status"],
        ["task", "cancel", task["id"]],
    ]
    for argv in runs:
        assert atp(*argv, addr=guarded).returncode == 1, argv  # refused without it
        run_ok(*argv, "--token", "ops-secret", addr=guarded)
    run_ok("stats", addr=guarded, env={"ATP_TOKEN": "ops-secret"})
    run_ok("schedule", "list", addr=guarded, env={"ATP_TOKEN": "ops-secret"})
    assert run_ok("token", "hash", "--token", "ops-secret").strip() == hash_token("ops-secret")


# -- item 9: boolean settings are --x / --no-x pairs ------------------------------------------


def test_boolean_settings_are_flag_pairs(redis_url: str, topic: str) -> None:
    proc = ServerProcess(redis_url, extra=["--insecure", "--no-grpc-reuse-port"])
    try:
        assert as_json("enqueue", topic, "p", addr=proc.address)["duplicate"] is False
    finally:
        proc.stop()
    booleans = [a for a in role_parser()._actions if isinstance(a, argparse.BooleanOptionalAction)]
    assert {a.dest for a in booleans} >= {"insecure", "grpc_reuse_port"}
    from appliance import config

    flags = {a.dest for a in booleans}
    assert {n for n, f in config.FIELDS.items() if str(f.type) == "bool"} <= flags
    for action in booleans:
        assert f"--no-{action.dest.replace('_', '-')}" in action.option_strings
    assert atp("--insecure=yes").returncode == 2  # a pair takes no value


# -- item 10: help and discovery --------------------------------------------------------------


def test_help_lists_every_command_and_bogus_names_them_all() -> None:
    shown = run_ok("--help")
    for name in COMMANDS:
        line = re.search(rf"^  {name}\s+(\S.*)$", shown, re.M)
        assert line and len(line.group(1).split()) >= 4, name
    bogus = atp("bogus")
    assert bogus.returncode == 2
    assert all(f"'{name}'" in bogus.stderr for name in COMMANDS), bogus.stderr


def subparsers(p: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield p.prog, p
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from subparsers(child)


def test_every_flag_has_a_sentence_of_help() -> None:
    parsers = [("atp", role_parser()), *subparsers(commands.parser())]
    assert len(parsers) > 20
    for prog, p in parsers:
        for action in p._actions:
            if action.dest == "help" or isinstance(action, argparse._SubParsersAction):
                continue
            text = re.sub(r"\(default [^)]*\)", "", action.help or "")
            assert len(text.split()) >= 3, (prog, action.option_strings or action.dest, text)
    schedule_get = run_ok("schedule", "get", "--help")
    assert all(f in schedule_get for f in ("--addr", "--config", "--timeout", "--token", "--json"))


# -- item 11: --json everywhere, int64 as numbers, duplicates said, schedule flags ------------


def test_every_command_answers_json(address: str, topic: str) -> None:
    task = as_json("enqueue", topic, "p", "--delay", "1h", addr=address)
    assert as_json("task", "get", task["id"], addr=address)["state"] == "PENDING"
    assert as_json("stats", topic, addr=address)["topics"][0]["pending"] == 1
    assert as_json("dlq", "list", topic, addr=address) == {"dead_letters": [], "next_cursor": ""}
    assert as_json("dlq", "requeue", topic, addr=address) == {"requeued": 0}
    assert as_json("dlq", "purge", topic, addr=address) == {"purged": 0}
    assert as_json("task", "cancel", task["id"], addr=address)["canceled"] is True
    sched = as_json("schedule", "create", topic, f"--topic={topic}", "--every=1h", addr=address)
    assert sched["interval_ms"] == 3_600_000 and isinstance(sched["next_fire_time_ms"], int)
    got = as_json("schedule", "get", topic, addr=address)
    assert got["interval_ms"] == 3_600_000 and got["start_ms"] == 0
    assert as_json("schedule", "pause", topic, addr=address)["paused"] is True
    assert (
        as_json("schedule", "update", topic, "--every=2h", addr=address)["interval_ms"] == 7_200_000
    )
    listed = as_json("schedule", "list", f"--topic={topic}", addr=address)
    assert [s["id"] for s in listed["schedules"]] == [topic]
    status = as_json("schedule", "status", addr=address)
    assert isinstance(status["fencing_token"], int) and isinstance(status["ticks_fired"], int)
    assert as_json("schedule", "delete", topic, addr=address) == {"id": topic, "deleted": True}
    assert set(as_json("token", "new")) == {"token", "entry"}
    assert set(as_json("token", "hash", "some-token")) == {"hash"}
    probe = atp("healthcheck", "--json", f"--http-addr=127.0.0.1:{free_port()}")
    assert probe.returncode == 1 and json.loads(probe.stdout)["ok"] is False


def test_enqueue_says_when_the_id_was_a_duplicate(address: str, topic: str) -> None:
    first = atp("enqueue", topic, "p", "--id", f"{topic}-1", addr=address)
    assert first.returncode == 0 and first.stdout == f"{topic}-1\n" and first.stderr == ""
    again = atp("enqueue", topic, "other", "--id", f"{topic}-1", addr=address)
    assert again.returncode == 0 and again.stdout == f"{topic}-1\n"
    assert "duplicate" in again.stderr and "nothing was created" in again.stderr
    reply = as_json("enqueue", topic, "p", "--id", f"{topic}-1", addr=address)
    assert reply == {"id": f"{topic}-1", "duplicate": True}


def test_schedule_takes_config_timeout_and_token(guarded: str, topic: str, tmp_path: Path) -> None:
    config = tmp_path / "client.yaml"
    config.write_text(f"grpc_addr: {guarded}\ntoken: ops-secret\n")
    created = atp("schedule", "create", topic, f"--topic={topic}", "--every=1h", "--json",
                  "--config", str(config), "--timeout", "5s")  # fmt: skip
    assert created.returncode == 0, created.stderr
    listed = atp("schedule", "list", "--addr", guarded, "--token", "ops-secret", "--json")
    assert topic in [s["id"] for s in json.loads(listed.stdout)["schedules"]]
    wrong = atp("schedule", "get", topic, "--config", str(config), "--token", "nope")
    assert wrong.returncode == 1 and "UNAUTHENTICATED" in wrong.stderr  # the flag wins
    unreachable = atp("schedule", "status", "--addr", f"127.0.0.1:{free_port()}", "--timeout",
                      "300ms")  # fmt: skip
    assert unreachable.returncode != 0 and "UNAVAILABLE" in unreachable.stderr


# -- item 12: one parser for durations and times ----------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["enqueue", "t", "p", "--delay", "10"], "'10' has no unit: write 10s or 10ms"),
        (["schedule", "create", "x", "--topic=t", "--every", "10"], "'10' has no unit"),
        (["schedule", "create", "x", "--topic=t", "--every=1h", "--jitter", "5"], "has no unit"),
        (["enqueue", "t", "p", "--delay", "-5s"], "--delay: must be >= 0, got '-5s'"),
        (["schedule", "create", "x", "--topic=t", "--every", "-5s"], "--every: must be >= 0"),
        (["stats", "--timeout", "-1s"], "--timeout: must be >= 0"),
        (["enqueue", "t", "p", "--at", "tomorrow"], "ISO 8601"),
        (["--role=server", "--visibility-timeout", "30"], "'30' has no unit"),
        (["--role=server", "--max-wait", "-1s"], "must be >= 0"),
    ],
)
def test_durations_need_a_unit_and_are_never_negative(argv: list[str], message: str) -> None:
    done = (
        atp(*argv, "--addr", f"127.0.0.1:{free_port()}")
        if argv[0] != "--role=server"
        else (atp(*argv))
    )
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "expected one argument" not in done.stderr


def test_one_duration_syntax_and_one_printed_time(address: str, topic: str) -> None:
    before = int(time.time() * 1000)
    task_id = run_ok("enqueue", topic, "p", "--delay", "1.5m", addr=address).strip()
    task = as_json("task", "get", task_id, addr=address)
    assert 85_000 <= task["execute_time_ms"] - before < 95_000
    shown = run_ok("task", "get", task_id, addr=address)
    assert re.search(rf"^due:\s+{ISO_UTC}$", shown, re.M), shown
    assert re.search(rf"^created:\s+{ISO_UTC}$", shown, re.M), shown
    at = run_ok("enqueue", topic, "p", "--at", "2030-01-02T03:04:05+01:00", addr=address).strip()
    assert "due:         2030-01-02T02:04:05.000Z" in run_ok("task", "get", at, addr=address)
    run_ok("schedule", "create", topic, f"--topic={topic}", "--every=90s", addr=address)
    sched = run_ok("schedule", "get", topic, addr=address)
    assert "every 90s" in sched and re.search(rf"^next fire:\s+{ISO_UTC}$", sched, re.M), sched
    listed = run_ok("schedule", "list", f"--topic={topic}", addr=address).splitlines()[1]
    assert re.search(ISO_UTC, listed), listed
    run_ok("schedule", "delete", topic, addr=address)


def test_stats_pages_through_every_topic(address: str, topic: str) -> None:
    for n in range(3):
        run_ok("enqueue", f"{topic}-{n}", "p", addr=address)
    seen: list[str] = []
    page = as_json("stats", "--limit", "2", addr=address)
    while True:
        assert len(page["topics"]) <= 2
        seen += [s["topic"] for s in page["topics"]]
        if not page["next_cursor"]:
            break
        page = as_json("stats", "--limit", "2", "--cursor", page["next_cursor"], addr=address)
    assert {f"{topic}-{n}" for n in range(3)} <= set(seen) and len(seen) == len(set(seen))
    text = run_ok("stats", "--limit", "1", addr=address)
    assert "more: --cursor " in text
