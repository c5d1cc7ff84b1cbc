"""Configuration: one frozen Settings object built once from YAML file < ATP_* env < flags.

The entrypoint builds it and passes it down; nothing else reads os.environ. A bad key or
value fails at start with its name (ConfigError). Stdlib + PyYAML only.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from appliance import times
from appliance.errors import ConfigError

MiB = 1024 * 1024
ROLES = ("server", "scheduler", "watchdog", "worker", "console")  # the processes atp runs (--role)
GRPC_DEFAULT_RECEIVE_BYTES = 4 * MiB  # what gRPC clients accept unless told otherwise
TASK_FIELDS_MAX_BYTES = 64 * 1024  # a leased Task's encoding besides its payload, at most


@dataclasses.dataclass(frozen=True)
class Settings:
    # Addresses
    grpc_addr: str = "127.0.0.1:9090"
    server_addr: str = ""  # where workers and the CLI reach the API; empty: derived from grpc_addr
    http_addr: str = "127.0.0.1:9100"
    console_addr: str = ""  # the console role's HTTP address; empty: <data_dir>/console.sock
    # empty: the embedded redis-server (role all) or redis://127.0.0.1:6379/0; a Redis Cluster:
    # redis+cluster://[user:password@]host:port[,host:port...] (see redis_cluster_nodes)
    redis_url: str = ""
    key_prefix: str = "atp"
    data_dir: str = "./atp-data"
    # Limits
    payload_max_bytes: int = MiB
    batch_max: int = 1000
    max_wait_ms: int = 60_000
    grpc_max_message_bytes: int = 16 * MiB
    grpc_reuse_port: bool = False  # several server processes on one port (SO_REUSEPORT)
    # Task defaults
    default_max_retries: int = 3
    visibility_timeout_ms: int = 30_000
    max_visibility_timeout_ms: int = 12 * 3_600_000
    retention_ms: int = 24 * 3_600_000
    backoff_base_ms: int = 1_000
    backoff_cap_ms: int = 3_600_000
    # Store internals
    claim_memo_ms: int = 60_000
    redis_timeout_ms: int = 2_000  # a Redis call not answered within it fails (never retried)
    redis_max_connections: int = 64
    durability: str = "local"  # local | replicated: a write is acknowledged once a replica has it
    durability_timeout_ms: int = 1_000  # replicated: how long a write waits for its replica
    # Processes (the supervisor, `atp --role=...`)
    log_level: str = "info"
    workers: int = 0  # worker processes; 0 = number of CPUs
    worker_concurrency: int = 16  # tasks at once per worker process (topics may cap lower)
    servers: int = 1  # server processes sharing grpc_addr (SO_REUSEPORT when > 1)
    drain_timeout_ms: int = 30_000
    redis_server_path: str = "redis-server"  # for the embedded Redis
    redis_fsync: str = "everysec"  # the embedded Redis's appendfsync: always | everysec
    watchdog_batch: int = 1000
    # Scheduler (cron): leader lease, enqueue-ahead, misfire threshold
    leader_ttl_ms: int = 5_000  # scheduler leader lease; a dead leader is replaced within it
    scheduler_lookahead_ms: int = 1_000  # ticks are enqueued this early, due at the tick
    scheduler_misfire_grace_ms: int = 0  # later ticks are misfires; 0: twice leader_ttl_ms
    # Security (docs/SECURITY.md)
    insecure: bool = False  # no tokens required even on a non-loopback address (warns)
    tokens: list[Any] = dataclasses.field(default_factory=list)  # [{name, hash, role, topics}]
    token: str = ""  # the bearer token this process presents as a client (CLI, workers)
    tls_cert_file: str = ""  # server certificate (PEM); with tls_key_file turns TLS on
    tls_key_file: str = ""
    tls_client_ca_file: str = ""  # server side: require client certificates from this CA (mTLS)
    tls_ca_file: str = ""  # client side: CA that signed the server's certificate
    tls_client_cert_file: str = ""  # client side, for mTLS
    tls_client_key_file: str = ""
    rate_limit_per_s: int = 0  # per token (or peer) and server process; 0 = off
    rate_limit_burst: int = 100
    unauthenticated_rate_per_s: int = 5  # calls refused for want of a token, per peer host
    unauthenticated_burst: int = 20
    max_long_polls: int = 1000  # waiting Retrieve calls per server process, fair per token
    max_topics: int = 10_000  # known topics; Enqueue to a new one beyond: RESOURCE_EXHAUSTED
    max_topics_per_token: int = 1_000  # per producer token (admin, or no tokens: max_topics only)
    max_work_streams: int = 1000  # open Work streams per server process, shared fairly by token
    metrics_max_topics: int = 100  # topics with labels of their own in /metrics (rest: _other)
    # Structured sections (YAML, or JSON in ATP_TOPICS / ATP_SCHEDULES); each owner validates its
    # own section at start (worker executors: appliance/worker; schedules: appliance/scheduler;
    # workflows: appliance/workflows, put by every server at start).
    topics: dict[str, Any] = dataclasses.field(default_factory=dict)
    schedules: list[Any] = dataclasses.field(default_factory=list)
    workflows: list[Any] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        _check_positive(
            self,
            "payload_max_bytes",
            "batch_max",
            "visibility_timeout_ms",
            "max_visibility_timeout_ms",
            "backoff_base_ms",
            "backoff_cap_ms",
            "claim_memo_ms",
            "redis_timeout_ms",
            "redis_max_connections",
            "grpc_max_message_bytes",
            "durability_timeout_ms",
        )
        _check_non_negative(self, "max_wait_ms", "default_max_retries", "retention_ms", "workers")
        _check_positive(
            self,
            "servers",
            "drain_timeout_ms",
            "watchdog_batch",
            "worker_concurrency",
            "rate_limit_burst",
            "unauthenticated_burst",
            "max_long_polls",
            "metrics_max_topics",
            "max_work_streams",
            "max_topics",
            "max_topics_per_token",
        )
        _check_non_negative(self, "rate_limit_per_s", "unauthenticated_rate_per_s")
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ConfigError("tls_cert_file, tls_key_file: set both or neither")
        if self.tls_client_ca_file and not self.tls_cert_file:
            raise ConfigError("tls_client_ca_file: mutual TLS needs tls_cert_file and tls_key_file")
        if bool(self.tls_client_cert_file) != bool(self.tls_client_key_file):
            raise ConfigError("tls_client_cert_file, tls_client_key_file: set both or neither")
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,32}", self.key_prefix):
            raise ConfigError(f"key_prefix: {self.key_prefix!r} must be 1-32 of [A-Za-z0-9_.-]")
        if self.log_level.lower() not in {"debug", "info", "warning", "error"}:
            raise ConfigError(f"log_level: {self.log_level!r} is not debug|info|warning|error")
        _check_non_negative(self, "scheduler_lookahead_ms", "scheduler_misfire_grace_ms")
        check_redis_url(self.redis_url)
        if self.redis_fsync not in {"always", "everysec"}:
            raise ConfigError(f"redis_fsync: {self.redis_fsync!r} is not always|everysec")
        if self.durability not in {"local", "replicated"}:
            raise ConfigError(f"durability: {self.durability!r} is not local|replicated")
        if self.durability == "replicated" and self.durability_timeout_ms >= self.redis_timeout_ms:
            raise ConfigError(
                f"durability_timeout_ms: must be below redis_timeout_ms ({self.redis_timeout_ms}),"
                f" got {self.durability_timeout_ms!r}"
            )
        if self.leader_ttl_ms < 300:
            raise ConfigError(f"leader_ttl_ms: must be >= 300, got {self.leader_ttl_ms!r}")
        if self.visibility_timeout_ms > self.max_visibility_timeout_ms:
            raise ConfigError("visibility_timeout_ms: larger than max_visibility_timeout_ms")
        if self.payload_max_bytes + TASK_FIELDS_MAX_BYTES > self.grpc_max_message_bytes:
            raise ConfigError(
                "payload_max_bytes: a task of that size would not fit in one gRPC message "
                f"(grpc_max_message_bytes {self.grpc_max_message_bytes} - 64 KiB)"
            )

    @property
    def reply_bytes_default(self) -> int:
        """The byte budget of a reply whose receiver named no limit: gRPC's default receive
        limit (4 MiB), or one task of the largest payload if that is more."""
        return max(GRPC_DEFAULT_RECEIVE_BYTES, self.payload_max_bytes + TASK_FIELDS_MAX_BYTES)

    @property
    def api_target(self) -> str:
        """The address a local client dials: server_addr, else grpc_addr with a wildcard host
        replaced by loopback."""
        if self.server_addr:
            return self.server_addr
        host, _, port = self.grpc_addr.rpartition(":")
        return f"127.0.0.1:{port}" if host in {"", "0.0.0.0", "[::]", "::"} else self.grpc_addr

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


REDIS_SCHEMES = ("redis", "rediss", "unix")
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")


@dataclasses.dataclass(frozen=True)
class ClusterURL:
    """A `redis+cluster://[user:password@]host:port[,host:port...][/0]` URL: the seed nodes
    the cluster client asks for the slot map (any one answering is enough; docs/adr/0012)."""

    nodes: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = None
    tls: bool = False  # rediss+cluster://


def redis_cluster_nodes(url: str) -> ClusterURL | None:
    """The cluster a `redis+cluster://` URL names; None for a single-Redis URL. ConfigError
    naming redis_url for a malformed one (no node, a node without a port, a database other
    than 0: a cluster has only database 0)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in CLUSTER_SCHEMES:
        return None
    auth, at, hosts = rest.rpartition("@")
    hosts, _, path = hosts.partition("/")
    if path.strip("/") not in ("", "0"):
        raise ConfigError(f"redis_url: {url!r}: a Redis Cluster has only database 0")
    nodes: list[tuple[str, int]] = []
    for node in hosts.split(","):
        host, colon, port = node.strip().rpartition(":")
        if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(
                f"redis_url: {url!r}: each cluster node must be host:port, got {node!r}"
            )
        nodes.append((host.strip("[]"), int(port)))
    user, _, password = auth.partition(":") if at else ("", "", "")
    return ClusterURL(
        tuple(nodes),
        unquote(user) or None,
        unquote(password) or None,
        tls=scheme == "rediss+cluster",
    )


