"""The Worker: the public face of the worker runtime — handlers by topic, run() and stop(),
signals. One run is a Session (appliance/worker/session.py: the Work stream, flow control,
settles, the drain) and handlers run by appliance/worker/execution.py (async on the event loop,
sync on handler threads).

Reaches the queue only through `appliance.client`, like any external worker; must not import
grpc, redis or the store.

Delivery notes: while the stream lives the server keeps the worker's leases alive, so a long
handler never loses its task to a second consumer while this worker is alive. A delivery is
started only while the lease deadline it came with (server clock, corrected for the offset to
this machine's clock) has not passed and the server answered a ping sent within the last
FRESH_S (appliance/client/work.py): a worker that was stopped (SIGSTOP) or cut off starts
nothing it held until a ping sent after it resumed is answered, because the server may have
released it to another worker meanwhile. On stop the worker says goodbye (the server pushes
nothing more), gives back what it has not started, lets running handlers finish for
`drain_timeout`, then releases the rest (the attempt not counted). A sync handler's thread
cannot be interrupted: it runs on, its result unrecorded.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable
from typing import TypeVar

from appliance import validation
from appliance.client import AsyncClient, Tls
from appliance.client.common import Duration, to_ms
from appliance.worker.execution import Handler, Route, is_async
from appliance.worker.session import Session, WorkerConfig

log = logging.getLogger(__name__)
H = TypeVar("H", bound=Handler)

PREFETCH_PER_SLOT = 4  # default prefetch: tasks per slot beyond the slots (Celery's multiplier)


class Worker:
    """Runs handlers for topics: `@worker.task("topic")`, then `worker.run()`."""

    def __init__(
        self,
        address: str,
        *,
        concurrency: int = 10,
        prefetch: int | None = None,
        visibility_timeout: Duration = 30.0,
        drain_timeout: Duration = 30.0,
        reconnect_backoff: tuple[float, float] = (0.1, 5.0),
        token: str | None = None,
        tls: Tls | None = None,
    ) -> None:
        """`concurrency`: handlers at once, all topics together; `prefetch`: tasks the server
        may push beyond the free slots, so the next ones are here when handlers finish and
        several travel per message (default: PREFETCH_PER_SLOT x `concurrency`, as Celery's
        prefetch multiplier; 0 for long tasks that other workers should pick up instead;
        topics with their own cap get none);
        `visibility_timeout`: the lease the server renews while the stream lives, and how long
        tasks stay leased if the server vanishes; durations in seconds or timedeltas;
        `token`/`tls`: as for AsyncClient."""
        self.address = address
        self.config = _config(
            concurrency, prefetch, visibility_timeout, drain_timeout, reconnect_backoff
        )
        self.token, self.tls = token, tls
        self.routes: dict[str, Route] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._session: Session | None = None
        self._stop_requested = False
        self._signals = 0

    def task(self, topic: str, *, concurrency: int | None = None) -> Callable[[H], H]:
        """Decorator: `handler` (sync or async, taking the Task) runs the tasks of `topic`."""

        def decorate(handler: H) -> H:
            self.register(topic, handler, concurrency)
            return handler

        return decorate

    def register(self, topic: str, handler: Handler, concurrency: int | None = None) -> None:
        """Route `topic` to `handler`, optionally at most `concurrency` of its tasks at once."""
        validation.topic(topic)
        if topic in self.routes:
            raise ValueError(f"topic {topic!r} has a handler already")
        if concurrency is not None and concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        if self._loop is not None:
            raise RuntimeError("register handlers before the worker runs")
        self.routes[topic] = Route(topic, handler, concurrency, is_async(handler))

    def run(self) -> None:
        """Block until stop() or SIGTERM/SIGINT (handled when called in the main thread)."""
        asyncio.run(self._run_with_signals())

    async def run_async(self) -> None:
        """Run in the current event loop until stop(); returns after the drain."""
        if not self.routes:
            raise RuntimeError("no handlers: register one with @worker.task(topic) first")
        if self._loop is not None:
            raise RuntimeError("this worker is running already")
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        if self._stop_requested:
            self._stop.set()
        try:
            async with AsyncClient(self.address, token=self.token, tls=self.tls) as client:
                await self._serve(client, self._stop)
        finally:
            self._loop = self._stop = self._session = None
            self._stop_requested, self._signals = False, 0

    def stop(self) -> None:
        """Stop fetching at once and drain; safe from any thread and from signal handlers."""
        self._stop_requested = True
        loop, event = self._loop, self._stop
        if loop is None or event is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            event.set()
        elif not loop.is_closed():
            loop.call_soon_threadsafe(event.set)

    async def _serve(self, client: AsyncClient, stop: asyncio.Event) -> None:
        session = self._session = Session(self.config, client, self.routes.values())
        connection = asyncio.create_task(session.connect(), name="atp-work")
        topics = ", ".join(self.routes)
        log.info("worker on %s: %s, concurrency %d", self.address, topics, self.config.concurrency)
        try:
            await stop.wait()
        finally:
            await session.drain(self.config.drain_timeout_s)
            connection.cancel()
            await asyncio.gather(connection, return_exceptions=True)
            session.close()
            log.info("worker stopped")

    async def _run_with_signals(self) -> None:
        loop = asyncio.get_running_loop()
        handled = threading.current_thread() is threading.main_thread()
        sigs = (signal.SIGTERM, signal.SIGINT) if handled else ()
        for sig in sigs:
            loop.add_signal_handler(sig, self._on_signal, sig)
        try:
            await self.run_async()
        finally:
            for sig in sigs:
                loop.remove_signal_handler(sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        self._signals += 1
        if self._signals == 1:
            drain = self.config.drain_timeout_s
            log.info("%s: stopping, in-flight tasks may take %.1f s", sig.name, drain)
            self.stop()
        elif self._session is not None:
            log.warning("%s again: releasing in-flight tasks now", sig.name)
            self._session.release_all()


def _seconds(value: Duration, field: str) -> float:
    return to_ms(value, field) / 1000


def _config(
    concurrency: int,
    prefetch: int | None,
    visibility_timeout: Duration,
    drain_timeout: Duration,
    backoff: tuple[float, float],
) -> WorkerConfig:
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    extra = PREFETCH_PER_SLOT * concurrency if prefetch is None else prefetch
    if extra < 0:
        raise ValueError(f"prefetch must be >= 0, got {prefetch}")
    lease = _seconds(visibility_timeout, "visibility_timeout")
    if lease <= 0:
        raise ValueError("visibility_timeout must be > 0")
    low, high = backoff
    if not 0 < low <= high:
        raise ValueError(
            f"reconnect_backoff must be (low, high) with 0 < low <= high, got {backoff}"
        )
    return WorkerConfig(
        concurrency, extra, lease, _seconds(drain_timeout, "drain_timeout"), (low, high)
    )
