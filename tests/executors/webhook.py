"""A real local HTTP server for executor tests: records requests, answers by path."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Recorder(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.requests: list[dict[str, Any]] = []
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> Recorder:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
        self.thread.join(5)


class Handler(BaseHTTPRequestHandler):
    server: Recorder

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        self.server.requests.append(
            {"path": self.path, "headers": dict(self.headers), "body": body}
        )
        status, headers = ANSWERS.get(self.path, (200, {}))
        if self.path == "/slow":
            time.sleep(1.5)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"no" if status >= 300 else b"ok")

    def log_message(self, *args: object) -> None:
        pass


ANSWERS: dict[str, tuple[int, dict[str, str]]] = {
    "/ok": (200, {}),
    "/created": (201, {}),
    "/busy": (429, {"Retry-After": "7"}),
    "/down": (503, {}),
    "/error": (500, {}),
    "/missing": (404, {}),
    "/bad": (400, {}),
    "/slow": (200, {}),
}
