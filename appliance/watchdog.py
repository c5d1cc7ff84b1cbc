"""The watchdog role: returns expired leases to PENDING (or DEAD) right after their deadline.

It sleeps until the earliest lease deadline of all topics, and is woken earlier by the lease
channel when a new lease ends sooner; several watchdogs at once are safe (each expired lease
moves once, atomically). Reaches Redis only through the store.
"""

from __future__ import annotations

import asyncio
import logging

from appliance import metrics
from appliance.config import Settings
from appliance.store import Store
from appliance.store.wakeups import Wakeups, wait_any

log = logging.getLogger(__name__)
IDLE_RECHECK_S = 5.0  # also how soon a brand-new topic is noticed without a lease message
ERROR_PAUSE_S = 0.5


class Watchdog:
    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.wakeups = Wakeups(store.redis, store.keys.lease_channel)
        self._stop = asyncio.Event()
        self.recovered = 0
        self.dead_lettered = 0

    async def run(self) -> None:
        async with self.wakeups.listening() as woken:
            while not self._stop.is_set():
                woken.clear()
                await wait_any(await self.tick(), woken, self._stop)

    async def tick(self) -> float:
        """Recover every expired lease once; return seconds until the next deadline."""
        try:
            topics = await self.store.topics()
            results = await self.store.recover_all(topics, self.settings.watchdog_batch)
        except Exception as exc:
            log.warning("watchdog pass failed: %s", exc)
            return ERROR_PAUSE_S
        pause = IDLE_RECHECK_S
        for topic, r in results.items():
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
                pause = 0.0  # more are waiting
            elif r.next_deadline_in_ms >= 0:
                pause = min(pause, r.next_deadline_in_ms / 1000)
        return pause

    def stop(self) -> None:
        self._stop.set()
