"""Is a listen address free? One line for the operator when it is not, checked before anything
starts (the supervisor: gRPC before its children; a lone server role before it builds gRPC).
Stdlib only: must not import redis or grpc.
"""

from __future__ import annotations

import errno
import socket


def taken(setting: str, address: str, reuse_port: bool = False) -> str | None:
    """None when `address` ("host:port", "[::]:port") can be bound now (port 0 always can),
    else the one line saying which `setting` to change."""
    host, _, port_text = address.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    try:
        port = int(port_text)
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (ValueError, OSError):
        return None  # not ours to judge: the listener reports a bad address itself
    if port == 0 or not infos:
        return None
    family, kind, proto, _, sockaddr = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC and http.server
        if reuse_port and hasattr(socket, "SO_REUSEPORT"):
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            probe.bind(sockaddr)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return (
                    f"{setting} {address} is already in use by another process: stop it, or"
                    f" choose another --{setting.replace('_', '-')}"
                )
            return f"{setting} {address}: cannot listen there: {exc.strerror or exc}"
    return None
