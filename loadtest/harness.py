"""What every benchmark driver shares: throwaway redis-servers on free loopback ports, process
groups ended by id, the start-record file handlers write to, and the statistics.

Stdlib only: the peers' drivers (loadtest/peers/, run by the bench venv's Python) import it
too. Must not import appliance, grpc or any peer's package.

Start records: each handler call appends one 16-byte record, two little-endian float64s
(the task's due time and the handler's start time, both ms since the epoch), with a single
O_APPEND write, so several worker processes can share one file. The file's size counts the
tasks started; its contents give lateness (start - due), early starts and never-run tasks.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import math
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

RECORD = struct.Struct("<dd")
COUNTER_KEY = "bench:counter"  # the key every system's W1 handler INCRs (its one Redis call)
REDIS_START_S = 10.0
HASH_MAX_LISTPACK_VALUE = 1024  # atp's documented Redis setting (docs/OPERATIONS.md), for all

# The workloads' sizes, the same for every system: (the full run's, --short's: a smoke test).
SIZES: dict[str, tuple[Any, Any]] = {
    "w1_tasks": (10_000, 300),
    "w2_tasks": (2_000, 200),
    "w2_spread_ms": (10_000, 2_000),
    "seq_tasks": (3_000, 200),
    "batch_tasks": (20_000, 2_000),
    "concurrent_tasks": (10_000, 1_000),
    "many_tasks": (50_000, 2_000),  # atp, 1,000 in flight (the 50,000 tasks/s target)
    "enqueue_warmup": (200, 200),  # calls before the clock starts, as enqueue_bench.py's
    "w3_tasks": (40, 6),
    "w3_concurrency": (10, 3),
    "w3_sleep_s": (3.0, 1.0),
    "w3_cap_s": (120.0, 20.0),
    "w3_lease_s": (0.0, 2.0),  # 0: the SDK Worker's default lease
    "w6_background_per_s": (1_000, 1_000),
    "w1_drain_limit_s": (20.0, 15.0),
    "w7_runs": (3_000, 300),  # 3-step chains enqueued before the worker starts
    "w7_handoff_runs": (500, 60),  # chains started W7_GAP_MS apart on a running worker
    "w7_waiting_runs": (10_000, 1_000),  # runs waiting in a 3-day delay step (bytes)
}
W7_STEPS = 3
W7_GAP_MS = 20.0
W7_DRAIN_LIMIT_S = 60.0


def sized(name: str, short: bool) -> Any:
    """One of the workloads' sizes: the full run's, or --short's."""
    full, small = SIZES[name]
    return small if short else full


def now_ms() -> float:
    return time.time() * 1000.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- processes ---------------------------------------------------------------------------


class Proc:
    """A child in its own process group, so stop() ends it and its children by that id."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        log: Path | None = None,
    ) -> None:
        self.argv = list(argv)
        out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - closed in stop()
        self._out = out
        self.popen = subprocess.Popen(
            self.argv,
            env=env,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT if log else subprocess.DEVNULL,
            start_new_session=True,
        )
        self.pid = self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """SIGTERM to the group, SIGKILL after timeout_s; the exit code (None if it was killed).
        Descendants that had left the group and outlive it get SIGKILL too."""
        family = descendants(self.pid) if self.alive() else []
        try:
            return self._stop_group(timeout_s)
        finally:
            for pid, started in family:
                if _start_time(pid) == started:  # the same process, not a reused pid
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)

    def _stop_group(self, timeout_s: float) -> int | None:
        for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, sig)
            try:
                code = self.popen.wait(wait_s)
            except subprocess.TimeoutExpired:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)  # grandchildren left behind, if any
            self._close()
            return code if sig == signal.SIGTERM else None
        self._close()
        return None

    def kill(self) -> None:
        """SIGKILL to the group and every descendant at once, the ones that left the group
        too (RQ's work horses do), as when a container dies: W3's crash, no clean-up."""
        family = [pid for pid, _ in descendants(self.pid)]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        for pid in family:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.popen.wait(10)
        self._close()

    def _close(self) -> None:
        if self._out is not subprocess.DEVNULL:
            self._out.close()  # type: ignore[union-attr]


def _start_time(pid: int) -> int | None:
    """A process's start time (clock ticks since boot; /proc/PID/stat field 22), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rpartition(")")[2].split()[19])


def cpu_seconds(pid: int, system_only: bool = False) -> float:
    """CPU time (user + system, or system only) used so far by `pid` and its live descendants
    (Linux /proc)."""
    total = 0
    for each in (pid, *(p for p, _ in descendants(pid))):
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += (0 if system_only else int(fields[11])) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[tuple[int, int]]:
    """Every live descendant of `pid` (Linux /proc), whatever its process group, with its
    start time (so a later kill can tell it from a process that reused its pid)."""
    children: dict[int, list[tuple[int, int]]] = collections.defaultdict(list)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        children[int(fields[1])].append((int(entry.name), int(fields[19])))  # ppid, start
    found: list[tuple[int, int]] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child[0])
    return found


