"""The supervisor loop of `atp --role=...`: role expansion, start order (embedded Redis first),
restarts, the drain, and the exit code (0 clean drain, 1 crash loop or unclean drain, 78 config).
Must not import redis or grpc, nor modules that do: children start clean, the parent stays small.

gunicorn-shaped: signal handlers only queue the signal's name and wake the loop through a pipe;
the loop dispatches by name (TERM, INT, HUP: drain; a second INT or QUIT: SIGKILL now; CHLD:
reap) and reaps with waitpid(-1, WNOHANG), since it may be PID 1 and inherit orphans.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import select
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from types import FrameType

from appliance.config import ROLES, Settings
from appliance.errors import EXIT_CONFIG
from appliance.supervisor import embedded_redis, exposition, lifeline, ports
from appliance.supervisor.console_proxy import ConsoleProxy
from appliance.supervisor.http import StatusServer, add_route
from appliance.supervisor.process import (
    ChildInfo,
    ChildSpec,
    Process,
    RestartPolicy,
)
from appliance.supervisor.states import HALTED_STATES, ProcessState

log = logging.getLogger(__name__)
S = ProcessState

EXIT_OK, EXIT_FAILED = 0, 1  # and EXIT_CONFIG (78): a child or the setup reported bad config
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"  # what the store uses when redis_url is empty
KILL_WAIT_S = 5.0  # after SIGKILL, how long to wait for the reaper before giving up
MAX_SLEEP_S = 1.0
CommandFactory = Callable[[str, str], Sequence[str]]  # (role, child name) -> argv
SIGNALS = ("SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGCHLD")
# Flags carrying secrets: children get them in the environment, never on argv (`ps` shows argv
# to every local user); each with the shortest prefix argparse accepts for it.
SECRET_FLAGS = {"--redis-url": ("ATP_REDIS_URL", "--redis-u"), "--token": ("ATP_TOKEN", "--token")}


def self_command() -> list[str]:
    """How to run this program again: the frozen binary itself, or `python -m appliance`."""
    if getattr(sys, "frozen", False):
        return [sys.executable]
    return [sys.executable, "-m", "appliance"]


def split_secrets(argv: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """`argv` without its secret flags (`--redis-url`, `--token`, as `--x=v` or `--x v`), and
    those values as the ATP_* variables a child reads instead."""
    out: list[str] = []
    env: dict[str, str] = {}
    args = iter(argv)
    for arg in args:
        name, eq, value = arg.partition("=")
        secret = _secret_variable(name)
        if secret is None:
            out.append(arg)
        elif eq:
            env[secret] = value
        else:
            env[secret] = next(args, "")
    return out, env


def _secret_variable(name: str) -> str | None:
    for flag, (variable, shortest) in SECRET_FLAGS.items():
        if name.startswith(shortest) and flag.startswith(name):
            return variable
    return None


def expand_roles(settings: Settings, roles: Sequence[str]) -> list[tuple[str, str]]:
    """(name, role) of every atp child: `all` is every role; servers and workers are counted."""
    wanted = [r.strip() for item in roles for r in item.split(",") if r.strip()]
    unknown = sorted(set(wanted) - {*ROLES, "all"})
    if unknown or not wanted:
        raise ValueError(f"role: unknown {unknown or wanted!r}; use {','.join(ROLES)} or all")
    chosen = ROLES if "all" in wanted else tuple(r for r in ROLES if r in wanted)
    counts = {"server": settings.servers, "worker": settings.workers or os.cpu_count() or 1}
    return [(f"{role}-{i}", role) for role in chosen for i in range(1, counts.get(role, 1) + 1)]


def run(
    settings: Settings,
    roles: list[str],
    passthrough: list[str],
    command_factory: CommandFactory | None = None,
    *,
    policy: RestartPolicy | None = None,
) -> int:
    """Supervise `roles` until SIGTERM/SIGINT (0 after a clean drain) or a FATAL child (1, or 78
    when a child reported bad config). Children run `self_command() --role=<role> *passthrough`
    unless `command_factory(role, name)` says otherwise."""
    try:
        names = expand_roles(settings, roles)
    except ValueError as exc:
        log.error("%s", exc)
        return EXIT_CONFIG
    policy = policy or RestartPolicy()
    metrics_dir = exposition.prepare()  # before any child starts or prometheus_client loads
    passthrough, secrets = split_secrets(passthrough)
    factory = command_factory or (lambda role, _: [*self_command(), f"--role={role}", *passthrough])
    wants_redis = any("all" in r.split(",") for r in roles) and not settings.redis_url
    try:
        redis = embedded_redis.prepare(settings) if wants_redis else None
        with embedded_redis.locked(redis) if redis else contextlib.nullcontext() as lock:
            probe_servers = command_factory is None  # stand-in children listen on nothing
            servers = probe_servers and any(role == "server" for _, role in names)
            reuse = settings.servers > 1 or settings.grpc_reuse_port
            problem = servers and ports.taken("grpc_addr", settings.grpc_addr, reuse)
            if problem:  # one line now, rather than a server restarted until it is FATAL
                log.error("%s", problem)
                return EXIT_CONFIG
            return _supervise(settings, names, factory, policy, redis, lock, probe_servers, secrets)
    except embedded_redis.RedisUnavailable as exc:
        log.error("%s", exc)
        return EXIT_CONFIG
    finally:
        exposition.cleanup(metrics_dir)


def _supervise(
    settings: Settings,
    names: list[tuple[str, str]],
    factory: CommandFactory,
    policy: RestartPolicy,
    redis: embedded_redis.EmbeddedRedis | None,
    lock: embedded_redis.DataDirLock | None = None,
    probe_servers: bool = True,
    secrets: dict[str, str] | None = None,
) -> int:
    env = {**os.environ, **(secrets or {})}  # passed through to the children, not read as config
    env[lifeline.SUPERVISOR_PID] = str(os.getpid())  # whom a child watches (lifeline.py)
    if settings.servers > 1:
        env["ATP_GRPC_REUSE_PORT"] = "1"
    redis_child = None
    fds = (lock.fd,) if lock else ()
    if redis is not None:
        env["ATP_REDIS_URL"] = redis.url
        url = redis.url
        # SIGTERM when the supervisor dies: Redis flushes its AOF and exits in milliseconds
        spec = ChildSpec(
            "redis", "redis", tuple(redis.argv()), dict(os.environ), signal.SIGTERM, fds
        )
        started_when_it_answers = dataclasses.replace(policy, start_secs=0.0)
        redis_child = Process(
            spec, started_when_it_answers, probe=lambda: embedded_redis.ping(url) is None
        )
    listening = functools.partial(accepts, local_address(settings.grpc_addr))
    children = [
        Process(
            ChildSpec(name, role, tuple(factory(role, name)), env, pass_fds=fds),
            policy,
            probe=listening if role == "server" and probe_servers else None,
        )
        for name, role in names
    ]
    ping_url = redis.url if redis else settings.redis_url or DEFAULT_REDIS_URL
    depth = (settings.metrics_max_topics, tuple(settings.topics))
    add_route("/metrics", exposition.handler(ping_url, settings.key_prefix, *depth))
    return Arbiter(settings, children, redis_child, ping_url, lock).run()


def local_address(address: str) -> tuple[str, int]:
    """Where a local probe dials a listen address (a wildcard host means loopback)."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    return ("127.0.0.1" if host in {"", "0.0.0.0", "::"} else host), int(port)


