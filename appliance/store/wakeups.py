"""Wake-ups: one pub/sub subscription per process to a channel whose messages start with a
topic, fanned out to the coroutines waiting on that topic (long-poll Retrieves on the wake
channel; the watchdog on the lease channel).

Scripts publish '<topic> <due ms>' when a topic's earliest due time moves earlier (enqueue,
nack, lease recovery, requeue), so a waiting Retrieve re-claims at once instead of polling.
Waiters also keep their own timer for the next due time (`sleep_until`, sub-ms precision),
never a blocking Redis command's timeout. If the subscription drops, every waiter is woken to
re-check.

On a Redis Cluster the topic channels (wake, lease, workflow) stay plain: PUBLISH reaches
every node, and one subscription anywhere hears every topic. The scheduler's channel, written
by scripts of one slot, is a shard channel there: SPUBLISH stays within that slot's shard, and
a `sharded` Wakeups SSUBSCRIBEs on the master serving it (docs/adr/0012).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable, Iterator

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError

from appliance.store.codec import text as codec_text
from appliance.store.scripts import Client
from appliance.waits import wait_event

log = logging.getLogger(__name__)
ANY = "*"  # watch() key for "any topic" (topics never contain '*')
# asyncio's epoll wait takes whole milliseconds, rounded up: a timer fires up to 1 ms late.
# sleep_until() therefore sets its timer this much early and yields for the rest.
EPOLL_SLACK_S = 0.0012
RESUBSCRIBE_FIRST_S = 0.25  # after losing the subscription; doubling while Redis stays away
RESUBSCRIBE_MAX_S = 30.0
RESUBSCRIBE_LOG_EVERY = 10  # a long outage logs its first loss, then every tenth try


class Wakeups:
    def __init__(self, redis: Client, channel: str, sharded: bool = False) -> None:
        """`sharded`: `channel` is a shard channel of a Redis Cluster (SSUBSCRIBE on the master
        of its slot); else a plain channel (on a cluster too: PUBLISH reaches every node)."""
        self._redis = redis
        self._channel = channel
        self._sharded = sharded
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._stop = asyncio.Event()
        self.subscribed = asyncio.Event()

    def watch(self, topic: str = ANY) -> contextlib.AbstractContextManager[asyncio.Event]:
        """An event set whenever a message names `topic` (or any topic, by default)."""
        return self.watch_many([topic], asyncio.Event())

    @contextlib.contextmanager
    def watch_many(self, topics: Iterable[str], event: asyncio.Event) -> Iterator[asyncio.Event]:
        """`event`, also set whenever a message names one of `topics` (a worker stream's)."""
        names = list(topics)
        for topic in names:
            self._waiters.setdefault(topic, set()).add(event)
        try:
            yield event
        finally:
            for topic in names:
                waiters = self._waiters.get(topic)
                if waiters is not None:
                    waiters.discard(event)
                    if not waiters:
                        del self._waiters[topic]

    def wake(self, topic: str | None = None) -> None:
        """Wake the waiters of one topic, or all of them."""
        if topic is None:
            groups = list(self._waiters.values())
        else:
            groups = [self._waiters.get(topic, set()), self._waiters.get(ANY, set())]
        for group in groups:
            for event in group:
                event.set()

    async def run(self) -> None:
        """Listen until stop(); resubscribe after errors, waking all who may have missed one."""
        failures = 0  # in a row, without a subscription in between
        while not self._stop.is_set():
            try:
                await self._listen()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures = 1 if self.subscribed.is_set() else failures + 1
                if failures == 1 or failures % RESUBSCRIBE_LOG_EVERY == 0:
                    log.warning(
                        "wake-up subscription to %s lost (%s, %d tries); retrying, pausing up "
                        "to %.0f s",
                        self._channel,
                        exc,
                        failures,
                        RESUBSCRIBE_MAX_S,
                    )
            self.subscribed.clear()
            self.wake()
            pause = min(RESUBSCRIBE_FIRST_S * 2 ** max(failures - 1, 0), RESUBSCRIBE_MAX_S)
            await wait_event(self._stop, pause)

    async def _listen(self) -> None:
        if self._sharded and isinstance(self._redis, RedisCluster):
            await self._listen_shard(self._redis)
            return
        pubsub = self._redis.pubsub()
        try:
            await pubsub.subscribe(self._channel)
            await self._pump(pubsub, "message")
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _listen_shard(self, cluster: RedisCluster) -> None:
        """SSUBSCRIBE to the shard channel on the master serving its slot now. Its connection
        lost (a failover), or a SUNSUBSCRIBE from the server (the slot moved), ends this and
        run() subscribes again wherever the cluster client's slot map says then."""
        await cluster.initialize()  # a no-op once done; redis-py refreshes the map itself
        node = cluster.nodes_manager.get_node_from_slot(cluster.keyslot(self._channel))
        pool = aioredis.ConnectionPool(
            connection_class=node.connection_class, **node.connection_kwargs
        )
        pubsub = aioredis.Redis(connection_pool=pool).pubsub()
        try:
            await pubsub.ssubscribe(self._channel)
            await self._pump(pubsub, "smessage")
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
            await pool.disconnect()

    async def _pump(self, pubsub: aioredis.client.PubSub, kind: str) -> None:
        """Subscribed: wake everyone (a message may have been missed), then wake the waiters
        each message of `kind` names until stop(). An unsubscribe the client did not ask for
        (a shard channel's slot moved) ends it with an error."""
        self.subscribed.set()
        self.wake()
        while not self._stop.is_set():
            message = await pubsub.get_message(timeout=1.0)
            got = message.get("type") if message else None
            if got in ("unsubscribe", "sunsubscribe"):
                raise RedisConnectionError(f"{self._channel}: unsubscribed by the server")
            if message and got == kind:
                self.message(codec_text(message["data"]))

    def message(self, text: str) -> None:
        """One message ('<topic> <ms>'): wake the topic's waiters."""
        self.wake(text.partition(" ")[0])

    def stop(self) -> None:
        self._stop.set()

    @contextlib.asynccontextmanager
    async def listening(self) -> AsyncIterator[asyncio.Event]:
        """Subscribe for the duration of the block; yields an event set by every message (the
        loop shape the watchdog and the scheduler share)."""
        listener = asyncio.create_task(self.run())
        try:
            with self.watch() as woken:
                yield woken
        finally:
            self.stop()
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener


async def wait_any(seconds: float, *events: asyncio.Event) -> None:
    """Return when any of `events` is set, or after `seconds`."""
    waiters = [asyncio.create_task(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()


async def sleep_until(when: float, woken: asyncio.Event) -> None:
    """Return at loop time `when`, to about 0.1 ms, or as soon as `woken` is set. The last
    EPOLL_SLACK_S is spent yielding to the loop (other callbacks run), not blocking in epoll,
    whose millisecond rounding would make every due task up to 1 ms late."""
    loop = asyncio.get_running_loop()
    coarse = when - loop.time() - EPOLL_SLACK_S
    if coarse > 0:
        await wait_event(woken, coarse)
    while not woken.is_set() and loop.time() < when:  # noqa: ASYNC110 - sub-ms on purpose
        await asyncio.sleep(0)
