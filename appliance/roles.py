"""Each role's body in one process: server, watchdog, scheduler, worker, console.

`run_role` is what a supervised child (or `atp --role=<one role>`) runs: it builds what the
role needs from the settings, runs until SIGTERM/SIGINT, then drains. Imports of the store
and grpc happen here, inside the child, never in the supervisor.

Before its body a role says what it connects to and waits for it, quietly (a line per try, the
tries backing off to every 30 s): server, scheduler and watchdog for Redis, the built-in worker
for the API. A server whose gRPC address is taken stops at once with one line (exit 78).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from appliance import tracing
from appliance.config import Settings, redis_cluster_nodes
from appliance.errors import EXIT_CONFIG, ConfigError
from appliance.waits import wait_event

log = logging.getLogger(__name__)
RoleBody = Callable[[Settings, asyncio.Event], Awaitable[None]]
WORKER_DRAIN_SHARE = 0.8  # workers finish draining before the supervisor's deadline (SIGKILL)
STORE_ROLES = frozenset({"server", "scheduler", "watchdog"})  # they talk to Redis themselves
WAIT_CAP_S = 30.0  # the longest pause between two tries while waiting for Redis or the API
WAIT_QUIET_S = 10.0  # waiting longer than this is logged as a warning


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    from appliance.api.server import serve as serve_grpc
    from appliance.supervisor import ports

    reuse = settings.grpc_reuse_port or settings.servers > 1
    problem = ports.taken("grpc_addr", settings.grpc_addr, reuse)
    if problem:
        raise ConfigError(problem)
    await serve_grpc(settings, stop)


async def wait_for_redis(settings: Settings, stop: asyncio.Event) -> bool:
    """Say which Redis this role uses and why, then wait until it answers PING (False: stopped
    while waiting)."""
    from appliance.supervisor import embedded_redis, resp
    from appliance.supervisor.arbiter import DEFAULT_REDIS_URL, accepts, local_address

    url = settings.redis_url or DEFAULT_REDIS_URL
    why = (
        "from --redis-url / ATP_REDIS_URL"
        if settings.redis_url
        else "the default: no --redis-url or ATP_REDIS_URL given, and only --role=all starts"
        " a Redis of its own"
    )
    where = f"Redis at {resp.where(url)}"
    log.info("connecting to %s (%s)", where, why)

    def check() -> str | None:
        if url.startswith("rediss://"):  # TLS options live in the URL for redis-py: only dial
            return None if accepts(local_address(resp.where(url))) else "no connection yet"
        if url.startswith("rediss+cluster://"):  # the same, for any one seed node
            cluster = redis_cluster_nodes(url)
            nodes = cluster.nodes if cluster else ()
            return None if any(accepts(node) for node in nodes) else "no connection yet"
        return embedded_redis.ping(url)

    return await wait_until(check, where, stop, first_s=0.5)


async def wait_for_api(settings: Settings, stop: asyncio.Event) -> bool:
    """The built-in worker waits for the API to accept connections before it fetches."""
    from appliance.supervisor.arbiter import accepts, local_address

    target = settings.api_target
    why = "--server-addr" if settings.server_addr else "the server role's --grpc-addr"

    def check() -> str | None:
        return None if accepts(local_address(target)) else "not accepting connections yet"

    return await wait_until(check, f"the atp API at {target} ({why})", stop, first_s=0.25)


async def wait_until(
    check: Callable[[], str | None], what: str, stop: asyncio.Event, first_s: float
) -> bool:
    """Try `check` (None: ready) until it passes, pausing first_s, then twice as long each time
    (up to WAIT_CAP_S), one log line per failed try; False once `stop` is set."""
    began = time.monotonic()
    pause = first_s
    while True:
        problem = await asyncio.to_thread(check)
        waited = time.monotonic() - began
        if problem is None:
            if waited > 0.05:
                log.info("%s answers after %.1f s", what, waited)
            return True
        level = logging.WARNING if waited >= WAIT_QUIET_S else logging.INFO
        log.log(level, "waiting for %s: %s; next try in %.1f s", what, problem, pause)
        if await wait_event(stop, pause):
            return False
        pause = min(pause * 2, WAIT_CAP_S)


async def watch(settings: Settings, stop: asyncio.Event) -> None:
    from appliance.store import Store, connect
    from appliance.watchdog import Watchdog

    store = Store(connect(settings), settings)
    watchdog = Watchdog(store, settings)
    runner = asyncio.create_task(watchdog.run())
    try:
        await _until(stop, runner)
    finally:
        watchdog.stop()
        await runner
        await store.close()


async def _until(stop: asyncio.Event, runner: asyncio.Task[None]) -> None:
    """Wait for the stop signal, or for the runner to end by itself (then re-raise its error)."""
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait([stopper, runner], return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    if runner.done():
        runner.result()


async def work(settings: Settings, stop: asyncio.Event) -> None:
    """The built-in worker: the SDK's Worker running the executors configured per topic.
    Topics with their own visibility timeout get a Worker of their own in this process."""
    from appliance.auth import local_token
    from appliance.certs import CLIENT_CERTS, warn_expiring
    from appliance.client import Tls
    from appliance.executors import build_all
    from appliance.worker import Worker

    warn_expiring(settings, CLIENT_CERTS)
    executors = build_all(settings.topics)
    if not executors:
        log.warning(
            "no topics configured (`topics:` in the config): this worker has nothing to run"
        )
    elif not await wait_for_api(settings, stop):
        return
    groups: dict[int, list[Any]] = {}
    for ex in executors:
        groups.setdefault(ex.visibility_timeout_ms or settings.visibility_timeout_ms, []).append(ex)
    workers = []
    for lease_ms, members in groups.items():
        worker = Worker(
            settings.api_target,
            concurrency=settings.worker_concurrency,
            visibility_timeout=lease_ms / 1000,
            drain_timeout=settings.drain_timeout_ms * WORKER_DRAIN_SHARE / 1000,
            token=local_token(settings) or None,
            tls=Tls.from_settings(settings),
        )
        for ex in members:
            worker.register(ex.topic, ex.handler, ex.concurrency)
            log.info("worker runs topic %s with the %s executor", ex.topic, ex.kind)
        workers.append(worker)
    runners = [asyncio.create_task(w.run_async()) for w in workers]
    await stop.wait()
    for worker in workers:
        worker.stop()
    await asyncio.gather(*runners)


async def schedule(settings: Settings, stop: asyncio.Event) -> None:
    from appliance.scheduler.service import run

    await run(settings, stop)


async def console(settings: Settings, stop: asyncio.Event) -> None:
    """The web console (ADR 0011): HTTP in its own threads, the API through the SDK."""
    from appliance.console.server import ConsoleServer

    server = ConsoleServer(settings).start()
    try:
        await stop.wait()
    finally:
        await asyncio.to_thread(server.close)


BODIES: dict[str, RoleBody] = {
    "server": serve,
    "watchdog": watch,
    "worker": work,
    "scheduler": schedule,
    "console": console,
}


def run_role(role: str, settings: Settings) -> int:
    """Run one role in this process until SIGTERM/SIGINT; 0 after a clean drain. Under a
    supervisor, exit at once when it dies (lifeline: its death signal, and a parent-pid watch)."""
    from appliance.supervisor import lifeline

    lifeline.watch_parent()
    body = BODIES[role]

    async def main() -> int:
        tracing.configure_from_env()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        if role in STORE_ROLES and not await wait_for_redis(settings, stop):
            log.info("%s stopped while waiting for Redis", role)
            return 0
        await body(settings, stop)
        log.info("%s stopped", role)
        return 0

    try:
        code = asyncio.run(main())
    except ConfigError as exc:  # found while building the role (e.g. a topic's executor)
        log.error("bad config: %s", exc)
        return EXIT_CONFIG
    _abandon_stuck_threads(code)
    return code


def _abandon_stuck_threads(code: int) -> None:
    """A sync handler still running after the drain (its task already released) cannot be
    interrupted, and Python would wait for its thread at exit: leave without it."""
    stuck = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    if stuck:
        log.warning(
            "exiting with %d handler thread(s) still running (their tasks were released)",
            len(stuck),
        )
        logging.shutdown()
        os._exit(code)
