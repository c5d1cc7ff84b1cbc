"""`atp schedule ...` (run_schedule_command) against a real `atp --role=server` process (a sync
gRPC client and the in-process asyncio server in one process can hang at shutdown)."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from appliance.scheduler.cli import EXIT_REFUSED, EXIT_USAGE, run_schedule_command


def atp_schedule(server: Any, *argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = run_schedule_command(list(argv), server.address, out=out)
    return code, out.getvalue()


def test_create_list_update_pause_resume_delete(server_process: Any) -> None:
    code, out = atp_schedule(server_process, "create", "beat", "--topic", "ticks", "--every", "1s")
    assert code == 0, out
    beat = json.loads(out)
    assert beat["id"] == "beat" and beat["interval_ms"] == "1000" and beat["source"] == "api"
    assert beat["next_fire_time"].endswith("Z")
    code, out = atp_schedule(
        server_process,
        "create",
        "nightly",
        "--topic=reports",
        "--cron=0 2 * * *",
        "--timezone=Europe/Berlin",
        "--misfire=run_once",
        "--jitter=2s",
        "--max-retries=0",
        "--payload",
        '{"kind": "daily"}',
    )
    nightly = json.loads(out)
    assert code == 0 and nightly["misfire_policy"] == "RUN_ONCE" and nightly["max_retries"] == 0
    code, out = atp_schedule(server_process, "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "TOPIC", "WHEN", "NEXT", "LAST", "STATE"]
    assert lines[1].startswith("beat") and "every 1000 ms" in lines[1] and "active" in lines[1]
    assert "0 2 * * * Europe/Berlin" in lines[2]
    code, out = atp_schedule(server_process, "list", "--topic=reports", "--json")
    assert [json.loads(line)["id"] for line in out.splitlines()] == ["nightly"]

    code, out = atp_schedule(server_process, "update", "beat", "--payload", "new")
    assert code == 0 and json.loads(out)["payload"] == "new"
    assert json.loads(out)["interval_ms"] == "1000"  # merged over the current definition
    code, out = atp_schedule(server_process, "update", "beat", "--cron", "*/5 * * * * *")
    assert json.loads(out)["cron"] == "*/5 * * * * *" and json.loads(out)["interval_ms"] == "0"

    assert json.loads((atp_schedule(server_process, "pause", "beat"))[1])["paused"] is True
    assert json.loads((atp_schedule(server_process, "resume", "beat"))[1])["paused"] is False
    assert json.loads((atp_schedule(server_process, "get", "beat"))[1])["payload"] == "new"
    assert atp_schedule(server_process, "delete", "beat") == (0, "deleted beat\n")
    code, out = atp_schedule(server_process, "status")
    assert code == 0 and "leader:         (none)" in out


ERRORS = [
    (["create", "x", "--topic=t", "--cron=61 * * * *"], EXIT_REFUSED, "schedule.cron"),
    (["create", "x", "--topic=t", "--cron=0 2 * * *", "--timezone=No/Where"], 1, "timezone"),
    (["create", "x", "--topic=", "--every=1s"], EXIT_REFUSED, "schedule.topic is empty"),
    (["get", "nope"], EXIT_REFUSED, "NOT_FOUND: no schedule with id 'nope'"),
    (["create", "x", "--topic=t", "--every=soon"], EXIT_USAGE, "--every"),
    (["create", "x", "--every=1s"], EXIT_USAGE, "--topic"),
    (["create", "x", "--topic=t", "--every=1s", "--cron=* * * * *"], EXIT_USAGE, "not allowed"),
    (["frobnicate"], EXIT_USAGE, "invalid choice"),
]


def test_errors(server_process: Any, capsys: pytest.CaptureFixture[str]) -> None:
    for argv, code, message in ERRORS:
        assert atp_schedule(server_process, *argv)[0] == code, argv
        assert message in capsys.readouterr().err, argv


def test_create_twice(server_process: Any, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["create", "x", "--topic=t", "--every=1m"]
    assert (atp_schedule(server_process, *argv))[0] == 0
    assert (atp_schedule(server_process, *argv))[0] == EXIT_REFUSED
    assert "ALREADY_EXISTS" in capsys.readouterr().err


def test_help(server_process: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert (atp_schedule(server_process, "--help"))[0] == 0
    assert "create" in capsys.readouterr().out
