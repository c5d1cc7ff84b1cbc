"""The scheduler role: reconciles the config's schedules, then, while it leads, fires every due
tick exactly once and sleeps until the next one (or until a schedule is written).

A tick is fired in two steps. schedule_fire.lua moves the schedule past the tick and parks the
tick's task in an outbox, fenced by the lease token (a deposed leader changes nothing); then the
task is enqueued with the id `sched:<schedule id>:<tick ms>` through Store.enqueue as a client id
(a second enqueue of that tick creates nothing) and removed from the outbox. A leader that dies
between the steps leaves the task in the outbox; the next leader enqueues it first thing.

Ticks are enqueued `scheduler_lookahead_ms` ahead with their due time set to the tick (+ jitter),
so they reach workers on time through the delay machinery, not this loop's wake-ups. A tick
late by at most `scheduler_misfire_grace_ms` (default: twice the lease TTL, so any failover) is
still fired; older ones are misfires, handled by the schedule's policy (plan()).
Reaches Redis only through the store; must not import redis or grpc.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import Sequence

from appliance import metrics
from appliance.config import Settings
from appliance.errors import AlreadyExists, NotFound
from appliance.model import NewTask
from appliance.scheduler.definitions import Definition, Misfire, Schedule, from_config, from_fields
from appliance.scheduler.leader import Leader
from appliance.scheduler.registry import Registry
from appliance.store import Store, connect
from appliance.store.results import Refusal
from appliance.store.schedules import ScheduleStore
from appliance.store.wakeups import Wakeups, wait_any
from appliance.store.workflows import WorkflowStore
from appliance.workflows import runs

log = logging.getLogger(__name__)
IDLE_S = 1.0  # longest sleep: re-check leadership and due schedules at least this often
ERROR_PAUSE_S = 0.5
BUSY_PAUSE_S = 0.01  # something due could not be fired this pass: look again soon
DUE_BATCH = 100  # schedules read per pass
MAX_FIRES = 100  # ticks fired per schedule per pass (a tiny interval cannot starve the rest)


@dataclasses.dataclass(frozen=True, slots=True)
class Step:
    """What to do with a schedule's next tick: fire `tick_ms` (0: fire nothing) and move the
    schedule's next fire to `next_ms` (0: no tick left)."""

    tick_ms: int
    next_ms: int
    misfire: bool = False


def plan(d: Definition, next_ms: int, now_ms: int, grace_ms: int) -> Step:
    """The step for a schedule whose next tick is `next_ms`, at `now_ms` (Redis clock).

    On time, or late by at most `grace_ms`: fire that tick. Later than that (an outage):
    SKIP fires nothing and moves on to the first tick at or after now; RUN_ONCE fires one
    task for the latest missed tick (due at once) and goes on from there."""
    tt = d.timetable
    if next_ms >= now_ms - grace_ms:
        return Step(next_ms, tt.next_after(next_ms) or 0)
    if d.misfire == Misfire.RUN_ONCE:
        latest = tt.last_at_or_before(now_ms) or next_ms
        return Step(latest, tt.next_after(latest) or 0, misfire=True)
    return Step(0, tt.next_after(now_ms - 1) or 0, misfire=True)


