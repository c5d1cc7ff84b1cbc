"""Builds and runs the gRPC server: the queue service, grpc.health.v1 (flipped from Redis's
real state) and server reflection, with graceful stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from appliance import metrics
from appliance.api.interceptors import Guard
from appliance.api.schedules import ScheduleServicer
from appliance.api.servicer import QueueServicer
from appliance.api.workflows import WorkflowServicer
from appliance.auth import RateLimiter, access_tokens
from appliance.certs import warn_expiring
from appliance.config import Settings
from appliance.errors import ConfigError
from appliance.proto import queue_pb2 as pb
from appliance.proto import queue_pb2_grpc as pb_grpc
from appliance.store import Store
from appliance.store.wakeups import Wakeups
from appliance.waits import wait_event
from appliance.watchdog import Watchdog
from appliance.workflows.advancer import Advancer

log = logging.getLogger(__name__)
SERVICE_NAMES: Sequence[str] = (
    pb.DESCRIPTOR.services_by_name["DelayQueueService"].full_name,
    pb.DESCRIPTOR.services_by_name["ScheduleService"].full_name,
    pb.DESCRIPTOR.services_by_name["WorkflowService"].full_name,
    health.SERVICE_NAME,
    reflection.SERVICE_NAME,
)
HEALTH_CHECK_S = 2.0
KEEPALIVE_MS = 5_000


class QueueServer:
    """The server, its background tasks (wake-ups, health) and their lifetimes."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        metrics.limit_topic_labels(settings.metrics_max_topics)
        self.wakeups = Wakeups(store.redis, store.keys.wake_channel)
        self.health = health.aio.HealthServicer()
        options = [
            ("grpc.max_receive_message_length", settings.grpc_max_message_bytes),
            ("grpc.max_send_message_length", settings.grpc_max_message_bytes),
            ("grpc.so_reuseport", 1 if settings.grpc_reuse_port else 0),
            ("grpc.keepalive_permit_without_calls", 1),
            # A worker stream whose peer froze or vanished behind a half-open link is found
            # dead within keepalive time + timeout, and its tasks are released.
            ("grpc.keepalive_time_ms", KEEPALIVE_MS),
            ("grpc.keepalive_timeout_ms", KEEPALIVE_MS),
            # The keepalive ping is an ordinary ping to grpc core 1.85: without this its ack is
            # awaited for the default minute, and a frozen peer is never found in 5 + 5 s.
            ("grpc.http2.ping_timeout_ms", KEEPALIVE_MS),
            ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ]
        tokens = access_tokens(settings, announce_to=sys.stderr)
        limiter = RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst)
        strangers = RateLimiter(settings.unauthenticated_rate_per_s, settings.unauthenticated_burst)
        guard = Guard(tokens, limiter, strangers)
        self.server = grpc.aio.server(options=options, interceptors=[guard])
        self.servicer = QueueServicer(store, self.wakeups, settings)
        # Expired leases come back even where no watchdog role runs (docs/adr/0009).
        self.recovery = Watchdog(store, settings)
        pb_grpc.add_DelayQueueServiceServicer_to_server(self.servicer, self.server)
        schedules = ScheduleServicer(store, settings)
        pb_grpc.add_ScheduleServiceServicer_to_server(schedules, self.server)
        # Workflow runs move on in every server, like lease recovery (docs/adr/0010).
        self.advancer = Advancer(store, settings)
        workflows = WorkflowServicer(store, settings, self.advancer)
        pb_grpc.add_WorkflowServiceServicer_to_server(workflows, self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(SERVICE_NAMES, self.server)
        self.port = _listen(self.server, settings)
        if self.port == 0:
            raise ConfigError(f"grpc_addr: cannot listen on {settings.grpc_addr}")
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        try:
            await self.store.scripts.load_all(self.store.redis)
        except Exception as exc:
            log.warning("redis not reachable at start (%s); serving, health NOT_SERVING", exc)
        await self._set_health(False)  # the stock servicer starts SERVING; Redis decides
        await self.server.start()
        serving = await self._check_health(False)
        self._tasks = [
            asyncio.create_task(self.wakeups.run()),
            asyncio.create_task(self._watch_health(serving)),
            asyncio.create_task(self.recovery.run()),
            asyncio.create_task(self.advancer.run()),
        ]
        await wait_event(self.wakeups.subscribed, 5)
        log.info("gRPC server listening on %s", self.address)

    @property
    def address(self) -> str:
        host = self.settings.grpc_addr.rsplit(":", 1)[0]
        return f"{host}:{self.port}"

    async def _set_health(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", *SERVICE_NAMES[:1]):
            result = self.health.set(name, status)
            if asyncio.iscoroutine(result):
                await result

    async def _check_health(self, serving: bool | None) -> bool:
        """Ping Redis once; flip (and log) the health status when it changed."""
        try:
            async with asyncio.timeout(HEALTH_CHECK_S):
                ok = bool(await self.store.redis.ping())
        except Exception:
            ok = False
        if ok != serving:
            await self._set_health(ok)
            log.log(
                logging.INFO if ok else logging.WARNING,
                "health: %s",
                "SERVING" if ok else "NOT_SERVING (redis unreachable)",
            )
        return ok

    async def _watch_health(self, serving: bool) -> None:
        while True:
            await asyncio.sleep(HEALTH_CHECK_S)
            serving = await self._check_health(serving)

    async def stop(self, grace_s: float = 5.0) -> None:
        """Refuse new calls, let running ones finish for `grace_s`, then stop background work.
        Worker streams end at once, their leases kept: the workers adopt them elsewhere."""
        await self._set_health(False)
        self.servicer.stopping.set()
        self.recovery.stop()
        self.advancer.stop()
        self.wakeups.stop()
        self.servicer.enqueue_stream.close()  # producers' streams end cleanly, then reconnect
        await self.server.stop(grace_s)
        await self.servicer.finish()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def _listen(server: grpc.aio.Server, settings: Settings) -> int:
    """Bind grpc_addr, with TLS when a certificate is configured (mTLS with a client CA)."""
    if not settings.tls_cert_file:
        return int(server.add_insecure_port(settings.grpc_addr))
    warn_expiring(settings)
    try:
        cert = Path(settings.tls_cert_file).read_bytes()
        key = Path(settings.tls_key_file).read_bytes()
        client_ca = (
            Path(settings.tls_client_ca_file).read_bytes() if settings.tls_client_ca_file else None
        )
    except OSError as exc:
        raise ConfigError(f"tls files: {exc}") from exc
    credentials = grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )
    return int(server.add_secure_port(settings.grpc_addr, credentials))


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    """Run a server until `stop` is set (the role's entrypoint)."""
    from appliance.store import connect

    store = Store(connect(settings), settings)
    server = QueueServer(settings, store)
    try:
        await server.start()
        await stop.wait()
    finally:
        await server.stop()
        await store.close()