def check_redis_url(url: str) -> None:
    """ConfigError naming redis_url unless it is empty, a redis://, rediss:// or unix:// URL,
    or a well-formed cluster URL."""
    if not url or redis_cluster_nodes(url) is not None:
        return
    scheme = url.partition("://")[0] if "://" in url else ""
    if scheme not in REDIS_SCHEMES:
        known = ", ".join(f"{s}://" for s in (*REDIS_SCHEMES, *CLUSTER_SCHEMES))
        raise ConfigError(f"redis_url: {url!r} is not a Redis URL (one of {known})")


def _check_positive(settings: Settings, *names: str) -> None:
    for name in names:
        if getattr(settings, name) <= 0:
            raise ConfigError(f"{name}: must be > 0, got {getattr(settings, name)!r}")


def _check_non_negative(settings: Settings, *names: str) -> None:
    for name in names:
        if getattr(settings, name) < 0:
            raise ConfigError(f"{name}: must be >= 0, got {getattr(settings, name)!r}")


FIELDS = {f.name: f for f in dataclasses.fields(Settings)}

HELP = {
    "grpc_addr": "Address the gRPC API listens on, host:port.",
    "server_addr": "Address workers and the CLI dial for the API; empty: grpc_addr, with a "
    "wildcard host replaced by 127.0.0.1.",
    "http_addr": "Address of the supervisor's /healthz, /readyz and /metrics, host:port; "
    "it also serves the console at /console/ (proxied to console_addr).",
    "console_addr": "Address the console role listens on, host:port; empty: the unix socket "
    "<data_dir>/console.sock. The supervisor proxies http_addr/console/ to it.",
    "redis_url": "Redis to use, e.g. redis://127.0.0.1:6379/0, or a Redis Cluster as "
    "redis+cluster://host:port,host:port (rediss+cluster:// for TLS); empty: --role=all starts "
    "an embedded redis-server, other roles use redis://127.0.0.1:6379/0.",
    "key_prefix": "Prefix of every Redis key, so several appliances can share one Redis.",
    "data_dir": "Directory of the embedded Redis's data (AOF) and of generated state such as "
    "the admin token.",
    "payload_max_bytes": "Largest payload accepted, in bytes; larger ones get RESOURCE_EXHAUSTED.",
    "batch_max": "Most requests in one EnqueueBatch or AckBatch, and most tasks per Retrieve.",
    "max_wait_ms": "Longest long-poll a Retrieve may ask for; longer waits are cut to this.",
    "grpc_max_message_bytes": "Largest gRPC message, in bytes (a whole batch must fit).",
    "grpc_reuse_port": "Let several server processes listen on one port (SO_REUSEPORT); set for "
    "you when --servers > 1.",
    "default_max_retries": "Retries of a task whose request leaves max_retries unset.",
    "visibility_timeout_ms": "Lease length when a Retrieve leaves it 0.",
    "max_visibility_timeout_ms": "Longest lease a Retrieve or ExtendLease may ask for.",
    "retention_ms": "How long finished task records and client-given ids are kept.",
    "backoff_base_ms": "First retry delay; attempt n waits min(cap, base * 2^(n-1)), jittered.",
    "backoff_cap_ms": "Longest retry delay.",
    "claim_memo_ms": "How long a Retrieve's result is remembered so a retried call gets it again.",
    "redis_timeout_ms": "Socket timeout of each Redis call.",
    "redis_max_connections": "Redis connections per process, at most.",
    "durability": "When a state change is acknowledged: local (once the Redis master ran it) or "
    "replicated (once one replica also has it, WAIT 1; docs/adr/0013-durability.md).",
    "durability_timeout_ms": "With durability replicated: how long a write waits for a replica "
    "before the call fails UNAVAILABLE (the write may or may not survive; retry it).",
    "log_level": "Log level: debug, info, warning or error.",
    "workers": "Worker processes for --role=all or worker; 0: one per CPU.",
    "worker_concurrency": "Tasks one worker process runs at once (a topic may cap it lower).",
    "servers": "Server processes sharing grpc_addr.",
    "drain_timeout_ms": "On SIGTERM, how long running tasks may finish before they are killed.",
    "redis_server_path": "The redis-server program the embedded Redis runs.",
    "redis_fsync": "When the embedded Redis fsyncs its AOF: always (every write) or everysec "
    "(an OS crash may lose the last second).",
    "watchdog_batch": "Expired leases the watchdog recovers per topic in one pass.",
    "leader_ttl_ms": "Scheduler leader lease; a dead leader is replaced within it.",
    "scheduler_lookahead_ms": "How early schedule ticks are enqueued (each due at its tick).",
    "scheduler_misfire_grace_ms": "Ticks later than this are misfires; 0: twice leader_ttl_ms.",
    "insecure": "Require no tokens even on a non-loopback address (a warning at every start).",
    "tokens": "Access tokens as JSON: [{name, hash, role, topics}], hashes from `atp token new`.",
    "token": "Bearer token this process presents as a client (CLI, workers); also ATP_TOKEN.",
    "tls_cert_file": "Server TLS certificate (PEM); with tls_key_file it turns TLS on.",
    "tls_key_file": "Server TLS private key (PEM).",
    "tls_client_ca_file": "Server side: require client certificates signed by this CA (mTLS).",
    "tls_ca_file": "Client side: the CA that signed the server's certificate (PEM).",
    "tls_client_cert_file": "Client side: certificate presented for mTLS (PEM).",
    "tls_client_key_file": "Client side: private key of tls_client_cert_file (PEM).",
    "rate_limit_per_s": "Calls per second per token (per peer without tokens) and server "
    "process; 0: no limit.",
    "rate_limit_burst": "Calls a token may make at once above its rate before it is limited.",
    "unauthenticated_rate_per_s": "Calls per second a peer host may make that are refused for "
    "want of a token, before it is rate limited.",
    "unauthenticated_burst": "Refused calls a peer host may make at once above that rate.",
    "max_long_polls": "Retrieve calls that may wait at once in one server process, shared "
    "fairly between tokens.",
    "max_work_streams": "Work streams that may be open at once in one server process, shared "
    "fairly between tokens (a newcomer's stream ends the oldest of the token holding most).",
    "max_topics": "Topics the appliance knows at most; Enqueue to a new one beyond is refused "
    "(RESOURCE_EXHAUSTED). Empty topics are forgotten after retention_ms.",
    "max_topics_per_token": "Topics one producer token may make at most (admin tokens, and "
    "callers when no tokens are configured, count against max_topics only).",
    "metrics_max_topics": "Topics with metric labels of their own per process and in the queue "
    'depth of /metrics; the others count as topic "_other".',
    "topics": "What the built-in workers run per topic, as JSON (see config/atp.example.yaml).",
    "schedules": "Schedules fired by the scheduler, as a JSON list (see config/atp.example.yaml).",
    "workflows": "Workflows every server puts at start (a new version when the definition "
    "changed), as a JSON list (see config/atp.example.yaml).",
}
"""One sentence per setting, the help of its --flag (tests/unit/test_config.py: none missing)."""