class Scheduler:
    """The scheduler loop: `run()` until `stop()`, one `run_once()` per pass."""

    def __init__(
        self,
        store: Store,
        leader: Leader,
        settings: Settings,
        declared: Sequence[Definition] = (),
    ) -> None:
        self.store = store
        self.leader = leader
        self.settings = settings
        self.registry = Registry(store, settings)
        self.schedules: ScheduleStore = self.registry.schedules
        self.declared = list(declared)
        self.wakeups = Wakeups(store.redis, self.schedules.keys.channel, store.keys.sharded)
        self.lookahead_ms = settings.scheduler_lookahead_ms
        self.grace_ms = settings.scheduler_misfire_grace_ms or 2 * settings.leader_ttl_ms
        self.fired = 0  # ticks this process fired
        self.enqueued = 0  # tasks this process enqueued (fired here or found in the outbox)
        self.started = 0  # workflow runs this process started
        self.workflows = WorkflowStore(store)
        self._reconciled = False
        self._stop = asyncio.Event()

    async def run(self) -> None:
        async with self.wakeups.listening() as woken:
            while not self._stop.is_set():
                woken.clear()
                self.leader.changed.clear()
                await wait_any(await self.run_once(), woken, self.leader.changed, self._stop)

    async def run_once(self) -> float:
        """One pass; returns seconds until the next one is needed."""
        try:
            if not self._reconciled:
                await self._reconcile()
            token = self.leader.token()
            if token is None:
                return IDLE_S
            return await self._lead(token)
        except Exception as exc:
            log.warning("scheduler pass failed: %s", exc or type(exc).__name__)
            return ERROR_PAUSE_S

    def stop(self) -> None:
        self._stop.set()

    async def _reconcile(self) -> None:
        written, unchanged, deleted = await self.registry.reconcile(self.declared)
        self._reconciled = True
        log.info(
            "config schedules reconciled: %d written, %d unchanged, %d deleted",
            written,
            unchanged,
            deleted,
        )

    async def _lead(self, token: int) -> float:
        """Enqueue the outbox, fire every tick due within the lookahead, plan the next pass."""
        await self._enqueue(await self.schedules.outbox())
        now = await self.schedules.now_ms()
        horizon = now + self.lookahead_ms
        for fields in await self.schedules.due(horizon, DUE_BATCH):
            await self._advance(from_fields(fields), now, token)
            if self.leader.token() != token:
                return 0.0
        upcoming = await self.schedules.next_due_ms()
        if upcoming is None:
            return IDLE_S
        if upcoming <= horizon:
            return BUSY_PAUSE_S
        return min((upcoming - horizon) / 1000, IDLE_S)

    async def _advance(self, s: Schedule, now: int, token: int) -> None:
        """Fire a schedule's ticks due within the lookahead, one fenced step each."""
        d = s.definition
        next_ms, rev = s.next_fire_ms, s.rev
        for _ in range(MAX_FIRES):
            if not next_ms or next_ms > now + self.lookahead_ms or self.leader.token() != token:
                return
            step = plan(d, next_ms, now, self.grace_ms)
            task = self._task(d, step.tick_ms) if step.tick_ms else None
            refused = await self.schedules.fire(
                token, d.id, (rev, next_ms), step.tick_ms, step.next_ms, task
            )
            if refused is Refusal.NOT_LEADER:
                self.leader.step_down("a fire was refused: another scheduler holds the lease")
            if refused is not None:
                return  # changed, paused or deleted meanwhile: read again next pass
            self._log_step(d, next_ms, step)
            if task is not None:
                self.fired += 1
                metrics.TICKS_FIRED.labels(d.id).inc()
                await self._enqueue(dict([task]))
            next_ms = step.next_ms

    def _task(self, d: Definition, tick_ms: int) -> tuple[str, str]:
        """(task id, task JSON) for the outbox, or a workflow schedule's run (outbox_entry)."""
        return d.outbox_entry(tick_ms, self.settings.default_max_retries)

    async def _enqueue(self, outbox: dict[str, str]) -> None:
        """Enqueue fired ticks (idempotent by task id) and start fired runs (idempotent by run
        id), then settle them - only while leading: otherwise they stay in the outbox for the
        next leader."""
        if not outbox or self.leader.token() is None:
            return
        tasks = []
        for task_id, text in outbox.items():
            body = json.loads(text)
            if "wf" in body:
                await self._start_run(task_id, body)
                continue
            tasks.append(
                NewTask(task_id, body["topic"], body["payload"], body["maxr"], 0, body["due"])
            )
        results = await self.store.enqueue(tasks, [True] * len(tasks)) if tasks else []
        await self.schedules.settle(list(outbox))
        self.enqueued += len(tasks)
        for t, r in zip(tasks, results, strict=True):
            if r.created:
                metrics.ENQUEUED.labels(t.topic).inc()
            log.debug(
                "enqueued task %s due %d%s",
                t.id,
                t.execute_at_ms,
                "" if r.created else " (it existed: nothing created)",
                extra={"topic": t.topic, "task_id": t.id},
            )

    async def _start_run(self, run_id: str, body: dict[str, str]) -> None:
        """Start a fired tick's run, its steps without parents due at the tick. A workflow
        that is gone (or an id taken by another workflow's run) starts nothing: logged."""
        try:
            started = await runs.start(
                self.workflows,
                body["wf"],
                run_id,
                body["input"],
                int(body["due"]),
                retries=self.settings.default_max_retries,
            )
        except (NotFound, AlreadyExists) as exc:
            log.warning("schedule tick %s started no run: %s", run_id, exc)
            return
        if started.created:
            self.started += 1
        log.debug("run %s of %s%s", run_id, body["wf"], "" if started.created else " (it existed)")

    @staticmethod
    def _log_step(d: Definition, next_ms: int, step: Step) -> None:
        if not step.misfire:
            return
        if step.tick_ms:
            log.info("schedule %s missed ticks since %d: one catch-up task", d.id, next_ms)
        else:
            log.info("schedule %s skipped its missed ticks since %d", d.id, next_ms)


async def run(settings: Settings, stop: asyncio.Event) -> None:
    """The scheduler role's body: lead or follow until `stop` is set, then release the lease."""
    declared = from_config(settings.schedules, settings.payload_max_bytes)
    store = Store(connect(settings), settings)
    leader = Leader(ScheduleStore(store), settings.leader_ttl_ms)
    scheduler = Scheduler(store, leader, settings, declared)
    log.info("scheduler %s starting (%d schedules in the config)", leader.holder, len(declared))
    runners = [asyncio.create_task(scheduler.run()), asyncio.create_task(leader.run())]
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait([stopper, *runners], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
        scheduler.stop()
        await asyncio.wait([runners[0]])
        leader.stop()
        await asyncio.wait([runners[1]])  # releases the lease: a follower takes over at once
        await store.close()
    for runner in runners:
        runner.result()  # a loop that ended by itself re-raises its error here