def accepts(address: tuple[str, int]) -> bool:
    """A server counts as up once its gRPC port accepts connections."""
    try:
        with socket.create_connection(address, timeout=0.2):
            return True
    except OSError:
        return False


class Arbiter:
    """The supervision loop: `run()` loops `run_once()` until the drain is over; `stop()`
    starts the drain."""

    def __init__(
        self,
        settings: Settings,
        children: list[Process],
        redis: Process | None,
        redis_url: str,
        lock: embedded_redis.DataDirLock | None = None,
    ) -> None:
        self.settings = settings
        self.lock = lock  # the data dir lock: records who runs
        self.atp_children = children  # every atp child; started once Redis answers
        self.redis = redis
        self.redis_url = redis_url
        self.processes = ([redis] if redis else []) + children
        self.exit_code = EXIT_OK
        self.done = False
        self._signals: deque[str] = deque()
        self._wake_r = self._wake_w = -1
        self._drain: Drain | None = None

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> int:
        try:
            http = (
                StatusServer(self.settings.http_addr, self, ConsoleProxy(self.settings))
                if self.settings.http_addr
                else None
            )
        except (OSError, ValueError) as exc:
            problem = ports.taken("http_addr", self.settings.http_addr)
            log.error("%s", problem or f"cannot serve health on {self.settings.http_addr}: {exc}")
            return EXIT_CONFIG
        with self._signal_queue(), contextlib.closing(http) if http else contextlib.nullcontext():
            if http:
                http.start()
            log.info("supervising %s", ", ".join(p.name for p in self.processes))
            self._supervise(time.monotonic())
            self._record()
            while not self.done:
                self.run_once()
        log.info("supervisor exits with %d", self.exit_code)
        return self.exit_code

    def run_once(self) -> None:
        """One pass: sleep until something is due, dispatch queued signals, reap, move states."""
        self._sleep(self._timeout(time.monotonic()))
        while self._signals:
            self._dispatch(self._signals.popleft())
        self._reap()
        now = time.monotonic()
        if self._drain is None:
            self._supervise(now)
            self._record()
        elif self._drain.step(now):
            self.done = True
            if self._drain.unclean:
                log.warning("unclean drain: %s", ", ".join(self._drain.unclean))
                if self.exit_code == EXIT_OK:
                    self.exit_code = EXIT_FAILED

    def stop(self, reason: str, exit_code: int = EXIT_OK) -> None:
        """Drain in stages, each once the previous is gone: workers first (they still need the
        API to settle their tasks), then the other atp children, then the embedded Redis."""
        if self._drain is not None:
            return
        log.info("stopping (%s): draining for up to %d ms", reason, self.settings.drain_timeout_ms)
        self.exit_code = exit_code
        workers = [p for p in self.atp_children if p.spec.role == "worker"]
        others = [p for p in self.atp_children if p.spec.role != "worker"]
        stages = [workers, others, [self.redis] if self.redis else []]
        self._drain = Drain(stages, self.settings.drain_timeout_ms / 1000, time.monotonic())

    def _supervise(self, now: float) -> None:
        for p in self.processes:
            p.poll(now)
        redis_up = self.redis is None or self.redis.state is S.RUNNING
        for p in self.processes:
            first_start = p.state is S.STOPPED and (redis_up or p is self.redis)
            if first_start or p.due(now):
                p.spawn(now)
        fatal = next((p for p in self.processes if p.state is S.FATAL), None)
        if fatal is not None:
            bad_config = fatal.last_exit == EXIT_CONFIG
            reason = f"{fatal.name} is FATAL: {fatal.fatal_reason}"
            self.stop(reason, EXIT_CONFIG if bad_config else EXIT_FAILED)

    def _record(self) -> None:
        if self.lock is not None:
            self.lock.record({p.name: p.pid for p in self.processes})

    def _timeout(self, now: float) -> float:
        due = [p.next_wakeup(now) for p in self.processes]
        if self._drain is not None:
            due.append(self._drain.deadline)
        soonest = min((d for d in due if d is not None), default=now + MAX_SLEEP_S)
        return max(0.0, min(MAX_SLEEP_S, soonest - now))

    # -- signals -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _signal_queue(self) -> Iterator[None]:
        """Handlers only append the signal's name; set_wakeup_fd wakes the sleeping loop."""
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        old_fd = signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        previous = {}
        for name in SIGNALS:
            sig = signal.Signals[name]
            if name == "SIGHUP" and signal.getsignal(sig) is signal.SIG_IGN:
                continue  # started under nohup: keep ignoring hangups
            previous[sig] = signal.signal(sig, self._queue_signal)
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            signal.set_wakeup_fd(old_fd)
            os.close(self._wake_r)
            os.close(self._wake_w)

    def _queue_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals.append(signal.Signals(signum).name)

    def _sleep(self, timeout: float) -> None:
        with contextlib.suppress(InterruptedError):
            select.select([self._wake_r], [], [], timeout)
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_r, 4096):
                pass

    def _dispatch(self, name: str) -> None:
        handler = getattr(self, "handle_" + name.removeprefix("SIG").lower(), None)
        if handler is None:
            log.warning("no handler for %s", name)
        else:
            handler()

    def handle_chld(self) -> None:
        self._reap()

    def handle_term(self) -> None:
        self.stop("SIGTERM")

    def handle_hup(self) -> None:
        self.stop("SIGHUP")  # the terminal went away: drain rather than die and orphan children

    def handle_int(self) -> None:
        if self._drain is None:
            self.stop("SIGINT")
        else:
            log.warning("second SIGINT: not waiting for the drain any longer")
            self._drain.hurry(time.monotonic())

    def handle_quit(self) -> None:
        self.stop("SIGQUIT")
        assert self._drain is not None
        self._drain.hurry(time.monotonic())

    # -- children ------------------------------------------------------------------------------

    def _reap(self) -> None:
        """Collect every exited child (and any orphan reparented to us when we are PID 1)."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            owner = next((p for p in self.processes if p.pid == pid), None)
            if owner is None:
                log.debug("reaped pid %d (not ours: an orphan)", pid)
                continue
            owner.on_exit(os.waitstatus_to_exitcode(status), time.monotonic())
            exposition.child_exited(pid)
            if owner.state is S.BACKOFF:
                from appliance import metrics  # after exposition.prepare() set the directory

                metrics.CHILD_RESTARTS.labels(owner.name).inc()

    # -- what /healthz and /readyz read (from the HTTP thread) ----------------------------------

    @property
    def draining(self) -> bool:
        return self._drain is not None

    def children(self) -> list[ChildInfo]:
        return [p.info() for p in list(self.processes)]

    def ping_redis(self) -> str | None:
        return embedded_redis.ping(self.redis_url)


class Drain:
    """Stops children stage by stage: SIGTERM, wait up to the timeout, SIGKILL, next stage."""

    def __init__(self, stages: list[list[Process]], timeout_s: float, now: float) -> None:
        self.stages = [stage for stage in stages if stage]
        self.timeout_s = timeout_s
        self.deadline = now
        self.killed = False
        self.unclean: list[str] = []
        self._begin(now)

    def _begin(self, now: float) -> None:
        self.deadline = now + self.timeout_s
        self.killed = False
        for p in self.stages[0] if self.stages else []:
            p.stop()

    def hurry(self, now: float) -> None:
        self.deadline = min(self.deadline, now)

    def step(self, now: float) -> bool:
        """Advance the drain; True once every stage has exited (or would not die)."""
        while self.stages and all(p.state in HALTED_STATES for p in self.stages[0]):
            finished = self.stages.pop(0)
            self.unclean += [p.name for p in finished if p.term_sent and not p.stopped_cleanly()]
            if self.stages:
                self._begin(now)
        if not self.stages:
            return True
        if now >= self.deadline and not self.killed:
            for p in self.stages[0]:
                p.kill()
            self.killed = True
            self.deadline = now + KILL_WAIT_S
        elif now >= self.deadline:
            stuck = [f"{p.name} (pid {p.pid})" for p in self.stages.pop(0) if p.pid is not None]
            log.error("giving up on %s: alive %gs after SIGKILL", ", ".join(stuck), KILL_WAIT_S)
            self.unclean += stuck
            if self.stages:
                self._begin(now)
        return not self.stages
