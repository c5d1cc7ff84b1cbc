"""The console role's HTTP server: a threading http.server on console_addr, or on the unix
socket <data_dir>/console.sock that the supervisor proxies /console/* to (ADR 0011).

Stdlib http.server plus app.py; must not import redis, grpc or the store.
"""

from __future__ import annotations

import logging
import os
import socketserver
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from appliance.auth import is_loopback
from appliance.config import Settings
from appliance.console.app import FORM_MAX_BYTES, PREFIX, Console, Request, Response, parse_form
from appliance.supervisor.console_proxy import socket_path
from appliance.supervisor.http import ServingThread, tcp_server

log = logging.getLogger(__name__)


class _UnixServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True


class ConsoleServer(ServingThread):
    def __init__(self, settings: Settings, console: Console | None = None) -> None:
        self.console = console or Console(settings)
        handler = _handler_class(self.console)
        self._socket: Path | None = None
        httpd: socketserver.BaseServer
        if settings.console_addr:
            httpd, self.address = tcp_server(settings.console_addr, handler)
        else:
            self._socket = socket_path(settings)
            self._socket.parent.mkdir(parents=True, exist_ok=True)
            self._socket.unlink(missing_ok=True)  # left by a console that was killed
            httpd = _UnixServer(str(self._socket), handler)
            os.chmod(self._socket, 0o600)  # only this user (the supervisor) may connect
            self.address = f"unix:{self._socket}"
        super().__init__(httpd, "atp-console")

    def start(self) -> ConsoleServer:
        self.serve()
        log.info("console on %s (path %s/)", self.address, PREFIX)
        return self

    def close(self) -> None:
        super().close()
        self.console.close()
        if self._socket is not None:
            self._socket.unlink(missing_ok=True)


def _peer(direct: Any, forwarded: str) -> str:
    """The browser's address: the proxy's X-Forwarded-For when the direct peer is the local
    supervisor (unix socket or loopback), else the direct peer."""
    host = direct[0] if isinstance(direct, tuple) and direct else ""
    local = not host or is_loopback(f"{host}:0")
    return forwarded.strip() if local and forwarded.strip() else host or "127.0.0.1"


def _handler_class(console: Console) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "atp-console"

        def do_GET(self) -> None:  # http.server's naming
            self._serve(b"")

        def do_POST(self) -> None:  # http.server's naming
            length = int(self.headers.get("Content-Length") or 0)
            if length > FORM_MAX_BYTES:
                self._send(Response(413, b"form too large\n", "text/plain"))
                return
            self._serve(self.rfile.read(length) if length > 0 else b"")

        def _serve(self, body: bytes) -> None:
            parts = urlsplit(self.path)
            if not (parts.path == PREFIX or parts.path.startswith(PREFIX + "/")):
                self._send(Response(303, headers=[("Location", PREFIX + "/")]))
                return
            request = Request(
                method=self.command,
                path=parts.path.removeprefix(PREFIX) or "/",
                query={k: v[0] for k, v in parse_qs(parts.query).items()},
                form=parse_form(body) if self.command == "POST" else {},
                headers={k.lower(): v for k, v in self.headers.items()},
                peer=_peer(self.client_address, self.headers.get("X-Forwarded-For", "")),
            )
            try:
                response = console.handle(request)
            except Exception:
                log.exception("console %s %s failed", self.command, parts.path)
                response = Response(500, b"console error (see the log)\n", "text/plain")
            self._send(response)

        def _send(self, response: Response) -> None:
            self.send_response(response.code)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            self.send_header("X-Frame-Options", "DENY")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Referrer-Policy", "same-origin")
            for key, value in response.headers:
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(response.body)

        def address_string(self) -> str:  # a unix socket's peer has no address
            return "console"

        def log_message(self, format: str, *args: Any) -> None:  # the base class's signature
            log.debug("console http: " + format, *args)

    return Handler
