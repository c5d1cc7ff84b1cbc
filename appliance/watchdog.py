"""The watchdog role: returns expired leases to PENDING (or DEAD) right after their deadline,
and forgets topics that stayed empty for the retention time.

It keeps the next lease deadline of each topic that has leases, and sleeps until the earliest;
the lease channel wakes it earlier and names the topic whose new lease ends sooner. Every
FULL_PASS_S (and after the subscription was lost) it reads every topic's counts in chunks,
recovers the topics with running tasks and hands the empty ones to topic_forget.lua: an idle
appliance with 20k topics costs one cheap pass a minute, not a script call per topic every few
seconds. Several watchdogs at once are safe (each expired lease moves once, atomically).
Reaches Redis only through the store.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from appliance import metrics
from appliance.config import Settings
from appliance.store import Store
from appliance.store.store import KNOWN_FOR_S, Recovery
from appliance.store.wakeups import Wakeups, wait_any
from appliance.waits import wait_event

log = logging.getLogger(__name__)
FULL_PASS_S = 60.0  # every topic read; also how soon a lease whose message was lost is seen
CHUNK = 1000  # topics per round trip
ERROR_PAUSE_S = 0.5
SUBSCRIBE_WAIT_S = 2.0
assert FULL_PASS_S > KNOWN_FOR_S  # a forgotten topic is checked again after servers' caches


class LeaseWakeups(Wakeups):
    """Wake-ups that also remember which topics the messages named (and when one may have been
    missed: the subscription was lost)."""

    def __init__(self, store: Store) -> None:
        super().__init__(store.redis, store.keys.lease_channel)
        self.named: set[str] = set()
        self.lost = True  # nothing heard yet: start with a full pass

    def wake(self, topic: str | None = None) -> None:
        if topic is None:
            self.lost = True
        else:
            self.named.add(topic)
        super().wake(topic)


class Watchdog:
    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        metrics.limit_topic_labels(settings.metrics_max_topics)
        self.wakeups = LeaseWakeups(store)
        self._stop = asyncio.Event()
        self.recovered = 0
        self.dead_lettered = 0
        self.full_passes = 0
        self.deadlines: dict[str, float] = {}  # topic -> loop time of its next lease deadline
        self._next_full = 0.0
        self._forgotten: list[str] = []  # at the last full pass: checked again at the next

    async def run(self) -> None:
        async with self.wakeups.listening() as woken:
            # first pass once subscribed: not twice
            await wait_event(self.wakeups.subscribed, SUBSCRIBE_WAIT_S)
            while not self._stop.is_set():
                woken.clear()
                await wait_any(await self.run_once(), woken, self._stop)

    async def run_once(self) -> float:
        """Recover every expired lease once; return seconds until there is more to do."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        full = self.wakeups.lost or now >= self._next_full
        named, self.wakeups.named = self.wakeups.named, set()
        try:
            if full:
                self.wakeups.lost = False
                results = await self._full_pass()
                self._next_full = now + FULL_PASS_S
            else:
                due = {t for t, at in self.deadlines.items() if at <= now} | named
                results = await self._recover(sorted(due))
        except Exception as exc:
            log.warning("watchdog pass failed: %s", exc)
            self.wakeups.named |= named
            self.wakeups.lost = self.wakeups.lost or full
            return ERROR_PAUSE_S
        for topic, r in results.items():
            self._settle(topic, r, now)
        return max(min([self._next_full, *self.deadlines.values()]) - loop.time(), 0.0)

    async def _full_pass(self) -> dict[str, Recovery]:
        topics = await self.store.topics()
        counts: dict[str, tuple[int, int]] = {}
        for start in range(0, len(topics), CHUNK):
            counts.update(await self.store.occupancy(topics[start : start + CHUNK]))
        results = await self._recover([t for t, (running, _) in counts.items() if running])
        for topic in set(self.deadlines) - set(results):
            del self.deadlines[topic]  # nothing running there any more
        await self._forget(counts)
        self.full_passes += 1
        return results

    async def _recover(self, topics: Sequence[str]) -> dict[str, Recovery]:
        results: dict[str, Recovery] = {}
        for start in range(0, len(topics), CHUNK):
            chunk = topics[start : start + CHUNK]
            results.update(await self.store.recover_all(chunk, self.settings.watchdog_batch))
        return results

    async def _forget(self, counts: dict[str, tuple[int, int]]) -> None:
        """Forget the topics empty for the retention time; know again those forgotten last time
        that got tasks since (an Enqueue from a server that still thought them known)."""
        if self._forgotten:
            again = await self.store.occupancy(self._forgotten)
            await self.store.remember_topics([t for t, (r, other) in again.items() if r or other])
        empty = {t for t, c in counts.items() if c == (0, 0)}
        names = sorted(empty | await self.store.marked_empty())  # the rest has nothing to do
        forgotten: list[str] = []
        for start in range(0, len(names), CHUNK):
            found = {t: t in empty for t in names[start : start + CHUNK]}
            forgotten += await self.store.forget_topics(found)
        if forgotten:
            log.info("forgot %d topics empty for retention_ms", len(forgotten))
        self._forgotten = forgotten

    def _settle(self, topic: str, r: Recovery, now: float) -> None:
        if r.retried or r.dead:
            log.info(
                "recovered %d expired leases of %s (%d dead-lettered)",
                r.retried + r.dead,
                topic,
                r.dead,
                extra={"topic": topic},
            )
            self.recovered += r.retried
            self.dead_lettered += r.dead
            metrics.LEASES_EXPIRED.labels(topic).inc(r.retried + r.dead)
            if r.dead:
                metrics.DEAD_LETTERED.labels(topic).inc(r.dead)
        if r.retried + r.dead >= self.settings.watchdog_batch:
            self.deadlines[topic] = now  # more are waiting
        elif r.next_deadline_in_ms >= 0:
            self.deadlines[topic] = now + r.next_deadline_in_ms / 1000
        else:
            self.deadlines.pop(topic, None)

    def stop(self) -> None:
        self._stop.set()
