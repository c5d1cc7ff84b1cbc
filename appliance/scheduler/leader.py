"""Scheduler leadership: a Redis lease with a fencing token (lua/leader_*.lua), held by at most
one scheduler process at a time, renewed every TTL/3 and given up on a clean stop.

Two clocks guard it. Redis expires the lease TTL after the last renewal (its TIME); locally the
holder trusts its lease only until `sent + TTL - margin` on the monotonic clock, where `sent` is
when the acquire/renew request left. Redis received it later, so the local deadline always comes
first: a leader that cannot renew (Redis unreachable, event loop stalled, process SIGSTOPped)
stops acting before anyone can take over, and a process resumed after a long stop sees at once
that its lease is gone. Every fire is also fenced in Redis by the token (schedule_fire.lua).

Followers ask for the lease when it is due to run out (they learn how long it has left), so a
dead leader is replaced within one TTL of its last renewal. Every change of leader is logged.
Reaches Redis only through appliance.store.schedules; must not import redis or grpc.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable

from appliance import metrics
from appliance.store.results import Refusal
from appliance.store.schedules import LeaseReply, ScheduleStore
from appliance.waits import wait_event

log = logging.getLogger(__name__)
MIN_TTL_MS = 300


def holder_id() -> str:
    """Unique per process (and per start): host/pid/random."""
    return f"{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(3)}"


class Leader:
    """The lease loop: `run()` until `stop()`, one `run_once()` per acquire/renew attempt.
    `token()` is the fencing token while the lease is surely held, else None."""

    def __init__(
        self,
        schedules: ScheduleStore,
        ttl_ms: int,
        holder: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.schedules = schedules
        self.ttl_ms = max(ttl_ms, MIN_TTL_MS)
        self.holder = holder or holder_id()
        self.changed = asyncio.Event()  # set on every gain and loss of the lead
        self._clock = clock
        self._token: int | None = None
        self._valid_until = 0.0  # monotonic seconds
        self._timer: asyncio.TimerHandle | None = None
        self._seen: tuple[str, int] = ("", 0)
        self._stop = asyncio.Event()

    @property
    def renew_s(self) -> float:
        return self.ttl_ms / 3000

    @property
    def margin_ms(self) -> int:
        return max(self.ttl_ms // 10, 50)

    def token(self) -> int | None:
        """The fencing token, only while the local deadline has not passed."""
        if self._token is not None and self._clock() >= self._valid_until:
            self.step_down("the lease ran out before it could be renewed")
        return self._token

    def step_down(self, reason: str, level: int = logging.WARNING) -> None:
        if self._token is None:
            return
        log.log(level, "stepped down as scheduler leader (token %d): %s", self._token, reason)
        self._token = None
        metrics.SCHEDULER_LEADER.set(0)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.changed.set()

    async def run(self) -> None:
        try:
            while not self._stop.is_set():
                pause = await self.run_once()
                await wait_event(self._stop, pause)
        finally:
            await self.release()

    async def run_once(self) -> float:
        """One acquire or renew; returns seconds until the next one."""
        try:
            if self.token() is not None:
                return await self._renew()
            return await self._acquire()
        except Exception as exc:
            log.warning("scheduler lease: %s", exc or type(exc).__name__)
            return self.renew_s / 3

    def stop(self) -> None:
        self._stop.set()

    async def release(self) -> None:
        """Give the lease up now (a clean stop), so a follower takes over without waiting."""
        token = self._token
        if token is None:
            return
        self.step_down("stopping; lease released", logging.INFO)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self.renew_s):
                await self.schedules.release(token)

    async def _renew(self) -> float:
        assert self._token is not None
        sent = self._clock()
        left_s = self._valid_until - sent
        try:
            async with asyncio.timeout(left_s):
                expires = await self.schedules.renew(self._token, self.ttl_ms)
        except TimeoutError:
            log.warning("scheduler lease renewal timed out; retrying")
            return 0.0
        if isinstance(expires, Refusal):
            gone = expires is Refusal.LEASE_GONE
            self.step_down("the lease " + ("expired" if gone else "was taken over"))
            return 0.0
        self._hold(self._token, sent, self.ttl_ms)
        return self.renew_s

    async def _acquire(self) -> float:
        sent = self._clock()
        async with asyncio.timeout(self.ttl_ms / 1000):
            reply = await self.schedules.acquire(self.holder, self.ttl_ms)
        self._observe(reply)
        if reply.granted:
            self._hold(reply.token, sent, min(reply.left_ms, self.ttl_ms))
            log.info(
                "became the scheduler leader (token %d, lease %d ms)", reply.token, self.ttl_ms
            )
            metrics.SCHEDULER_LEADER.set(1)
            self.changed.set()
            return self.renew_s
        # Ask again right when the current lease runs out (or sooner, if it was released).
        return min(max(reply.left_ms, 0) + 5, self.ttl_ms // 3) / 1000

    def _hold(self, token: int, sent: float, lease_ms: int) -> None:
        """Trust the lease until `sent + lease - margin` (monotonic); arm a timer for then."""
        self._token = token
        self._valid_until = sent + (lease_ms - self.margin_ms) / 1000
        if self._timer is not None:
            self._timer.cancel()
        delay = max(self._valid_until - self._clock(), 0.0)
        self._timer = asyncio.get_running_loop().call_later(delay, self.token)

    def _observe(self, reply: LeaseReply) -> None:
        """Log each new leader a follower sees (the leader logs its own gain)."""
        seen = (reply.holder, reply.token)
        if seen != self._seen and reply.holder != self.holder and reply.holder:
            log.info("scheduler leader is %s (token %d)", reply.holder, reply.token)
        self._seen = seen
