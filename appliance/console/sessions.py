"""The console's sessions: a random id in an HttpOnly, SameSite=Strict cookie; the token the
viewer signed in with and the session's CSRF token stay here, in this process (never in a URL
nor in the cookie). Stdlib only.
"""

from __future__ import annotations

import dataclasses
import hmac
import secrets
import threading
import time

COOKIE = "atp_console"
IDLE_S = 8 * 3600  # a session unused this long is forgotten
MAX_SESSIONS = 10_000


@dataclasses.dataclass
class Session:
    sid: str
    csrf: str
    token: str | None = None  # None: not signed in (or the console is open on loopback)
    last_seen: float = dataclasses.field(default_factory=time.monotonic)
    flash: str = ""  # one message shown on the next page (the result of an action)

    def csrf_ok(self, sent: str) -> bool:
        return bool(sent) and hmac.compare_digest(sent.encode(), self.csrf.encode())

    def take_flash(self) -> str:
        text, self.flash = self.flash, ""
        return text


class Sessions:
    def __init__(self) -> None:
        self._by_id: dict[str, Session] = {}
        self._lock = threading.Lock()

    def get(self, sid: str | None) -> Session | None:
        now = time.monotonic()
        with self._lock:
            found = self._by_id.get(sid or "")
            if found is None or now - found.last_seen > IDLE_S:
                return None
            found.last_seen = now
            return found

    def new(self, token: str | None = None) -> Session:
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), token)
        with self._lock:
            if len(self._by_id) >= MAX_SESSIONS:
                self._forget_oldest()
            self._by_id[session.sid] = session
        return session

    def drop(self, sid: str) -> None:
        with self._lock:
            self._by_id.pop(sid, None)

    def _forget_oldest(self) -> None:
        by_age = sorted(self._by_id.values(), key=lambda s: s.last_seen)
        for old in by_age[: len(by_age) // 2]:
            del self._by_id[old.sid]


def cookie_header(session: Session | None) -> str:
    """Set-Cookie for the session (None: clear it); Path /console: health routes never see it."""
    if session is None:
        return f"{COOKIE}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0"
    return f"{COOKIE}={session.sid}; Path=/console; HttpOnly; SameSite=Strict"
