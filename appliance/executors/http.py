"""The `http` executor: POST the payload to a URL.

Headers carry the task id, topic, attempt and an idempotency key (the task id: a retried
delivery of one task sends the same key). 2xx -> done; 429, 5xx, timeouts and connection
errors -> retry (honouring Retry-After, in seconds or as an HTTP date); any other status ->
dead letter, since sending the same request again cannot succeed.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from typing import Any

import httpx

from appliance.errors import ConfigError, DeadLetterTask, RetryTask
from appliance.executors.spec import Handler, check_keys, optional_positive, required_str
from appliance.model import Task

DEFAULT_TIMEOUT_MS = 30_000
MAX_BODY_IN_ERROR = 300


def build(where: str, spec: Mapping[str, Any]) -> Handler:
    check_keys(spec, where, {"url", "headers", "timeout_ms", "method"})
    url = required_str(spec, "url", where)
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"{where}.url: must start with http:// or https://, got {url!r}")
    headers = spec.get("headers") or {}
    if not isinstance(headers, Mapping) or not all(isinstance(v, str) for v in headers.values()):
        raise ConfigError(f"{where}.headers: expected a mapping of header name to string")
    method = str(spec.get("method", "POST")).upper()
    if method not in {"POST", "PUT"}:
        raise ConfigError(f"{where}.method: POST or PUT, got {method!r}")
    timeout_ms = optional_positive(spec, "timeout_ms", where) or DEFAULT_TIMEOUT_MS
    return HttpExecutor(url, dict(headers), method, timeout_ms / 1000)


class HttpExecutor:
    def __init__(self, url: str, headers: dict[str, str], method: str, timeout_s: float) -> None:
        self.url = url
        self.headers = headers
        self.method = method
        self.timeout_s = timeout_s
        self._client: httpx.AsyncClient | None = None

    async def __call__(self, task: Task) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout_s, follow_redirects=False)
        try:
            reply = await self._client.request(
                self.method, self.url, content=task.payload.encode(), headers=self._headers(task)
            )
        except httpx.TimeoutException as exc:
            raise RetryTask(
                f"{self.method} {self.url}: timed out after {self.timeout_s:g}s"
            ) from exc
        except httpx.HTTPError as exc:
            raise RetryTask(f"{self.method} {self.url}: {type(exc).__name__}: {exc}") from exc
        judge(reply)

    def _headers(self, task: Task) -> dict[str, str]:
        return {
            "Content-Type": "application/json"
            if task.payload.lstrip()[:1] in "{["
            else "text/plain",
            **self.headers,
            "X-Atp-Task-Id": task.id,
            "X-Atp-Topic": task.topic,
            "X-Atp-Attempt": str(task.attempt),
            "Idempotency-Key": task.id,
        }

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()


def judge(reply: httpx.Response) -> None:
    """Map the response to the task's outcome."""
    if 200 <= reply.status_code < 300:
        return
    summary = f"HTTP {reply.status_code}: {reply.text[:MAX_BODY_IN_ERROR]}"
    if reply.status_code == 429 or reply.status_code >= 500:
        raise RetryTask(summary, after_ms=retry_after_ms(reply.headers.get("Retry-After")))
    raise DeadLetterTask(summary)


def retry_after_ms(value: str | None) -> int:
    """Retry-After as delay-seconds or an HTTP date; 0 (use the backoff) when absent or bad."""
    if not value:
        return 0
    if value.strip().isdigit():
        return int(value.strip()) * 1000
    parsed = email.utils.parsedate_to_datetime(value) if "," in value else None
    if parsed is None:
        return 0
    return max(int((parsed.timestamp() - time.time()) * 1000), 0)
