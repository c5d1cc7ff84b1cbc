"""The supervisor's HTTP endpoint on settings.http_addr: /healthz, /readyz, a route table, and
/console/* forwarded to the console role (console_proxy.py; `/` redirects there).

Other modules add routes with `add_route("/metrics", handler)` before the supervisor starts
(a handler gets the Status and returns (code, content type, body)). Runs http.server in a
daemon thread. Stdlib only: must not import redis or grpc.
"""

from __future__ import annotations

import json
import logging
import socket
import socketserver
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import urlsplit

from appliance.supervisor.console_proxy import PREFIX, ConsoleProxy
from appliance.supervisor.process import ChildInfo
from appliance.supervisor.states import ProcessState

log = logging.getLogger(__name__)


class Status(Protocol):
    """What the arbiter shows: read from the HTTP thread, so every call must be cheap and safe."""

    @property
    def draining(self) -> bool: ...

    def children(self) -> list[ChildInfo]: ...

    def ping_redis(self) -> str | None:
        """None when Redis answers PING, else why not."""
        ...


Response = tuple[int, str, bytes]  # status code, content type, body
Handler = Callable[[Status], Response]
ROUTES: dict[str, Handler] = {}


def add_route(path: str, handler: Handler) -> None:
    """Serve GET `path` with `handler` (e.g. the metrics issue's "/metrics")."""
    ROUTES[path] = handler


def json_response(code: int, body: dict[str, Any]) -> Response:
    return code, "application/json", (json.dumps(body) + "\n").encode()


def healthz(status: Status) -> Response:
    """Live while the supervisor runs: every child's name, role, pid, state and restarts."""
    children = [vars(c) for c in status.children()]
    return json_response(200, {"status": "ok", "draining": status.draining, "children": children})


def not_ready_reason(status: Status) -> str | None:
    if status.draining:
        return "draining"
    children = status.children()
    waiting = [f"{c.name} is {c.state}" for c in children if c.state != ProcessState.RUNNING]
    if waiting:
        return ", ".join(waiting)
    return status.ping_redis()


def readyz(status: Status) -> Response:
    """Ready when Redis answers PING and every child is RUNNING; else 503 with the reason."""
    reason = not_ready_reason(status)
    if reason is None:
        return json_response(200, {"ready": True})
    return json_response(503, {"ready": False, "reason": reason})


add_route("/healthz", healthz)
add_route("/readyz", readyz)


def tcp_server(addr: str, handler: type[BaseHTTPRequestHandler]) -> tuple[ThreadingHTTPServer, str]:
    """A threading HTTP server bound to `addr` ("host:port", "[::1]:port"; port 0 picks one),
    and the "host:port" it is bound to."""
    host, port = split_addr(addr)

    class Server(ThreadingHTTPServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        daemon_threads = True

    httpd = Server((host, port), handler)
    return httpd, f"{host}:{httpd.server_address[1]}"


class ServingThread:
    """A socketserver served from a daemon thread: start() serves, close() stops and closes.
    The status endpoint below and the console role's server (console/server.py) are two."""

    def __init__(self, httpd: socketserver.BaseServer, name: str) -> None:
        self.httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, args=(0.2,), name=name, daemon=True
        )

    def serve(self) -> None:
        self._thread.start()

    def close(self) -> None:
        if self._thread.is_alive():
            self.httpd.shutdown()
            self._thread.join()
        self.httpd.server_close()


class StatusServer(ServingThread):
    """The supervisor's endpoint on `addr` (tcp_server's form)."""

    def __init__(self, addr: str, status: Status, console: ConsoleProxy | None = None) -> None:
        httpd, self.address = tcp_server(addr, _handler_class(status, console))
        super().__init__(httpd, "atp-http")

    def start(self) -> StatusServer:
        self.serve()
        log.info("health endpoint on http://%s/healthz", self.address)
        return self


def split_addr(addr: str) -> tuple[str, int]:
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"http_addr: {addr!r} is not host:port")
    return host.strip("[]") or "0.0.0.0", int(port)


def _route(status: Status, path: str) -> Response:
    handler = ROUTES.get(urlsplit(path).path)
    if handler is None:
        return json_response(404, {"error": f"no route {path}"})
    try:
        return handler(status)
    except Exception as exc:
        log.exception("GET %s failed", path)
        return json_response(500, {"error": str(exc)})


def _handler_class(status: Status, console: ConsoleProxy | None) -> type[BaseHTTPRequestHandler]:
    class RequestHandler(BaseHTTPRequestHandler):
        server_version = "atp"

        def _console(self) -> bool:
            """Forward a /console request (True), or redirect `/` to the console."""
            path = urlsplit(self.path).path
            if console is None or not (path == "/" or path.startswith(PREFIX)):
                return False
            if path == "/":
                self._reply(303, [("Location", PREFIX + "/")], b"")
                return True
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length > 0 else b""
            code, headers, data = console.forward(
                self.command, self.path, list(self.headers.items()), body, self.client_address[0]
            )
            self._reply(code, [(k, v) for k, v in headers if k.lower() != "content-length"], data)
            return True

        def _reply(self, code: int, headers: list[tuple[str, str]], body: bytes) -> None:
            self.send_response(code)
            for key, value in headers:
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:  # http.server's naming
            if not self._console():
                self._reply(405, [("Content-Type", "text/plain")], b"only GET here\n")

        def do_GET(self) -> None:  # http.server's naming
            if not self._console():
                code, ctype, body = _route(status, self.path)
                self._reply(code, [("Content-Type", ctype)], body)

        def log_message(self, format: str, *args: Any) -> None:  # the base class's signature
            log.debug("http: " + format, *args)

    return RequestHandler
