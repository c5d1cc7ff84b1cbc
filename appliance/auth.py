"""Who may call what: bearer tokens (stored as hashes) with a role and optional topics, the
method -> role table, the per-token rate limit, and the first-start admin token bootstrap.

Stdlib only (the supervisor uses the bootstrap too); the gRPC interceptor lives in
appliance/api/interceptors.py.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import secrets
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from appliance.errors import ConfigError, PermissionDenied

if TYPE_CHECKING:
    from appliance.config import Settings

log = logging.getLogger(__name__)

TOKEN_ROLES = (
    "producer",
    "worker",
    "viewer",
    "admin",
)  # what a token may do (processes: config.ROLES)
PRODUCER_METHODS = frozenset(
    {"Enqueue", "EnqueueBatch", "EnqueueStream", "GetTask", "GetTaskHistory", "Delete"}
)
WORKER_METHODS = frozenset({"Retrieve", "Ack", "AckBatch", "Nack", "ExtendLease", "Work"})
# Read-only (the console's viewers): figures, tasks, dead letters and schedules; no action.
VIEWER_METHODS = frozenset(
    {"GetStats", "GetTask", "ListDeadLetters", "GetSchedule", "ListSchedules", "GetSchedulerStatus"}
    | {"GetWorkflow", "ListWorkflows", "GetRun", "ListRuns"}
    | {"GetTaskHistory", "ListTasks", "ListWorkers"}
)
ROLE_METHODS = {"producer": PRODUCER_METHODS, "worker": WORKER_METHODS, "viewer": VIEWER_METHODS}
OPEN_SERVICES = frozenset({"grpc.health.v1.Health"})  # never needs a token
TOKEN_FILE = "admin.token"
STATE_FILE = "auth-state.json"
HASH_PREFIX = "sha256:"


def hash_token(token: str) -> str:
    """What the config holds instead of a token. Tokens are 256-bit random strings, so one
    SHA-256 is enough (no password stretching needed); compared in constant time."""
    return HASH_PREFIX + hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return "atp_" + secrets.token_urlsafe(32)


@dataclasses.dataclass(frozen=True)
class Principal:
    name: str
    role: str
    topics: frozenset[str] | None = None  # None: every topic

    def may_call(self, method: str) -> bool:
        if self.role == "admin":
            return True
        return method in ROLE_METHODS.get(self.role, frozenset())

    def check_topic(self, topic: str) -> None:
        if self.topics is not None and topic not in self.topics:
            raise PermissionDenied(f"token {self.name!r} may not use topic {topic!r}")


@dataclasses.dataclass(frozen=True)
class _Entry:
    digest: bytes
    principal: Principal


class TokenTable:
    """The configured tokens (by hash). Lookup compares against every entry in constant time."""

    def __init__(self, entries: Iterable[_Entry] = ()) -> None:
        self._entries = list(entries)

    def __bool__(self) -> bool:
        return bool(self._entries)

    def lookup(self, token: str) -> Principal | None:
        digest = bytes.fromhex(hash_token(token).removeprefix(HASH_PREFIX))
        found = None
        for entry in self._entries:
            if hmac.compare_digest(entry.digest, digest):
                found = entry.principal
        return found

    @classmethod
    def from_config(cls, raw: Iterable[Any]) -> TokenTable:
        return cls(_entry(i, item) for i, item in enumerate(raw))


def _entry(index: int, item: Any) -> _Entry:
    where = f"tokens[{index}]"
    if not isinstance(item, Mapping):
        raise ConfigError(f"{where}: expected a mapping with name, hash and role")
    unknown = set(item) - {"name", "hash", "role", "topics"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    digest = str(item.get("hash", ""))
    if not digest.startswith(HASH_PREFIX) or len(digest) != len(HASH_PREFIX) + 64:
        raise ConfigError(f"{where}.hash: expected 'sha256:<64 hex>' from `atp token hash`")
    try:
        raw = bytes.fromhex(digest.removeprefix(HASH_PREFIX))
    except ValueError as exc:
        raise ConfigError(f"{where}.hash: not hexadecimal") from exc
    role = item.get("role")
    if role not in TOKEN_ROLES:
        raise ConfigError(f"{where}.role: one of {', '.join(TOKEN_ROLES)}, got {role!r}")
    topics = item.get("topics")
    if topics is not None and (
        not isinstance(topics, list) or not all(isinstance(t, str) for t in topics)
    ):
        raise ConfigError(f"{where}.topics: expected a list of topic names")
    name = str(item.get("name") or f"token-{index}")
    return _Entry(raw, Principal(name, role, frozenset(topics) if topics is not None else None))


class RateLimiter:
    """Token buckets per caller, in this process: `rate` calls/s sustained, `burst` at once.
    (Per server process: with M servers a caller gets up to M x rate; documented.) At most
    `max_keys` callers are tracked: beyond, the buckets that have refilled are forgotten."""

    def __init__(self, rate: float, burst: int, max_keys: int = 10_000) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, key: str, now: float | None = None) -> bool:
        if self.rate <= 0:
            return True
        now = time.monotonic() if now is None else now
        if key not in self._buckets and len(self._buckets) >= self.max_keys:
            self._forget_full(now)
        level, last = self._buckets.get(key, (float(self.burst), now))
        level = min(float(self.burst), level + (now - last) * self.rate)
        if level < 1:
            self._buckets[key] = (level, now)
            return False
        self._buckets[key] = (level - 1, now)
        return True

    def _forget_full(self, now: float) -> None:
        full = [
            k
            for k, (level, last) in self._buckets.items()
            if level + (now - last) * self.rate >= self.burst
        ]
        for key in full or list(self._buckets)[: len(self._buckets) // 2]:
            del self._buckets[key]


def is_loopback(address: str) -> bool:
    host = address.rpartition(":")[0].strip("[]") or "0.0.0.0"
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name other than localhost: treat as reachable from outside


def needs_bootstrap(grpc_addr: str, configured: bool, insecure: bool) -> bool:
    """No tokens, not --insecure and reachable from outside: an admin token must exist."""
    return not configured and not insecure and not is_loopback(grpc_addr)


def bootstrap_admin(data_dir: str | Path) -> tuple[str | None, str]:
    """Create `<data_dir>/admin.token` (0600) and the state file holding only its hash, once.
    Returns (the new token, or None when it existed already, and the hash)."""
    directory = Path(data_dir)
    directory.mkdir(parents=True, exist_ok=True)
    state = directory / STATE_FILE
    if state.exists():
        return None, load_admin_hash(directory)
    token = new_token()
    try:
        fd = os.open(directory / TOKEN_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process is creating it right now
        for _ in range(50):
            if state.exists():
                return None, load_admin_hash(directory)
            time.sleep(0.1)
        raise ConfigError(
            f"data_dir: {directory / TOKEN_FILE} exists but {STATE_FILE} does not"
        ) from None
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    temp = state.with_suffix(".tmp")
    temp.write_text(json.dumps({"admin_token_hash": hash_token(token)}))
    temp.replace(state)
    return token, hash_token(token)


def load_admin_hash(data_dir: str | Path) -> str:
    state = Path(data_dir) / STATE_FILE
    try:
        return str(json.loads(state.read_text())["admin_token_hash"])
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"data_dir: cannot read {state}: {exc}") from exc


def announce(token: str, data_dir: str | Path, grpc_addr: str) -> str:
    """The one-time message telling the operator the new admin token and how to use it."""
    port = grpc_addr.rpartition(":")[2]
    return (
        f"atp: generated an admin token (stored in {Path(data_dir) / TOKEN_FILE}, mode 0600; "
        f"only its hash is kept in the state):\n\n    {token}\n\n"
        f"Use it as a bearer token:\n"
        f"  grpcurl -H 'authorization: Bearer {token}' -plaintext <host>:{port} list\n"
        f"  atp stats --token {token}   (or ATP_TOKEN in the environment)\n"
        f"  Client('<host>:{port}', token='{token}')\n"
        f"Configure tokens for producers and workers with `atp token new`; --insecure turns "
        f"authentication off (not recommended on a network address)."
    )


def access_tokens(settings: Settings, announce_to: TextIO | None = None) -> TokenTable:
    """The token table a server enforces: the configured tokens, plus the generated admin
    token when the server is reachable from outside with none configured (created on first
    start and announced once). Empty table: open (loopback, or --insecure, which warns)."""
    configured = list(settings.tokens)
    if settings.insecure and not is_loopback(settings.grpc_addr) and not configured:
        log.warning("--insecure: %s accepts every call without a token", settings.grpc_addr)
    if needs_bootstrap(settings.grpc_addr, bool(configured), settings.insecure):
        token, digest = bootstrap_admin(settings.data_dir)
        if token is not None and announce_to is not None:
            print(
                announce(token, settings.data_dir, settings.grpc_addr), file=announce_to, flush=True
            )
        configured.append({"name": "admin (generated)", "hash": digest, "role": "admin"})
    return TokenTable.from_config(configured)


def local_token(settings: Settings) -> str:
    """The token a local client (CLI, built-in worker) presents: configured, else the
    generated admin token of this data dir, if any."""
    if settings.token:
        return settings.token
    path = Path(settings.data_dir) / TOKEN_FILE
    try:
        return path.read_text().strip()
    except OSError:
        return ""
