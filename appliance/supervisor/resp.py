"""A minimal RESP2 client for the supervisor's few Redis reads (PING for readiness, queue depth
for /metrics): connect by URL (redis://, rediss://, unix://, or a Redis Cluster's
redis+cluster://, following MOVED once), pipeline commands, parse replies.
Must not import redis-py or grpc: the supervisor stays small and starts children clean.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from appliance.config import ClusterURL, redis_cluster_nodes


class RespError(Exception):
    """Redis answered with an error reply."""


def execute(url: str, commands: Sequence[Sequence[str]], timeout: float = 0.5) -> list[Any]:
    """Send `commands` in one pipeline (after AUTH/SELECT from the URL) and return their
    replies; an error reply is returned as a RespError object, not raised. On a cluster, the
    first seed node that answers takes the pipeline and a command of a slot it does not serve
    is sent again where its MOVED reply points."""
    cluster = redis_cluster_nodes(url)
    if cluster is not None:
        return _execute_cluster(cluster, commands, timeout)
    parts = urlsplit(url)
    prefix: list[list[str]] = []
    if parts.password is not None:
        user = [unquote(parts.username)] if parts.username else []
        prefix.append(["AUTH", *user, unquote(parts.password)])
    db = _db(parts.scheme, parts.path, parts.query)
    if db:
        prefix.append(["SELECT", db])
    with _connect(parts.scheme, parts.hostname, parts.port, parts.path, timeout) as sock:
        sock.sendall(b"".join(_encode(c) for c in [*prefix, *commands]))
        with sock.makefile("rb") as stream:
            replies = [_read(stream) for _ in range(len(prefix) + len(commands))]
    for reply in replies[: len(prefix)]:
        if isinstance(reply, RespError):
            return [reply] * len(commands)
    return replies[len(prefix) :]


def _node_url(cluster: ClusterURL, address: str) -> str:
    user = quote(cluster.username or "", safe="")
    auth = f"{user}:{quote(cluster.password, safe='')}@" if cluster.password else ""
    return f"{'rediss' if cluster.tls else 'redis'}://{auth}{address}/0"


def _execute_cluster(
    cluster: ClusterURL, commands: Sequence[Sequence[str]], timeout: float
) -> list[Any]:
    error: OSError | None = None
    for host, port in cluster.nodes:
        try:
            replies = execute(_node_url(cluster, f"{host}:{port}"), commands, timeout)
            break
        except OSError as exc:  # a seed node down: the next one
            error = exc
    else:
        raise error or OSError("no cluster node given")
    moved: dict[str, list[int]] = {}
    for n, reply in enumerate(replies):
        if isinstance(reply, RespError) and str(reply).startswith("MOVED "):
            moved.setdefault(str(reply).split()[2], []).append(n)
    for address, indexes in moved.items():
        again = execute(_node_url(cluster, address), [commands[n] for n in indexes], timeout)
        for n, reply in zip(indexes, again, strict=True):
            replies[n] = reply
    return replies


def where(url: str) -> str:
    cluster = redis_cluster_nodes(url)
    if cluster is not None:
        return "cluster " + ",".join(f"{host}:{port}" for host, port in cluster.nodes)
    parts = urlsplit(url)
    return parts.path if parts.scheme == "unix" else f"{parts.hostname}:{parts.port or 6379}"


def _db(scheme: str, path: str, query: str) -> str:
    if scheme == "unix":
        return parse_qs(query).get("db", ["0"])[0]
    return path.strip("/") or "0"


def _connect(
    scheme: str, host: str | None, port: int | None, path: str, timeout: float
) -> socket.socket:
    if scheme == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except OSError:
            sock.close()
            raise
        return sock
    if scheme not in ("redis", "rediss"):
        raise ValueError(f"unsupported URL scheme {scheme!r}")
    sock = socket.create_connection((host or "127.0.0.1", port or 6379), timeout)
    if scheme == "redis":
        return sock
    try:
        return ssl.create_default_context().wrap_socket(sock, server_hostname=host)
    except (OSError, ValueError):
        sock.close()
        raise


def _encode(args: Sequence[str]) -> bytes:
    out = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _read(stream: Any) -> Any:
    line = stream.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError("connection closed")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        return RespError(rest.decode(errors="replace"))
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        return None if size < 0 else stream.read(size + 2)[:-2].decode(errors="replace")
    if kind == b"*":
        size = int(rest)
        return None if size < 0 else [_read(stream) for _ in range(size)]
    raise ValueError(f"not a RESP reply: {line[:40]!r}")