def coerce(name: str, value: Any) -> Any:
    """Turn a file, env or flag value into the field's type, or raise ConfigError naming it."""
    field = FIELDS.get(name)
    if field is None:
        raise ConfigError(f"{name}: unknown setting (known: {', '.join(sorted(FIELDS))})")
    kind = field.type if isinstance(field.type, str) else field.type.__name__
    if kind == "int":
        return as_int(name, value)
    if kind == "bool":
        return _as_bool(name, value)
    if kind.startswith(("dict", "list")):
        return _as_structure(name, value, dict if kind.startswith("dict") else list)
    if not isinstance(value, str):
        raise ConfigError(f"{name}: expected a string, got {value!r}")
    return value


def as_int(name: str, value: Any) -> int:
    """A number; for a `*_ms` name a duration (appliance.times: a bare number is ms)."""
    if name.endswith("_ms"):
        try:
            return times.duration_ms(value, bare_ms=True)
        except times.BadValue as exc:
            raise ConfigError(f"{name}: {exc}") from None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    raise ConfigError(f"{name}: expected a number, got {value!r}")


def _as_structure(name: str, value: Any, kind: type) -> Any:
    """A mapping or list from YAML, or from JSON text (environment variables and flags)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{name}: not valid JSON: {exc}") from exc
    if not isinstance(value, kind):
        expected = "mapping" if kind is dict else "list"
        raise ConfigError(f"{name}: expected a {expected}, got {value!r}")
    return value


def _as_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in {
        "1",
        "true",
        "yes",
        "on",
        "0",
        "false",
        "no",
        "off",
    }:
        return value.lower() in {"1", "true", "yes", "on"}
    raise ConfigError(f"{name}: expected true or false, got {value!r}")


def read_file(path: str | Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: the top level must be a mapping")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


NOT_SETTINGS = frozenset(
    {"ATP_CONFIG", "ATP_TASK_ID", "ATP_TOPIC", "ATP_ATTEMPT", "ATP_SUPERVISOR_PID"}
)
"""ATP_ variables that are not settings: the config file's name, what the command executor
tells the programs it runs (which may call `atp` themselves), and the pid of the supervisor a
child watches (appliance/supervisor/lifeline.py)."""


def from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """ATP_<FIELD> variables; any other ATP_ name is an error (a typo must not pass silently)."""
    out: dict[str, Any] = {}
    for key, value in environ.items():
        if key.startswith("ATP_") and key not in NOT_SETTINGS:
            out[key[4:].lower()] = value
    return out


def load(
    config_file: str | None = None,
    environ: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> Settings:
    """File < environment < flags; None-valued flags mean 'not given'."""
    environ = os.environ if environ is None else environ
    config_file = config_file or environ.get("ATP_CONFIG") or None
    merged: dict[str, Any] = {}
    if config_file:
        merged.update(read_file(config_file))
    merged.update(from_env(environ))
    merged.update({k: v for k, v in (flags or {}).items() if v is not None})
    values = {name: coerce(name, value) for name, value in merged.items()}
    try:
        return Settings(**values)
    except TypeError as exc:  # pragma: no cover - coerce() already names unknown keys
        raise ConfigError(str(exc)) from exc
