"""`atp schedule ...` (run_schedule_command) against a real `atp --role=server` process (a sync
gRPC client and the in-process asyncio server in one process can hang at shutdown)."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from appliance.schedule_commands import EXIT_REFUSED, EXIT_USAGE, run_schedule_command


def atp_schedule(server: Any, *argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = run_schedule_command(list(argv), server.address, out=out)
    return code, out.getvalue()


def as_json(server: Any, *argv: str) -> tuple[int, Any]:
    code, out = atp_schedule(server, *argv, "--json")
    return code, json.loads(out) if code == 0 else out


def test_create_list_update_pause_resume_delete(server_process: Any) -> None:
    code, beat = as_json(server_process, "create", "beat", "--topic", "ticks", "--every", "1s")
    assert code == 0, beat
    assert beat["id"] == "beat" and beat["interval_ms"] == 1000 and beat["source"] == "api"
    assert isinstance(beat["next_fire_time_ms"], int) and beat["next_fire_time_ms"] > 0
    code, nightly = as_json(
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
    assert code == 0 and nightly["misfire_policy"] == "RUN_ONCE" and nightly["max_retries"] == 0
    assert nightly["jitter_ms"] == 2000
    code, out = atp_schedule(server_process, "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "TOPIC", "WHEN", "NEXT", "LAST", "STATE"]
    assert lines[1].startswith("beat") and "every 1s" in lines[1] and "active" in lines[1]
    assert "0 2 * * * Europe/Berlin" in lines[2]
    code, listed = as_json(server_process, "list", "--topic=reports")
    assert [s["id"] for s in listed["schedules"]] == ["nightly"]

    code, beat = as_json(server_process, "update", "beat", "--payload", "new")
    assert code == 0 and beat["payload"] == "new"
    assert beat["interval_ms"] == 1000  # merged over the current definition
    code, beat = as_json(server_process, "update", "beat", "--cron", "*/5 * * * * *")
    assert beat["cron"] == "*/5 * * * * *" and beat["interval_ms"] == 0

    assert as_json(server_process, "pause", "beat")[1]["paused"] is True
    assert as_json(server_process, "resume", "beat")[1]["paused"] is False
    code, shown = atp_schedule(server_process, "get", "beat")
    assert code == 0 and "payload:     new" in shown and "state:       active" in shown
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


def test_fire_now(server_process: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = as_json(server_process, "create", "firing", "--topic", "ticks", "--every", "1h")
    assert code == 0
    code, fired = as_json(server_process, "fire", "firing")
    assert code == 0 and fired["task_id"] == f"sched:firing:{fired['fire_time_ms']}:now"
    code, out = atp_schedule(server_process, "fire", "firing")
    assert code == 0 and out.startswith("fired firing at ")
    code, out = atp_schedule(server_process, "fire", "no-such")
    assert (
        code == EXIT_REFUSED
        and "NOT_FOUND: no schedule with id 'no-such'" in capsys.readouterr().err
    )


def test_a_schedule_names_a_workflow_and_its_input(
    server_process: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    code, made = as_json(
        server_process,
        "create",
        "digest",
        "--workflow=user-lifecycle",
        "--every=1h",
        "--input",
        '{"email": "a@b.c"}',
    )
    assert code == 0, made
    assert made["workflow"] == "user-lifecycle" and made["payload"] == '{"email": "a@b.c"}'
    assert "topic" not in made or made["topic"] == ""
    code, out = atp_schedule(server_process, "get", "digest")
    assert "workflow:    user-lifecycle" in out and 'input:       {"email": "a@b.c"}' in out
    code, out = atp_schedule(server_process, "list")
    assert "workflow user-lifecycle" in out.splitlines()[1]
    code, out = atp_schedule(server_process, "create", "x", "--topic=t", "--workflow=w")
    assert code == EXIT_USAGE and "not allowed with argument" in capsys.readouterr().err
    code, out = atp_schedule(
        server_process, "create", "x", "--workflow=w", "--every=1h", "--max-retries=1"
    )
    assert code == EXIT_REFUSED
    assert "a workflow's steps set their own retries" in out + capsys.readouterr().err
