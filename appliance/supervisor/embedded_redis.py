"""The embedded redis-server of `--role=all` with no Redis URL (its argv, data dir and lock) and
a raw-RESP `ping()` for any Redis URL. Must not import redis-py or grpc: the supervisor stays small.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from appliance.config import Settings
from appliance.supervisor import resp

SOCKET_NAME = "redis.sock"
LOCK_NAME = "atp.lock"
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
            *("--appendfsync", "everysec"),  # a Redis crash may lose about the last second
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
    return EmbeddedRedis(binary, directory)


@contextlib.contextmanager
def locked(redis: EmbeddedRedis) -> Iterator[None]:
    """Hold <data_dir>/redis/atp.lock: two redis-servers appending to one AOF would corrupt it."""
    fd = os.open(redis.dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RedisUnavailable(
                f"data dir {redis.dir.parent} is in use by another atp (lock {LOCK_NAME} held)"
            ) from None
        yield
    finally:
        os.close(fd)


def ping(url: str, timeout: float = 0.5) -> str | None:
    """PING the Redis at `url` over raw RESP: None when it answered PONG, else why not."""
    try:
        (reply,) = resp.execute(url, [["PING"]], timeout)
    except (OSError, ValueError) as exc:
        return f"cannot reach Redis at {resp.where(url)}: {exc}"
    if isinstance(reply, resp.RespError):
        return f"Redis at {resp.where(url)} refused: {reply}"
    return None if reply == "PONG" else f"Redis at {resp.where(url)} answered {reply!r}"
