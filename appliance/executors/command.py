"""The `command` executor: run a program with the payload on stdin.

A program that cannot be found (on PATH, or at the path given) is a config error at start, so
the worker exits 78 naming the topic instead of failing every task until it dead-letters.
Exit 0 -> done; any other exit -> failed (retried with backoff, then dead-lettered) with the
tail of stderr as the error; running past `timeout_ms` -> killed and retried. The program gets
ATP_TASK_ID, ATP_TOPIC and ATP_ATTEMPT in its environment. No shell is involved unless the
command names one. The program is SIGKILLed when the worker dies (a parent-death signal).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import shlex
import shutil
import signal
from collections.abc import Mapping, Sequence
from typing import Any

from appliance.errors import ConfigError, RetryTask
from appliance.executors.spec import Handler, check_keys, optional_positive
from appliance.model import Task
from appliance.supervisor import lifeline

DEFAULT_TIMEOUT_MS = 300_000
STDERR_TAIL = 2000


def build(where: str, spec: Mapping[str, Any]) -> Handler:
    check_keys(spec, where, {"command", "timeout_ms", "env"})
    raw = spec.get("command")
    argv = shlex.split(raw) if isinstance(raw, str) else raw
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        raise ConfigError(f"{where}.command: expected a command line or a list of strings")
    env = spec.get("env") or {}
    if not isinstance(env, Mapping) or not all(isinstance(v, str) for v in env.values()):
        raise ConfigError(f"{where}.env: expected a mapping of name to string")
    timeout_ms = optional_positive(spec, "timeout_ms", where) or DEFAULT_TIMEOUT_MS
    check_program(argv[0], env.get("PATH", os.environ.get("PATH", os.defpath)), where)
    return CommandExecutor(argv, dict(env), timeout_ms / 1000)


def check_program(program: str, path: str, where: str) -> None:
    """Raise ConfigError unless `program` is an executable file (looked up on `path` when it
    has no slash), as exec will find it for each task."""
    if shutil.which(program, path=path) is None:
        kind = "no executable file" if os.sep in program else "not found on PATH"
        raise ConfigError(f"{where}.command: program {program!r}: {kind}")


class CommandFailed(Exception):
    """The command exited non-zero; the message is the tail of its stderr."""


class CommandExecutor:
    def __init__(self, argv: Sequence[str], env: dict[str, str], timeout_s: float) -> None:
        self.argv = list(argv)
        self.env = env
        self.timeout_s = timeout_s

    async def __call__(self, task: Task) -> None:
        env = {
            **os.environ,
            **self.env,
            "ATP_TASK_ID": task.id,
            "ATP_TOPIC": task.topic,
            "ATP_ATTEMPT": str(task.attempt),
        }
        proc = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            preexec_fn=functools.partial(lifeline.bind_to_parent, signal.SIGKILL, os.getpid()),
        )
        try:
            async with asyncio.timeout(self.timeout_s):
                _, stderr = await proc.communicate(task.payload.encode())
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise RetryTask(f"{self.argv[0]}: killed after {self.timeout_s:g}s") from None
        if proc.returncode != 0:
            tail = stderr.decode(errors="replace")[-STDERR_TAIL:].strip()
            raise CommandFailed(f"{self.argv[0]} exited {proc.returncode}: {tail}")