# -- redis -------------------------------------------------------------------------------


def _encode(*args: object) -> bytes:
    parts = [f"*{len(args)}\r\n".encode()]
    for a in args:
        data = a if isinstance(a, bytes) else str(a).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def redis_command(port: int, *args: object, timeout_s: float = 30.0) -> bytes | int | None:
    """One command over a fresh connection (simple, bulk, integer or error replies only)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as s:
        s.sendall(_encode(*args))
        f = s.makefile("rb")
        line = f.readline()
        kind, rest = line[:1], line[1:].rstrip(b"\r\n")
        if kind == b"+":
            return rest
        if kind == b":":
            return int(rest)
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b"$":
            size = int(rest)
            return None if size < 0 else f.read(size + 2)[:-2]
        raise RuntimeError(f"unexpected reply {line!r}")


def used_memory(port: int, clients: bool = True) -> int:
    """INFO memory's used_memory, in bytes; `clients=False`: without the clients' buffers
    (mem_clients_normal, mem_clients_slaves), which many connections make noisy."""
    reply = redis_command(port, "INFO", "memory")
    assert isinstance(reply, bytes)
    info = dict(line.split(":", 1) for line in reply.decode().splitlines() if ":" in line)
    if "used_memory" not in info:
        raise RuntimeError("INFO memory has no used_memory")
    buffers = ("mem_clients_normal", "mem_clients_slaves")
    return int(info["used_memory"]) - (0 if clients else sum(int(info.get(b, 0)) for b in buffers))


@dataclasses.dataclass
class RedisServer:
    """A fresh redis-server on a free loopback port with a throwaway data dir. Every system
    gets the same settings: AOF everysec (the appliance's own default), no RDB snapshots, no
    automatic AOF rewrite (so no fork lands in the middle of a measurement), and the
    `hash-max-listpack-value 1024` atp asks of its Redis (compact records up to 1 KiB)."""

    port: int = 0
    dir: str = ""
    proc: Proc | None = None

    def __init__(self, extra: Sequence[str] = (), port: int = 0) -> None:
        self.extra = list(extra)  # more redis-server options (a replica's --replicaof, ...)
        self.want_port = port

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.port = self.want_port or free_port()
        self.dir = tempfile.mkdtemp(prefix="atp-bench-redis-")
        self.proc = Proc(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                self.dir,
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--auto-aof-rewrite-percentage",
                "0",
                "--hash-max-listpack-value",
                str(HASH_MAX_LISTPACK_VALUE),
                "--loglevel",
                "warning",
                *self.extra,
            ]
        )
        deadline = time.monotonic() + REDIS_START_S
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, RuntimeError):
                if redis_command(self.port, "PING", timeout_s=1.0) == b"PONG":
                    return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("redis-server did not answer PING")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()


def cluster_port() -> int:
    """A free port below 55536 whose cluster bus port (+10000) is free too."""
    while True:
        port = free_port()
        if port < 55536:
            with socket.socket() as s, contextlib.suppress(OSError):
                s.bind(("127.0.0.1", port + 10000))
                return port


class RedisCluster:
    """A Redis Cluster of `masters` fresh redis-servers (the settings above, plus
    --cluster-enabled), joined by `redis-cli --cluster create` without replicas; `url` is
    atp's `redis+cluster://` form."""

    def __init__(self, masters: int = 3) -> None:
        flags = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
        self.nodes = [RedisServer(flags, cluster_port()) for _ in range(masters)]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def start(self) -> RedisCluster:
        try:
            for node in self.nodes:
                node.start()
            addresses = [f"127.0.0.1:{n.port}" for n in self.nodes]
            subprocess.run(
                ["redis-cli", "--cluster", "create", *addresses, "--cluster-yes"],
                check=True,
                capture_output=True,
                timeout=60,
            )
            deadline = time.monotonic() + REDIS_START_S
            while not all(b"cluster_state:ok" in _cluster_info(n.port) for n in self.nodes):
                if time.monotonic() > deadline:
                    raise RuntimeError("redis cluster did not become ok")
                time.sleep(0.1)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def _cluster_info(port: int) -> bytes:
    reply = redis_command(port, "CLUSTER", "INFO", timeout_s=2.0)
    return reply if isinstance(reply, bytes) else b""


@contextlib.contextmanager
def redis_cluster(masters: int = 3) -> Iterator[RedisCluster]:
    cluster = RedisCluster(masters).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@contextlib.contextmanager
def replicated_redis() -> Iterator[RedisServer]:
    """A fresh master with one replica (--replicaof), linked; yields the master."""
    master = RedisServer(["--repl-diskless-sync-delay", "0"]).start()
    replica = None
    try:
        replica = RedisServer(["--replicaof", "127.0.0.1", str(master.port)]).start()
        deadline = time.monotonic() + REDIS_START_S
        while redis_command(master.port, "WAIT", 1, 100) != 1:
            if time.monotonic() > deadline:
                raise RuntimeError("the replica did not link")
        yield master
    finally:
        if replica is not None:
            replica.stop()
        master.stop()


# -- start records -----------------------------------------------------------------------


class Recorder:
    """Appends one start record per handler call (safe across processes)."""

    def __init__(self, path: str | Path) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def record(self, due_ms: float) -> None:
        os.write(self.fd, RECORD.pack(due_ms, time.time() * 1000.0))

    def close(self) -> None:
        os.close(self.fd)


def count_records(path: str | Path) -> int:
    try:
        return os.stat(path).st_size // RECORD.size
    except FileNotFoundError:
        return 0


def read_records(path: str | Path) -> list[tuple[float, float]]:
    """(due ms, start ms) per handler call, in the order they were written."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return []
    usable = len(data) - len(data) % RECORD.size
    return [RECORD.unpack_from(data, i) for i in range(0, usable, RECORD.size)]


def wait_for_records(path: str | Path, count: int, timeout_s: float, poll_s: float = 0.01) -> bool:
    """True once `count` records are in; False when timeout_s passes first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if count_records(path) >= count:
            return True
        time.sleep(poll_s)
    return count_records(path) >= count


# -- statistics --------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of unsorted values; nan for none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100.0 * len(ordered)))
    return float(ordered[min(rank, len(ordered)) - 1])


def median(values: Sequence[float]) -> float:
    """The median, ignoring nan; nan for none."""
    clean = sorted(v for v in values if not math.isnan(v))
    if not clean:
        return math.nan
    mid = len(clean) // 2
    return clean[mid] if len(clean) % 2 else (clean[mid - 1] + clean[mid]) / 2.0


def processing_rate(records: Sequence[tuple[float, float]]) -> float:
    """Tasks per second between the first and the last handler start (worker boot excluded)."""
    if len(records) < 2:
        return math.nan
    starts = [start for _, start in records]
    span_s = (max(starts) - min(starts)) / 1000.0
    return (len(records) - 1) / span_s if span_s > 0 else math.nan


def drain_result(enqueue_per_s: float, records_path: Path, complete: bool) -> dict[str, Any]:
    """W1's figures for one system: its enqueue rate and how its worker drained the tasks."""
    records = read_records(records_path)
    return {
        "enqueue_per_s": enqueue_per_s,
        "process_per_s": processing_rate(records),
        "processed": len(records),
        "complete": complete,
    }


def lateness(records: Sequence[tuple[float, float]], expected: Sequence[float]) -> dict[str, float]:
    """Start minus due (ms) of the first start of each expected due time: p50/p95/p99/max,
    early starts (before the due time), never-run and repeated starts."""
    first: dict[float, float] = {}
    repeats = 0
    for due, start in records:
        if due in first:
            repeats += 1
            first[due] = min(first[due], start)
        else:
            first[due] = start
    wanted = set(expected)
    late = [first[d] - d for d in wanted if d in first]
    return {
        "p50": percentile(late, 50),
        "p95": percentile(late, 95),
        "p99": percentile(late, 99),
        "max": max(late) if late else math.nan,
        "early": float(sum(1 for v in late if v < 0)),
        "never_run": float(len(wanted - first.keys())),
        "repeats": float(repeats),
        "unexpected": float(len(first.keys() - wanted)),
    }


def due_times(count: int, start_ms: float, spread_ms: float) -> list[float]:
    """`count` due times spread uniformly over [start, start + spread), whole ms, distinct."""
    step = spread_ms / count
    return [float(int(start_ms + i * step)) for i in range(count)]


# -- W3: a worker SIGKILLed mid-run ------------------------------------------------------


Watch = Callable[[float, set[float], float], dict[str, Any]]


def crash_run(
    start_worker: Callable[[], Proc],
    starts: Path,
    finishes: Path,
    tasks: int,
    first_wave: int,
    sleep_s: float,
    cap_s: float,
    watch: Watch | None = None,
) -> dict[str, Any]:
    """With `tasks` tasks (numbered 0..tasks-1, each sleeping sleep_s) enqueued: start a
    worker, SIGKILL it (every process of it) half a task into its first wave of `first_wave`
    starts, start a fresh one at once, and wait until every task has finished or cap_s has
    passed since the kill. Handlers record (number, start) in `starts` and (number, finish)
    in `finishes`. `watch(kill_ms, interrupted numbers, deadline)`, run in a thread from the
    kill on, adds the system's own view (atp: when the server released the tasks)."""
    first = start_worker()
    try:
        if not wait_for_records(starts, first_wave, 60.0):
            raise RuntimeError(f"the worker started {count_records(starts)} tasks in 60 s")
        time.sleep(sleep_s / 2)
    finally:
        kill_ms = now_ms()
        first.kill()
    deadline = time.monotonic() + cap_s
    watched: dict[str, Any] = {}
    watcher = None
    if watch is not None:
        done = {n for n, _ in read_records(finishes)}
        interrupted = {n for n, _ in read_records(starts)} - done

        def run_watch() -> None:
            watched.update(watch(kill_ms, interrupted, deadline))

        watcher = threading.Thread(target=run_watch, daemon=True)
        watcher.start()
    second = start_worker()
    try:
        while time.monotonic() < deadline:
            if len({n for n, _ in read_records(finishes)}) >= tasks:
                break
            time.sleep(0.05)
    finally:
        second.stop()
    if watcher is not None:
        watcher.join(max(deadline - time.monotonic(), 0) + 5)
    figures = recovery(read_records(starts), read_records(finishes), kill_ms, tasks, cap_s)
    return {**figures, **watched}


def recovery(
    starts: Sequence[tuple[float, float]],
    finishes: Sequence[tuple[float, float]],
    kill_ms: float,
    tasks: int,
    cap_s: float,
) -> dict[str, Any]:
    """W3's figures from the start and finish records (number, ms) around the SIGKILL at
    kill_ms. Interrupted: started before the kill and not finished before it. Seconds after
    the kill until every interrupted task started again (restart_s) and finished
    (recovered_s), and until all tasks finished (all_done_s): nan when it did not happen
    within cap_s. unfinished: tasks with no finish at all; completed_twice: tasks whose
    handler ran to the end more than once."""
    done_before = {n for n, t in finishes if t <= kill_ms}
    interrupted = {n for n, t in starts if t <= kill_ms} - done_before
    restarted: dict[float, float] = {}
    finished_after: dict[float, float] = {}
    for n, t in starts:
        if t > kill_ms:
            restarted[n] = min(t, restarted.get(n, t))
    for n, t in finishes:
        if t > kill_ms:
            finished_after[n] = min(t, finished_after.get(n, t))
    completions = collections.Counter(n for n, _ in finishes)

    def after_kill(times: dict[float, float], wanted: set[float]) -> float:
        if not wanted or not wanted <= times.keys():
            return math.nan
        return (max(times[n] for n in wanted) - kill_ms) / 1000.0

    everything = {float(n) for n in range(tasks)}
    first_done: dict[float, float] = {}
    for n, t in finishes:
        first_done[n] = min(t, first_done.get(n, t))
    all_done = math.nan
    if everything <= first_done.keys():
        all_done = (max(first_done[n] for n in everything) - kill_ms) / 1000.0
    return {
        "tasks": tasks,
        "interrupted": len(interrupted),
        "restart_s": after_kill(restarted, interrupted),
        "recovered_s": after_kill(finished_after, interrupted),
        "all_done_s": max(all_done, 0.0) if not math.isnan(all_done) else math.nan,
        "not_recovered": len(interrupted - finished_after.keys()),
        "unfinished": len(everything - completions.keys()),
        "completed_twice": sum(1 for c in completions.values() if c > 1),
        "cap_s": cap_s,
    }


# -- W7: 3-step chains ---------------------------------------------------------------------
# Every system's step handler records mark(run, step) as its record's "due" field, then does
# one Redis INCR (the same handler work as W1).


def mark(run: int, step: int) -> float:
    """A chain step's record mark: the run and the step in one float (4 per run)."""
    return float(run * 4 + step)


def chain_starts(records: Sequence[tuple[float, float]]) -> dict[int, dict[int, float]]:
    """run -> step -> its first start (ms)."""
    runs: dict[int, dict[int, float]] = {}
    for due, start in records:
        run, step = divmod(int(due), 4)
        steps = runs.setdefault(run, {})
        steps[step] = min(steps.get(step, start), start)
    return runs


def chain_result(records: Sequence[tuple[float, float]], runs: int) -> dict[str, Any]:
    """Runs completed per second (first step start to last step start, boot excluded, as W1),
    hand-offs (one step's start to the next step's start, ms), runs incomplete, steps run
    twice."""
    starts = chain_starts(records)
    complete = [s for s in starts.values() if len(s) == W7_STEPS]
    handoffs = [s[k + 1] - s[k] for s in complete for k in range(W7_STEPS - 1)]
    times = [start for _, start in records]
    span_s = (max(times) - min(times)) / 1000.0 if len(times) > 1 else 0.0
    return {
        "runs": runs,
        "complete": len(complete),
        "runs_per_s": len(complete) / span_s if span_s > 0 else math.nan,
        "handoff_p50_ms": percentile(handoffs, 50),
        "handoff_p99_ms": percentile(handoffs, 99),
        "handoff_max_ms": max(handoffs) if handoffs else math.nan,
        "handoffs": len(handoffs),
        "twice": len(records) - sum(len(s) for s in starts.values()),
    }
