"""The embedded redis-server of `--role=all` with no Redis URL (its argv, data dir and lock) and
a raw-RESP `ping()` for any Redis URL. Must not import redis-py or grpc: the supervisor stays small.

The data dir lock (`<data_dir>/redis/atp.lock`, flock) is inherited by every child, so it stays
held while the supervisor or any of its children runs, and the file names their pids: a second
start is refused naming a pid that still runs, never racing it on one AOF (docs/adr/0005).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import shutil
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from appliance.config import Settings
from appliance.supervisor import resp

SOCKET_NAME = "redis.sock"
LOCK_NAME = "atp.lock"
LOCK_WAIT_S = 2.0  # children of a supervisor killed just now die within this (death signal)
_SUN_PATH_MAX = 107  # sizeof(sockaddr_un.sun_path) - 1 on Linux


class RedisUnavailable(Exception):
    """The embedded Redis cannot run; the message is one line for the operator (exit 78)."""


@dataclasses.dataclass(frozen=True)
class EmbeddedRedis:
    """redis-server with AOF (everysec) in <data_dir>/redis, listening only on a unix socket there.

    Why a unix socket (`<data_dir>/redis/redis.sock`, mode 700) and no TCP port: no port to pick
    or to collide with another appliance on the host, and no other local user can reach this
    password-less server (file permissions guard it; a loopback port is open to every local user).
    The path must fit AF_UNIX's 107 bytes, so a very deep data dir is refused at start.
    """

    binary: str  # absolute path of redis-server
    dir: Path  # absolute: <data_dir>/redis
    fsync: str = "everysec"  # appendfsync: always | everysec

    @property
    def socket_path(self) -> Path:
        return self.dir / SOCKET_NAME

    @property
    def url(self) -> str:
        """What every other child gets as ATP_REDIS_URL (redis-py reads unix:// URLs)."""
        return f"unix://{self.socket_path}?db=0"

    def argv(self) -> list[str]:
        return [
            self.binary,
            *("--port", "0"),  # no TCP listener at all
            *("--unixsocket", str(self.socket_path)),
            *("--unixsocketperm", "700"),
            *("--bind", "127.0.0.1"),  # only matters if someone re-enables the port
            *("--protected-mode", "yes"),
            *("--dir", str(self.dir)),
            *("--appendonly", "yes"),
            *("--appendfsync", self.fsync),  # everysec: an OS crash may lose the last second
            *("--save", ""),  # AOF alone; no RDB snapshots on a timer
            # Task records with payloads up to 1 KiB stay compact listpacks (the default, 64
            # bytes, turns a record with a 100-byte payload into a hashtable: 646 vs 296 bytes).
            *("--hash-max-listpack-value", "1024"),
            *("--daemonize", "no"),
            *("--logfile", ""),  # to stdout, next to the supervisor's own log
            *("--loglevel", "warning"),
        ]


def prepare(settings: Settings) -> EmbeddedRedis:
    """Find redis-server and make its data dir, or raise RedisUnavailable saying what to do."""
    binary = shutil.which(settings.redis_server_path)
    if binary is None:
        raise RedisUnavailable(
            f"redis-server not found (redis_server_path={settings.redis_server_path!r}): install"
            " it, set --redis-server-path, or use an external Redis: --redis-url or ATP_REDIS_URL"
        )
    directory = Path(settings.data_dir).resolve() / "redis"
    if len(str(directory / SOCKET_NAME).encode()) > _SUN_PATH_MAX:
        raise RedisUnavailable(
            f"data dir {settings.data_dir!r} is too deep for the embedded Redis's unix socket "
            f"(over {_SUN_PATH_MAX} bytes): use a shorter --data-dir or --redis-url"
        )
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise RedisUnavailable(f"cannot create the Redis data dir {directory}: {exc}") from exc
    return EmbeddedRedis(binary, directory, settings.redis_fsync)


class DataDirLock:
    """The held lock on <data_dir>/redis/atp.lock: `fd` goes to every child (pass_fds), and
    `record()` writes who runs (the supervisor's and each child's pid) into the file."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._last = b""

    def record(self, children: Mapping[str, int | None]) -> None:
        data = json.dumps(
            {"supervisor": os.getpid(), "children": {k: v for k, v in children.items() if v}}
        ).encode()
        if data != self._last:
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, data, 0)
            self._last = data


@contextlib.contextmanager
def locked(redis: EmbeddedRedis) -> Iterator[DataDirLock]:
    """Hold <data_dir>/redis/atp.lock: two redis-servers appending to one AOF would corrupt it.
    Refused (naming the pids) while an earlier supervisor or any of its children still runs,
    or while some Redis still answers on the data dir's socket."""
    fd = os.open(redis.dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        _take(fd, redis)
        _check_socket(redis)
        lock = DataDirLock(fd)
        lock.record({})
        yield lock
    finally:
        os.close(fd)


def _take(fd: int, redis: EmbeddedRedis) -> None:
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise RedisUnavailable(in_use(redis.dir.parent, os.pread(fd, 65536, 0))) from None
            time.sleep(0.05)


def in_use(data_dir: Path, recorded: bytes) -> str:
    """The one line refusing a start: which recorded pids still run."""
    try:
        record = json.loads(recorded or b"{}")
        pids = {"supervisor": int(record.get("supervisor", 0))}
        pids.update({str(k): int(v) for k, v in dict(record.get("children", {})).items()})
    except (ValueError, TypeError, AttributeError):
        pids = {}
    alive = [f"{name} pid {pid}" for name, pid in pids.items() if pid > 0 and _alive(pid)]
    running = ", ".join(alive) or "a process holding its lock"
    return (
        f"data dir {data_dir} is in use by another atp ({running} still running, lock"
        f" {LOCK_NAME} held): stop it first, or use another --data-dir"
    )


def _check_socket(redis: EmbeddedRedis) -> None:
    """A Redis answering on our socket without holding the lock (started by hand, or by an atp
    from before the lock was inherited) is refused too: its pid from INFO."""
    if not redis.socket_path.exists():
        return
    try:
        (info,) = resp.execute(redis.url, [["INFO", "server"]], timeout=0.5)
    except (OSError, ValueError):
        return  # a stale socket file: redis-server replaces it
    pid = next(
        (
            line.split(":", 1)[1].strip()
            for line in str(info).splitlines()
            if line.startswith("process_id:")
        ),
        "?",
    )
    raise RedisUnavailable(
        f"data dir {redis.dir.parent} is in use: a redis-server (pid {pid}) already serves"
        f" {redis.socket_path}: stop it first, or use another --data-dir"
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def ping(url: str, timeout: float = 0.5) -> str | None:
    """PING the Redis at `url` over raw RESP: None when it answered PONG, else why not."""
    try:
        (reply,) = resp.execute(url, [["PING"]], timeout)
    except (OSError, ValueError) as exc:
        return f"cannot reach Redis at {resp.where(url)}: {exc}"
    if isinstance(reply, resp.RespError):
        return f"Redis at {resp.where(url)} refused: {reply}"
    return None if reply == "PONG" else f"Redis at {resp.where(url)} answered {reply!r}"
