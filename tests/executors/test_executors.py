"""Each built-in executor's outcomes, against real programs and a real local HTTP server."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from appliance.errors import ConfigError, DeadLetterTask, RetryTask
from appliance.executors import build_all
from appliance.executors.command import CommandFailed
from appliance.executors.http import retry_after_ms
from appliance.model import Task, TaskState
from tests.executors.webhook import Recorder

TASK = Task(
    id="t-1",
    topic="hooks",
    payload='{"n": 1}',
    execute_time_ms=0,
    created_at_ms=0,
    max_retries=3,
    attempt=2,
    state=TaskState.RUNNING,
    lease_token="hooks/x.1",
)


def handler(spec: dict[str, object]):  # type: ignore[no-untyped-def]
    (executor,) = build_all({"hooks": spec})
    return executor.handler


async def test_http_2xx_sends_payload_and_headers() -> None:
    with Recorder() as hook:
        await handler({"executor": "http", "url": hook.url + "/ok", "headers": {"X-Key": "k"}})(
            TASK
        )
        await handler({"executor": "http", "url": hook.url + "/created"})(TASK)
    (first, _) = hook.requests
    assert first["body"] == '{"n": 1}'
    h = first["headers"]
    assert (h["X-Atp-Task-Id"], h["X-Atp-Topic"], h["X-Atp-Attempt"]) == ("t-1", "hooks", "2")
    assert h["Idempotency-Key"] == "t-1" and h["X-Key"] == "k"
    assert h["Content-Type"] == "application/json"


@pytest.mark.parametrize(("path", "after_ms"), [("/busy", 7000), ("/down", 0), ("/error", 0)])
async def test_http_429_and_5xx_retry_honouring_retry_after(path: str, after_ms: int) -> None:
    with Recorder() as hook, pytest.raises(RetryTask) as err:
        await handler({"executor": "http", "url": hook.url + path})(TASK)
    assert err.value.after_ms == after_ms
    assert "HTTP" in str(err.value)


@pytest.mark.parametrize("path", ["/missing", "/bad"])
async def test_http_other_4xx_dead_letters(path: str) -> None:
    with Recorder() as hook, pytest.raises(DeadLetterTask, match="HTTP 4"):
        await handler({"executor": "http", "url": hook.url + path})(TASK)


async def test_http_timeout_and_refused_connection_retry() -> None:
    with Recorder() as hook, pytest.raises(RetryTask, match="timed out"):
        await handler({"executor": "http", "url": hook.url + "/slow", "timeout_ms": 200})(TASK)
    with pytest.raises(RetryTask, match="ConnectError"):
        await handler({"executor": "http", "url": "http://127.0.0.1:1/x"})(TASK)


def test_retry_after_forms() -> None:
    assert retry_after_ms("120") == 120_000
    assert retry_after_ms(None) == 0 and retry_after_ms("soon") == 0
    assert 0 <= retry_after_ms("Wed, 21 Oct 2015 07:28:00 GMT") <= 0


async def test_python_callable_sync_async_and_raising(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "jobs_for_test.py").write_text(
        textwrap.dedent("""
        seen = []
        def ok(task):
            seen.append(task.id)
        async def aok(task):
            seen.append("async " + task.id)
        def boom(task):
            raise ValueError("no good")
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    assert handler({"executor": "python", "callable": "jobs_for_test:ok"})(TASK) is None
    await handler({"executor": "python", "callable": "jobs_for_test:aok"})(TASK)
    assert importlib.import_module("jobs_for_test").seen == ["t-1", "async t-1"]
    with pytest.raises(ValueError, match="no good"):
        handler({"executor": "python", "callable": "jobs_for_test:boom"})(TASK)


async def test_command_reads_stdin_and_env(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    script = (
        f"import os,sys; open({str(out)!r},'w').write(sys.stdin.read()+os.environ['ATP_TASK_ID'])"
    )
    await handler({"executor": "command", "command": [sys.executable, "-c", script]})(TASK)
    assert out.read_text() == '{"n": 1}t-1'


async def test_command_dies_with_the_worker(tmp_path: Path) -> None:
    """The program gets SIGKILL as its parent-death signal: a killed worker leaves no orphan."""
    out = tmp_path / "pdeathsig.txt"
    script = (
        "import ctypes; v = ctypes.c_int(); "
        "ctypes.CDLL(None).prctl(2, ctypes.byref(v), 0, 0, 0); "
        f"open({str(out)!r}, 'w').write(str(v.value))"
    )
    await handler({"executor": "command", "command": [sys.executable, "-c", script]})(TASK)
    assert out.read_text() == "9"


async def test_command_failure_carries_stderr_tail() -> None:
    script = "import sys; sys.stderr.write('x' * 5000 + 'the end'); sys.exit(3)"
    with pytest.raises(CommandFailed, match=r"exited 3: x+the end") as err:
        await handler({"executor": "command", "command": [sys.executable, "-c", script]})(TASK)
    assert len(str(err.value)) < 2100


async def test_command_timeout_is_killed_and_retried() -> None:
    spec = {
        "executor": "command",
        "command": [sys.executable, "-c", "import time; time.sleep(30)"],
        "timeout_ms": 300,
    }
    with pytest.raises(RetryTask, match="killed"):
        await handler(spec)(TASK)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"executor": "ftp"}, "topics.hooks.executor"),
        ({"executor": "http"}, "topics.hooks.url"),
        ({"executor": "http", "url": "ftp://x"}, "topics.hooks.url"),
        ({"executor": "http", "url": "http://x", "timeout_ms": -1}, "topics.hooks.timeout_ms"),
        ({"executor": "http", "url": "http://x", "colour": "red"}, "unknown key"),
        ({"executor": "python", "callable": "nope"}, "topics.hooks.callable"),
        ({"executor": "python", "callable": "no_such_module_x:f"}, "cannot load"),
        ({"executor": "command", "command": []}, "topics.hooks.command"),
        ({"executor": "command", "command": "true", "concurrency": 0}, "topics.hooks.concurrency"),
        ({"executor": "command", "command": "atp-no-such-program x"}, "not found on PATH"),
        ({"executor": "command", "command": ["/nonexistent/run", "x"]}, "no executable file"),
        ({"executor": "command", "command": "ls", "env": {"PATH": "/nonexistent"}}, "'ls'"),
    ],
)
def test_bad_executor_config_names_the_key(spec: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_all({"hooks": spec})


def test_bad_topic_name_in_config() -> None:
    with pytest.raises(ConfigError, match=r"topics\.bad topic"):
        build_all({"bad topic": {"executor": "command", "command": "true"}})
