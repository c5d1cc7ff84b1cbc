"""A cookie-keeping HTTP client for the console that does not follow redirects (the tests look
at each 303 and Set-Cookie themselves)."""

from __future__ import annotations

import http.cookiejar
import re
import urllib.error
import urllib.parse
import urllib.request
from email.message import Message


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


class Web:
    def __init__(self, base: str) -> None:
        self.base = base  # http://host:port/console
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect()
        )

    def call(
        self, path: str, form: dict[str, str] | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Message, str]:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        request = urllib.request.Request(self.base + path, data=data, headers=headers or {})
        try:
            with self.opener.open(request, timeout=15) as reply:
                return reply.status, reply.headers, reply.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers, exc.read().decode()

    def get(self, path: str, **headers: str) -> tuple[int, Message, str]:
        return self.call(path, None, headers)

    def post(self, path: str, form: dict[str, str], **headers: str) -> tuple[int, Message, str]:
        return self.call(path, form, headers)

    def csrf(self, path: str = "/") -> str:
        code, _, body = self.get(path)
        found = re.search(r'name="csrf" value="([^"]+)"', body)
        assert found, (code, body[:500])
        return found.group(1)

    def sign_in(self, token: str) -> tuple[int, Message, str]:
        return self.post("/login", {"csrf": self.csrf("/login"), "token": token})
