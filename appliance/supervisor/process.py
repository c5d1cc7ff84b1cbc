"""One supervised child: its spec, spawn, state, restart count and backoff, and what an exit means.

A child is a fresh process (fork + exec of an argv; nothing but a parent-death signal and signal
resets runs between them) in its own process group, so a terminal's Ctrl-C reaches only the
supervisor, which decides the order of shutdown; and it gets its spec's death signal when the
supervisor dies, even by SIGKILL (lifeline.py).
Stdlib only: must not import redis or grpc.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import signal
import subprocess
from collections.abc import Callable, Mapping

from appliance.errors import EXIT_CONFIG
from appliance.supervisor import lifeline
from appliance.supervisor.states import (
    SIGNALLABLE_STATES,
    ProcessState,
    change_state,
)

log = logging.getLogger(__name__)
S = ProcessState

EXIT_SPAWN_FAILED = 127  # what a shell reports when a command cannot be run
# Signals that must not stay ignored in a child (Python ignores SIGPIPE and SIGXFSZ; a parent
# started under nohup or `&` may ignore SIGHUP or SIGINT). Caught ones reset on exec anyway.
_DEFAULT_IN_CHILD = (
    signal.SIGPIPE,
    signal.SIGXFSZ,
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGCHLD,
)
Probe = Callable[[], bool]  # readiness: True once the child answers (e.g. Redis PING)


@dataclasses.dataclass(frozen=True)
class ChildSpec:
    name: str  # unique, e.g. "worker-1", "redis"
    role: str  # server, scheduler, watchdog, worker, redis
    argv: tuple[str, ...]
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)  # the complete environment
    death_signal: int = signal.SIGKILL  # sent by the kernel when the supervisor dies
    pass_fds: tuple[int, ...] = ()  # inherited, e.g. the data dir lock (held while any child runs)


@dataclasses.dataclass(frozen=True)
class RestartPolicy:
    """When a child counts as started, how long to wait before a restart, and when to give up."""

    start_secs: float = 1.0  # up this long (and probed ready) = RUNNING; an exit sooner is fast
    backoff_base_s: float = 0.5  # delay after the first fast failure; doubles per failure
    backoff_cap_s: float = 30.0
    max_fast_failures: int = 5  # this many fast failures in a row -> FATAL

    def delay(self, fast_failures: int) -> float:
        """Restart delay after `fast_failures` in a row (0: it had been RUNNING: the base delay)."""
        return min(self.backoff_cap_s, self.backoff_base_s * 2.0 ** max(0, fast_failures - 1))


@dataclasses.dataclass(frozen=True)
class ChildInfo:
    """A snapshot of one child for /healthz."""

    name: str
    role: str
    pid: int | None
    state: str
    restarts: int
    last_exit: int | None  # exit code; negative: killed by that signal number


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


class Process:
    """One child's life: STOPPED -> STARTING -> RUNNING -> ... (see states.TRANSITIONS)."""

    def __init__(self, spec: ChildSpec, policy: RestartPolicy, probe: Probe | None = None) -> None:
        self.spec = spec
        self.name = spec.name
        self.policy = policy
        self.probe = probe
        self.state = S.STOPPED
        self.pid: int | None = None
        self.spawns = 0
        self.fast_failures = 0  # exits in a row before the child counted as started
        self.last_exit: int | None = None
        self.started_at = 0.0  # monotonic seconds
        self.restart_at = 0.0
        self.fatal_reason = ""
        self.term_sent = False
        self.killed = False
        self._popen: subprocess.Popen[bytes] | None = None

    @property
    def role(self) -> str:
        return self.spec.role

    @property
    def restarts(self) -> int:
        return max(0, self.spawns - 1)

    def spawn(self, now: float) -> None:
        """Start the child (STOPPED or BACKOFF -> STARTING); a failed exec counts as an exit."""
        change_state(self, S.STARTING, "restart" if self.spawns else "start")
        self.spawns += 1
        self.started_at = now
        self.term_sent = self.killed = False
        argv = list(self.spec.argv)
        bind = functools.partial(
            lifeline.bind_to_parent, self.spec.death_signal, os.getpid(), _DEFAULT_IN_CHILD
        )
        try:
            self._popen = subprocess.Popen(  # preexec_fn only sets signals: see lifeline.py
                argv,
                env=dict(self.spec.env),
                process_group=0,
                preexec_fn=bind,
                pass_fds=self.spec.pass_fds,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            log.error("%s: cannot run %s: %s", self.name, argv[0], reason)
            self.on_exit(EXIT_SPAWN_FAILED, now)
            return
        self.pid = self._popen.pid
        log.info("%s started (pid %d): %s", self.name, self.pid, " ".join(argv))

    def poll(self, now: float) -> None:
        """STARTING -> RUNNING once up for start_secs and answering its probe."""
        if self.state is not S.STARTING or now - self.started_at < self.policy.start_secs:
            return
        if self.probe is None or self.probe():
            change_state(self, S.RUNNING, f"up {now - self.started_at:.2f}s")
            log.info("%s is running (pid %s)", self.name, self.pid)

    def next_wakeup(self, now: float) -> float | None:
        """When this child next needs the arbiter's attention (monotonic), if it does."""
        if self.state is S.STARTING:
            due = self.started_at + self.policy.start_secs
            return due if due > now else now + 0.05  # probing: ask again soon
        if self.state is S.BACKOFF:
            return self.restart_at
        return None

    def due(self, now: float) -> bool:
        return self.state is S.BACKOFF and now >= self.restart_at

    def on_exit(self, code: int, now: float) -> None:
        """The child was reaped with `code` (negative: killed by that signal): decide what next."""
        self.pid = None
        if self._popen is not None:
            self._popen.returncode = code  # reaped by the arbiter: Popen must not wait for it
            self._popen = None
        self.last_exit = code
        if self.state is S.STOPPING:
            change_state(self, S.STOPPED, describe_exit(code))
            log.info("%s stopped with %s", self.name, describe_exit(code))
            return
        stable = self.state is S.RUNNING or (
            self.probe is None and now - self.started_at >= self.policy.start_secs
        )
        change_state(self, S.EXITED, describe_exit(code))
        if code == EXIT_CONFIG:
            self._fatal(f"exited with code {EXIT_CONFIG} (bad config)")
            return
        self.fast_failures = 0 if stable else self.fast_failures + 1
        if self.fast_failures >= self.policy.max_fast_failures:
            when = f"within {self.policy.start_secs:g}s of starting" if self.probe is None else ""
            self._fatal(
                f"exited {self.fast_failures} times in a row {when or 'before it was ready'}"
                f"; last {describe_exit(code)}"
            )
            return
        delay = self.policy.delay(self.fast_failures)
        self.restart_at = now + delay
        change_state(self, S.BACKOFF, f"restart in {delay:.2f}s")
        log.warning(
            "%s exited with %s after %.2fs; restarting in %.2fs",
            self.name,
            describe_exit(code),
            now - self.started_at,
            delay,
        )

    def _fatal(self, reason: str) -> None:
        self.fatal_reason = reason
        change_state(self, S.FATAL, reason)
        log.error("%s is FATAL: %s", self.name, reason)

    def stop(self) -> None:
        """Ask the child to stop: SIGTERM if it runs; a pending restart is called off."""
        if self.state in SIGNALLABLE_STATES and self.pid is not None:
            self._signal(signal.SIGTERM)
            self.term_sent = True
            change_state(self, S.STOPPING, "SIGTERM")
        elif self.state is S.BACKOFF:
            change_state(self, S.STOPPED, "restart called off")

    def kill(self) -> None:
        """SIGKILL a stopping child and its process group (what it started dies with it)."""
        if self.state is S.STOPPING and self.pid is not None:
            log.warning("%s (pid %d) alive at the drain deadline: SIGKILL", self.name, self.pid)
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                self._signal(signal.SIGKILL)
            self.killed = True

    def stopped_cleanly(self) -> bool:
        """After a stop: it exited by itself with 0 or by the SIGTERM it was sent."""
        return not self.killed and self.last_exit in (0, -signal.SIGTERM)

    def _signal(self, sig: signal.Signals) -> None:
        assert self.pid is not None
        with contextlib.suppress(ProcessLookupError):  # already gone; the reaper will tell
            os.kill(self.pid, sig)

    def info(self) -> ChildInfo:
        return ChildInfo(
            self.name, self.role, self.pid, self.state.value, self.restarts, self.last_exit
        )
