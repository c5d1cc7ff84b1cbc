"""The supervisor's side of the console (ADR 0011): forward /console/* on http_addr to the
console role's own HTTP server (a unix socket in the data dir, or console_addr).

Stdlib only (http.client): the console itself, with the SDK and grpc, runs in its own child.
The real peer goes along as X-Forwarded-For, replacing any the browser sent.
"""

from __future__ import annotations

import http.client
import logging
import socket
from pathlib import Path

from appliance.config import Settings

log = logging.getLogger(__name__)
PREFIX = "/console"
SOCKET_NAME = "console.sock"
TIMEOUT_S = 30.0
HOP_HEADERS = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "upgrade", "te", "proxy-connection"}
)
Reply = tuple[int, list[tuple[str, str]], bytes]


def socket_path(settings: Settings) -> Path:
    """Where the console listens when console_addr is empty."""
    return Path(settings.data_dir) / SOCKET_NAME


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=TIMEOUT_S)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(TIMEOUT_S)
        self.sock.connect(self._path)


class ConsoleProxy:
    """Forwards one request at a time per calling thread (a fresh connection each)."""

    def __init__(self, settings: Settings) -> None:
        self.console_addr = settings.console_addr
        self.path = str(socket_path(settings).resolve())

    def _connection(self) -> http.client.HTTPConnection:
        if self.console_addr:
            host, _, port = self.console_addr.rpartition(":")
            return http.client.HTTPConnection(host.strip("[]"), int(port), timeout=TIMEOUT_S)
        return UnixConnection(self.path)

    def forward(
        self, method: str, path: str, headers: list[tuple[str, str]], body: bytes, peer: str
    ) -> Reply:
        sent = {k: v for k, v in headers if k.lower() not in HOP_HEADERS | {"x-forwarded-for"}}
        sent["X-Forwarded-For"] = peer
        conn = self._connection()
        try:
            conn.request(method, path, body=body or None, headers=sent)
            reply = conn.getresponse()
            data = reply.read()
            dropped = HOP_HEADERS | {"server", "date"}  # this server sends its own
            kept = [(k, v) for k, v in reply.getheaders() if k.lower() not in dropped]
            return reply.status, kept, data
        except OSError as exc:
            log.debug("console unreachable: %s", exc)
            text = f"the console is not running or not reachable ({exc})\n".encode()
            return 502, [("Content-Type", "text/plain; charset=utf-8")], text
        finally:
            conn.close()
