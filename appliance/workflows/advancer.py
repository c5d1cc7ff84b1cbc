"""The workflow advancer: moves runs on — records finished steps, schedules the steps whose
parents finished (their tasks due after the delay), deletes the tasks of canceled steps.

Every server process runs one (like lease recovery, ADR 0009); several at once are safe: each
move is one script that checks its from-state, and a step's task id is derived from run and
step, so writing it twice makes one task (docs/adr/0010-workflows.md). It sleeps until the
earliest run due for a look (the `due` index, at most POLL_S), woken by ack.lua's message
naming a finished step task. Reaches Redis only through the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable
from typing import NamedTuple

from appliance.config import Settings
from appliance.errors import AtpError, InvalidArgument, NotFound, WrongState
from appliance.model import NewTask
from appliance.store import Store
from appliance.store.wakeups import Wakeups, wait_any
from appliance.store.workflows import Finish, WorkflowStore
from appliance.workflows import definitions, templates
from appliance.workflows.definitions import Step, Workflow, from_config
from appliance.workflows.model import (
    RUN_ACTIVE,
    STEP_HAS_TASK,
    STEP_OPEN,
    RunRecord,
    StepRecord,
    StepState,
    run_from_fields,
    run_of_message,
    step_task_id,
)

log = logging.getLogger(__name__)
POLL_S = 1.0  # a step whose task is out is looked at this soon first, then ever later
POLL_MS = int(POLL_S * 1000)
SAFETY_LOOK_MS = 10_000  # ... up to this (its end publishes: ack, dead letter; ADR 0010)
CATCH_UP_MAX = 100_000  # runs looked at after (re)subscribing, at most
BATCH = 100  # runs per pass
START_GRACE_MS = 30_000  # a run indexed this recently but not found yet: StartRun is writing it
PARALLEL = 16  # runs advanced at once (each its own run: no two calls touch one run)
ERROR_PAUSE_S = 0.5
Tasks = dict[str, dict[str, str] | None] | None  # a run's step tasks by step, read with it


class Ending(NamedTuple):
    """A WAITING step's end without a task: skipped, or failed (why in `text`)."""

    text: str
    skipped: bool


WAITING_LOOK_MS = 3_600_000  # a run whose steps all wait in a delay: looked at this often
RUN_CACHE = 10_000  # runs whose workflow is remembered (their reads take one round trip)


class Done(NamedTuple):
    """A step's task acked, as ack.lua's message tells it: what step_finish records."""

    step: str
    finished_ms: int
    attempt: int
    result: str


class RunWakeups(Wakeups):
    """Wake-ups that hand each run named by a message (ack.lua's 'wf:<run>:<step> <ms>
    [<attempt> <result>]', a new run's 'run:<id> <ms>') to `on_run` with the message's time
    (Redis clock) and, when the message carries its result, the step's end."""

    def __init__(
        self, store: Store, on_run: Callable[[str, int | None, Done | None], None]
    ) -> None:
        super().__init__(store.redis, store.keys.workflows.channel)
        self.on_run = on_run
        self.missed = asyncio.Event()  # (re)subscribed: messages may have been missed

    def wake(self, topic: str | None = None) -> None:
        if topic is None:
            self.missed.set()
        super().wake(topic)

    def message(self, text: str) -> None:
        """A named run goes to `on_run` alone: the poll loop is not woken for it (a pass per
        Ack would re-read the due index back to back under load)."""
        name, _, rest = text.partition(" ")
        ms, _, rest = rest.partition(" ")
        attempt, carried, result = rest.partition(" ")
        run_id = run_of_message(name)
        if not run_id:
            self.wake(name)
            return
        now = int(ms) if ms.isdigit() else None
        done = None
        if now is not None and carried and attempt.isdigit() and name.startswith("wf:"):
            done = Done(name.split(":", 2)[2], now, int(attempt), result)
        self.on_run(run_id, now, done)


class Advancer:
    def __init__(self, store: Store, settings: Settings, poll_s: float = POLL_S) -> None:
        self.store = store
        self.settings = settings
        self.workflows = WorkflowStore(store)
        self.poll_ms = int(poll_s * 1000)
        self.wakeups = RunWakeups(store, self.named)
        self._stop = asyncio.Event()
        self._definitions: dict[tuple[str, int], Workflow] = {}
        self._runs: dict[str, tuple[str, int]] = {}  # run -> its workflow and version
        self._busy: set[str] = set()  # runs being advanced in this process
        # named while busy: advanced once more after (the step's end kept when only one came)
        self._again: dict[str, tuple[int | None, Done | None]] = {}
        # each run as this process last wrote or read it: the hand-off decides on it, and
        # step_schedule checks the run is still so (RUN_MOVED: read it, the long way)
        self._latest: dict[str, RunRecord] = {}
        self._waits: dict[str, tuple[int, int]] = {}  # topic -> a step task's end, its wait
        self._looks: dict[str, int | None] = {}  # named runs' next looks, written in batches
        self._looks_due = asyncio.Event()
        self._lane = asyncio.Semaphore(PARALLEL)
        self._named: set[asyncio.Task[None]] = set()
        self.reads = 0  # looks that read their run (the long way), logged at the end
        # The config's workflows (ConfigError here stops the server at start, exit 78).
        self.declared = from_config(settings.workflows, settings.payload_max_bytes)

    async def run(self) -> None:
        looks = asyncio.create_task(self._write_looks())
        try:
            await self._run()
        finally:
            looks.cancel()
            await asyncio.gather(looks, return_exceptions=True)
            await self._flush_looks()

    async def _run(self) -> None:
        async with self.wakeups.listening() as woken:
            while self.declared and not self._stop.is_set():
                try:
                    await self.declare()
                    break
                except AtpError as exc:
                    log.warning("workflows from the config not put yet: %s", exc)
                    await wait_any(ERROR_PAUSE_S, self._stop)
            while not self._stop.is_set():
                woken.clear()
                if self.wakeups.missed.is_set() and self.wakeups.subscribed.is_set():
                    self.wakeups.missed.clear()
                    await self.catch_up()
                await wait_any(await self.run_once(), woken, self._stop)
        for task in list(self._named):
            task.cancel()
        await asyncio.gather(*self._named, return_exceptions=True)
        await self.workflows.settle()
        log.info("workflow advancer stopped: %d looks read their run", self.reads)

    def named(self, run_id: str, now: int | None, done: Done | None = None) -> None:
        """A message named the run (a step's task finished, the run started): advance it now,
        beside the poll loop (the hand-off path). `now`: the message's Redis time, taken
        before anything this look reads; `done`: the step's end the message told. A run busy
        here is advanced once more after (the long way when two messages came meanwhile)."""
        if self._stop.is_set():
            return
        if run_id in self._busy:
            self._again[run_id] = (now, None if run_id in self._again else done)
            return
        self._busy.add(run_id)
        task = asyncio.create_task(self._advance_named(run_id, now, done))
        self._named.add(task)
        task.add_done_callback(self._named.discard)

    async def _advance_named(self, run_id: str, now: int | None, done: Done | None) -> None:
        async with self._lane:
            await self._advance_busy(run_id, now, done, batched=True)

    async def _advance_busy(
        self, run_id: str, now: int | None, done: Done | None = None, batched: bool = False
    ) -> None:
        """Advance a run marked busy (no other look at it here meanwhile), again while it was
        named meanwhile; then it is no longer busy. `batched`: its next look is written with
        others' (the poll loop writes its own at once: it reads the due index next)."""
        try:
            while True:
                await self._advance_logged(run_id, now, done, batched)
                if run_id not in self._again:
                    return
                now, done = self._again.pop(run_id)
        finally:
            self._busy.discard(run_id)

    async def _write_looks(self) -> None:
        """Write the named runs' next looks, as many as gathered meanwhile in one round trip.
        One lost (a crash first) leaves the run's look before it: it is looked at early."""
        while True:
            await self._looks_due.wait()
            self._looks_due.clear()
            try:
                await self._flush_looks()
            except Exception as exc:  # each run keeps its earlier look meanwhile
                log.warning("workflow looks not written: %s", exc)
                await asyncio.sleep(ERROR_PAUSE_S)

    async def _flush_looks(self) -> None:
        looks, self._looks = self._looks, {}
        if looks:
            await self.workflows.look_again_many(looks)

    async def declare(self) -> None:
        """Put each workflow of the config whose definition differs from its latest version."""
        for wf in self.declared:
            try:
                _, text = await self.workflows.workflow(wf.name)
            except NotFound:
                text = ""
            if text != wf.to_json():
                version = await self.workflows.put_workflow(wf.name, wf.to_json())
                log.info("workflow %s v%d put from the config", wf.name, version)

    def stop(self) -> None:
        self._stop.set()

    async def catch_up(self) -> None:
        """Look now at every run with a step whose task is out (due for a look within
        SAFETY_LOOK_MS): subscribed anew (started, or the subscription lost), a message telling
        a step's end may have been missed, and such runs are looked at late otherwise."""
        try:
            now = await self.store.now_ms()
            runs, _ = await self.workflows.due_runs(now + SAFETY_LOOK_MS, CATCH_UP_MAX)
            await self._advance_all(runs, now)
        except AtpError as exc:  # the poll loop finds them by their looks meanwhile
            log.warning("workflow advancer catching up: %s", exc)
        except Exception:  # a bug must not stop every run: logged, the looks go on
            log.exception("workflow advancer failed catching up")

    async def _advance_all(self, due: list[str], now: int) -> None:
        """Look at these runs (those not busy: a named look is at them), side by side, their
        next looks written once per PARALLEL of them (the caller reads the due index next)."""
        runs = [r for r in due if r not in self._busy]
        for start in range(0, len(runs), PARALLEL):  # runs are independent: side by side
            chunk = [r for r in runs[start : start + PARALLEL] if r not in self._busy]
            self._busy.update(chunk)
            await asyncio.gather(*(self._advance_busy(r, now, batched=True) for r in chunk))
            await self._flush_looks()

    async def run_once(self) -> float:
        """Advance every run due for a look; return seconds until the next one is due."""
        try:
            now = await self.store.now_ms()
            due, _ = await self.workflows.due_runs(now, BATCH)
            await self._advance_all(due, now)
            _, head = await self.workflows.due_runs(now, 0)
        except AtpError as exc:
            log.warning("workflow advancer: %s", exc)
            return ERROR_PAUSE_S
        except Exception:  # a bug must not stop every run: logged, tried again
            log.exception("workflow advancer failed")
            return ERROR_PAUSE_S
        if head is None:
            return self.poll_ms / 1000
        return min(max(head - now, 0) / 1000, self.poll_ms / 1000)

    async def _advance_logged(
        self, run_id: str, now: int | None, done: Done | None = None, batched: bool = False
    ) -> None:
        try:
            now = await self.store.now_ms() if now is None else now
            at = await self.advance(run_id, now, done)
            if at is None:
                self._runs.pop(run_id, None)
            if batched:
                self._looks[run_id] = at
                self._looks_due.set()
            else:
                self._looks.pop(run_id, None)  # this one is newer
                await self.workflows.look_again(run_id, at)
        except Exception as exc:  # looked at again when its due time comes
            self._latest.pop(run_id, None)
            log.warning("workflow run %s: %s", run_id, exc, exc_info=not isinstance(exc, AtpError))

    def _remember(self, run: RunRecord) -> None:
        """Keep the run as last seen (an active one), for the next hand-off to decide on."""
        self._latest.pop(run.id, None)
        if run.state not in RUN_ACTIVE:
            return
        if len(self._latest) >= RUN_CACHE:
            self._latest.pop(next(iter(self._latest)))
        self._latest[run.id] = run

    async def definition(self, name: str, version: int) -> Workflow:
        key = (name, version)
        if key not in self._definitions:
            _, text = await self.workflows.workflow(name, version)
            self._definitions[key] = Workflow.from_json(name, version, text)
        return self._definitions[key]

    async def read(self, run_id: str) -> tuple[RunRecord, Workflow] | None:
        fields = await self.workflows.run_fields(run_id)
        return await self._record(run_id, fields) if fields else None

    async def _record(self, run_id: str, fields: dict[str, str]) -> tuple[RunRecord, Workflow]:
        key = (fields["wf"], int(fields["ver"]))
        wf = await self.definition(*key)
        self._known(run_id, key)
        return run_from_fields(run_id, fields, wf.step_names), wf

    def _known(self, run_id: str, key: tuple[str, int]) -> None:
        if run_id not in self._runs:
            if len(self._runs) >= RUN_CACHE:
                self._runs.pop(next(iter(self._runs)))
            self._runs[run_id] = key

    async def _read_with_tasks(self, run_id: str) -> tuple[RunRecord, Workflow, Tasks] | None:
        """The run, and its step tasks when its workflow is known here: one round trip."""
        self.reads += 1
        known = self._runs.get(run_id)
        if known is None:
            found = await self.read(run_id)
            return None if found is None else (*found, None)
        wf = await self.definition(*known)
        names = [s.name for s in wf.steps if s.has_task]
        refs = [(wf.step(n).topic, step_task_id(run_id, n)) for n in names]
        fields, tasks = await self.workflows.run_and_tasks(run_id, refs)
        if not fields:
            return None
        run, actual = await self._record(run_id, fields)
        if actual is not wf:  # the id was reused by a run of another workflow
            return run, actual, None
        return run, wf, dict(zip(names, tasks, strict=True))

    async def advance(self, run_id: str, now: int, done: Done | None = None) -> int | None:
        """One look at a run; when to look again (ms), None when it needs no more looks.
        `now`: a Redis time taken before this look reads anything; `done`: a step's end as
        ack.lua's message told it (the hand-off: decided on the run as last seen here, so
        without reading it first; the long way when that cannot be)."""
        current = await self._current(run_id, now, done)
        if not isinstance(current, tuple):
            return current
        run, wf = current
        dues: list[int] = []
        for _ in wf.steps:  # a skipped step may make its children ready (or skipped) at once
            if run.state not in RUN_ACTIVE:
                break
            fresh, scheduled, latest = await self._schedule_ready(run, wf)
            dues += scheduled
            if latest:
                run = run_from_fields(run_id, latest, wf.step_names)
            if fresh is None:  # only scheduled (or nothing): no step became ready by it
                break
            if not fresh:
                return None
            run = run_from_fields(run_id, fresh, wf.step_names)
        self._remember(run)
        if run.state not in RUN_ACTIVE:  # finished: its running steps' outcomes are recorded
            await self.delete_tasks([s.task_id for s in run.steps if s.state == "CANCELED"])
            running = any(s.state == StepState.RUNNING for s in run.steps)
            return now + self.poll_ms if running else None
        return self._next_look(run, now, dues)

    async def _current(
        self, run_id: str, now: int, done: Done | None
    ) -> tuple[RunRecord, Workflow] | int | None:
        """The run with its finished step tasks recorded (by the hand-off when `done` allows,
        else read, the long way); when it is not there, when to look again (None: never)."""
        handed = await self._hand_off(run_id, done) if done else None
        if handed is not None:
            if not handed[0]:  # gone meanwhile (expired)
                return None
            return run_from_fields(run_id, handed[0], handed[1].step_names), handed[1]
        found = await self._read_with_tasks(run_id)
        if found is None:  # gone after retention, or StartRun has not written it yet
            created = await self.workflows.created_ms(run_id)
            return now + self.poll_ms if created and now - created < START_GRACE_MS else None
        run, wf, tasks = found
        if any(s.state in STEP_HAS_TASK for s in run.steps):
            fresh = await self._observe(run, wf, now, tasks)
            if fresh is not None:
                if not fresh:  # gone meanwhile (expired)
                    return None
                run = run_from_fields(run_id, fresh, wf.step_names)
        return run, wf

    async def _hand_off(self, run_id: str, done: Done) -> tuple[dict[str, str], Workflow] | None:
        """A step's task acked (`done`, from ack.lua's message): its success recorded and the
        steps it makes ready scheduled, decided on the run as this process last saw it (no
        read first), each schedule checking the run is still so. The run's fields after and
        its workflow; None when the hand-off cannot be made so (the run not seen here, the
        step not open there, a step that would end without a task): the long way."""
        run, known = self._latest.get(run_id), self._runs.get(run_id)
        if run is None or known is None:
            return None
        wf = await self.definition(*known)
        if done.step not in wf.step_names or wf.step(done.step).signal:
            return None
        step = run.step(done.step)
        if run.state not in RUN_ACTIVE or step.state not in STEP_HAS_TASK:
            return None
        task = {"finished": str(done.finished_ms), "attempt": str(done.attempt)}
        fields = await self._succeed(run, wf, step, {**task, "result": done.result})
        return None if fields is None else (fields, wf)

    def started(self, run: RunRecord, wf: Workflow) -> None:
        """A run this process made with its first steps scheduled (runs.start): kept as last
        seen, so its first step's end is handed off without a read."""
        self._known(run.id, (wf.name, wf.version))
        self._definitions.setdefault((wf.name, wf.version), wf)
        self._remember(run)

    def first_look(self, run: RunRecord, now: int) -> int:
        """When a run just made with its first steps scheduled is first looked at."""
        return self._next_look(run, now, [])

    async def look(self, run_id: str) -> None:
        """Advance one run now (CancelRun first brings its steps up to date)."""
        await self._advance_logged(run_id, await self.store.now_ms())

    def _next_look(self, run: RunRecord, now: int, dues: list[int]) -> int:
        """next_look, with the queue waits this process saw lately on the topics of the run's
        steps that are out (a first step has no step before it in its run to tell the wait):
        a step task's due to finished, or to now for one still queued at a look."""
        for s in run.steps:  # the latest wait seen per topic
            seen_at = 0
            if s.state == StepState.SUCCEEDED and s.task_id and 0 < s.due_ms <= s.finished_ms:
                seen_at = s.finished_ms  # its task waited (and ran) this long
            elif s.state == StepState.SCHEDULED and s.task_id and 0 < s.due_ms < now:
                seen_at = now  # not leased yet: it has waited this long so far
            if seen_at > self._waits.get(s.topic, (0, 0))[0]:
                self._waits[s.topic] = (seen_at, seen_at - s.due_ms)
        recent = [self._waits.get(s.topic) for s in run.steps if s.state in STEP_HAS_TASK]
        queued = [w for at, w in filter(None, recent) if now - at < SAFETY_LOOK_MS]
        return self.next_look(run, now, dues, self.poll_ms, max(queued, default=0))

    @staticmethod
    def next_look(
        run: RunRecord, now: int, dues: list[int], poll_ms: int = POLL_MS, queued: int = 0
    ) -> int:
        """A step whose task is out (RUNNING, or due): as long after as it has been out, or
        as the run's steps took from due to finished, or as `queued` (a queue's wait seen
        lately on its topic: the step waits as long), from the poll interval up to
        SAFETY_LOOK_MS (its end publishes: ack.lua, a dead letter; a look is a safety net,
        and catch_up looks at once after a subscription was lost); else the earliest due
        time of a scheduled step (a task in its delay, a signal's deadline; `dues`: of those
        scheduled in this look); at most WAITING_LOOK_MS ahead."""
        scheduled = [s.due_ms for s in run.steps if s.state == StepState.SCHEDULED]
        later = [due for due in [*scheduled, *dues] if due > now]
        if any(s.state == StepState.RUNNING for s in run.steps) or not later:
            out = [s.due_ms for s in run.steps if s.state in STEP_HAS_TASK and s.due_ms <= now]
            since = min(out, default=now)
            took = [
                s.finished_ms - s.due_ms
                for s in run.steps
                if s.state == StepState.SUCCEEDED and 0 < s.due_ms <= s.finished_ms
            ]
            wait = max(now - since, *took, queued, poll_ms)
            return now + min(wait, SAFETY_LOOK_MS)
        # Waiting in a delay: looked at when it is due, so runs waiting cost no work (a look
        # an hour, a safety net: messages and CancelRun/SignalRun bring every change at once).
        return min(min(later), now + WAITING_LOOK_MS)

    async def _observe(
        self, run: RunRecord, wf: Workflow, now: int, known: Tasks
    ) -> dict[str, str] | None:
        """Bring the steps whose tasks exist (or signals wait) up to date; the run's fields
        after the last change, None when nothing changed. `now`: a time taken before `run`
        was read; `known`: the step tasks read with the run (None: read them now)."""
        waiting = [s for s in run.steps if s.state in STEP_HAS_TASK]
        changed: dict[str, str] | None = None
        for step in [s for s in waiting if wf.step(s.name).signal]:
            changed = await self._signal(run, wf, step, now) or changed
        open_steps = [s for s in waiting if not wf.step(s.name).signal]
        if known is None:
            tasks = await self.workflows.tasks([(s.topic, s.task_id) for s in open_steps])
        else:
            tasks = [known.get(s.name) for s in open_steps]
        for step, task in zip(open_steps, tasks, strict=True):
            if task is None:  # the outbox record was not delivered yet (or got lost): again
                if run.state in RUN_ACTIVE and step.state == StepState.SCHEDULED:
                    await self.store.enqueue([_outbox_task(step)], index=False)
                continue
            state, attempts = task["state"], int(task.get("attempt", 0))
            if state in ("SUCCEEDED", "DEAD", "CANCELED"):
                ok = state == "SUCCEEDED"
                text = task.get("result", "") if ok else _failure(state, task.get("err", ""))
                folded = None if changed or not ok else await self._succeed(run, wf, step, task)
                if folded is not None:  # finished, its children scheduled: one round trip
                    changed = folded
                    continue
                moved, fields = await self._finish(run, wf, step.name, ok, text, task, attempts)
                changed = fields if moved else changed
            elif state == "RUNNING" and (step.state != "RUNNING" or attempts != step.attempts):
                changed = await self.workflows.step_running(run.id, step.name, attempts)
        return changed

    async def _signal(
        self, run: RunRecord, wf: Workflow, step: StepRecord, now: int
    ) -> dict[str, str] | None:
        """A signal step: its signal came by the deadline (SUCCEEDED with the payload), or the
        deadline passed without it (FAILED); both judged by the Redis clock (ADR 0010). The
        timeout is judged at `now`, taken before `run` was read: a signal kept after the read
        arrived after `now`, so a run read without it at or past the deadline has timed out,
        while one read before the deadline may still get it (the next look sees it)."""
        spec = wf.step(step.name)
        came = run.signals.get(spec.signal)
        if came is not None and (not spec.timeout_ms or came[0] <= step.due_ms):
            ok, text, at = True, came[1], came[0]
        elif spec.timeout_ms and now >= step.due_ms:
            ok, text, at = (
                False,
                f"no signal {spec.signal!r} within {spec.timeout_ms} ms",
                step.due_ms,
            )
        else:
            return None
        moved, fields = await self._finish(run, wf, step.name, ok, text, {"finished": str(at)}, 0)
        return fields if moved else None

    async def _finish(
        self,
        run: RunRecord,
        wf: Workflow,
        step: str,
        ok: bool,
        text: str,
        task: dict[str, str],
        attempts: int,
        skipped: bool = False,
    ) -> tuple[bool, dict[str, str]]:
        """Record a step's outcome: (whether this call changed it, the run's fields after)."""
        finished = int(task.get("finished", 0))
        finish = Finish(step, ok, text, finished, attempts, wf.step_names, wf.on_failure, skipped)
        done, fields = await self.workflows.finish_and_read(run.id, finish)
        if done is not None:
            await self.delete_tasks(done[1])
        return done is not None, fields

    async def _succeed(
        self, run: RunRecord, wf: Workflow, step: StepRecord, task: dict[str, str]
    ) -> dict[str, str] | None:
        """The hand-off: a step's task SUCCEEDED; record it and schedule the steps that makes
        ready in one round trip (step_finish, then step_schedule for each, each checking its
        from-state as ever), then write their tasks; on a single Redis the tasks are written
        by the same script (step_hand_off.lua, one round trip in all). The run's fields after;
        None when a step it makes ready would end without a task (skipped, failed): the
        caller finishes it the long way."""
        finished, attempts = int(task.get("finished", 0)), int(task.get("attempt", 0))
        if not finished:
            return None
        output = task.get("result", "")
        done = dataclasses.replace(
            step, state=StepState.SUCCEEDED, output=output, finished_ms=finished
        )
        after = dataclasses.replace(run, steps=tuple(done if s is step else s for s in run.steps))
        plan = self._decide(after, wf)
        if any(isinstance(d, Ending) for _, d in plan):
            return None
        ready = [(name, d) for name, d in plan if isinstance(d, NewTask)]
        finish = Finish(step.name, True, output, finished, attempts, wf.step_names, wf.on_failure)
        expected = [(s.name, _as_decided(s.state)) for s in after.steps] if ready else []
        one_node = self.workflows.one_node  # the tasks written by the same script
        move = self.workflows.hand_off if one_node else self.workflows.finish_and_schedule
        recorded, fields = await move(run.id, finish, ready, expected)
        if recorded is not None:
            await self.delete_tasks(recorded[1])
        latest = run_from_fields(run.id, fields, wf.step_names) if fields else None
        if not one_node and latest is not None and latest.state in RUN_ACTIVE:  # the outbox
            steps = [latest.step(name) for name, t in ready if t.id]
            tasks = [_outbox_task(s) for s in steps if s.state == StepState.SCHEDULED]
            if tasks:
                await self.workflows.write_tasks(tasks)
        return fields

    async def _schedule_ready(
        self, run: RunRecord, wf: Workflow
    ) -> tuple[dict[str, str] | None, list[int], dict[str, str]]:
        """Schedule every WAITING step whose parents allow it: (the run's fields when a step
        finished (skipped, failed) and the run must be looked at again, else None; the due
        times of the steps scheduled; the run's fields after the last one scheduled, {} when
        none was)."""
        dues: list[int] = []
        latest: dict[str, str] = {}
        for step, decision in self._decide(run, wf):
            if isinstance(decision, Ending):
                text, skipped = decision
                ended = await self._finish(run, wf, step, False, text, {}, 0, skipped)
                return ended[1], dues, {}
            why, latest = await self.workflows.schedule_and_read(run.id, step, decision)
            if why is None:
                if decision.id:
                    await self.store.enqueue([decision], index=False)
                dues.append(decision.execute_at_ms)
        return None, dues, latest

    def _decide(self, run: RunRecord, wf: Workflow) -> list[tuple[str, NewTask | Ending]]:
        return self.decide(run, wf, self.settings.default_max_retries)

    @staticmethod
    def decide(run: RunRecord, wf: Workflow, retries: int) -> list[tuple[str, NewTask | Ending]]:
        """What each WAITING step whose parents allow it gets: its task (to schedule), or an
        Ending (skipped, or failed: a `when` or template that failed). Stops at the first
        Ending: the run must be read again after it. `retries`: a step's max retries when it
        names none (the server's default)."""
        outputs = {s.name: s.output for s in run.steps if s.state == StepState.SUCCEEDED}
        done = {s.name: s.state.value for s in run.steps if s.state not in STEP_OPEN}
        out: list[tuple[str, NewTask | Ending]] = []
        for step in run.steps:
            if step.state != StepState.WAITING:
                continue
            spec = wf.step(step.name)
            base = Advancer._ready_since(run, spec)
            skip = _skipped_parents(run, spec) if base is None else ""
            try:
                when = base is not None and spec.when
                if when and not templates.holds(spec.when, run.input, outputs, done):
                    skip = f"when is false: {spec.when}"
                if skip:  # its children may be ready (or skipped) now: look again
                    return [*out, (step.name, Ending(skip, True))]
                if base is None:
                    continue
                failed = {"step": run.failed, "error": run.error} if spec.on_failure else None
                payload, due = _rendered(spec, run.input, outputs, failed, base)
            except ValueError as exc:
                return [*out, (step.name, Ending(str(exc), False))]
            task = NewTask(
                id=step_task_id(run.id, step.name) if spec.has_task else "",
                topic=spec.topic,
                payload=payload,
                max_retries=retries if spec.max_retries is None else spec.max_retries,
                execute_at_ms=due + spec.timeout_ms,
            )
            out.append((step.name, task))
        return out

    @staticmethod
    def _ready_since(run: RunRecord, spec: Step) -> int | None:
        """When a WAITING step's wait began (its parents' finish), or None: not ready. Once a
        step failed the run, only the on_failure step is ready."""
        if spec.on_failure:
            return run.step(run.failed).finished_ms if run.failed else None
        if run.failed:
            return None
        parents = [run.step(p) for p in spec.after]
        ends = [p.finished_ms for p in parents if p.state == StepState.SUCCEEDED]
        if spec.after and not (ends if spec.after_any else len(ends) == len(parents)):
            return None
        return (min(ends) if spec.after_any else max(ends)) if ends else run.created_ms

    async def delete_tasks(self, task_ids: list[str]) -> None:
        """Delete the tasks of canceled steps that are still PENDING (others run on: their
        outcome starts nothing)."""
        for task_id in filter(None, task_ids):  # a signal step has no task
            with contextlib.suppress(NotFound, WrongState):
                await self.store.cancel(task_id)


def _rendered(
    spec: Step,
    run_input: str,
    outputs: dict[str, str],
    failed: dict[str, str] | None,
    base: int,
) -> tuple[str, int]:
    """A ready step's payload and when its wait ends: `delay_ms` after `base` (its parents'
    finish), and not before its `delay_until`. ValueError saying why (the step fails)."""
    payload = templates.render(spec.payload, run_input, outputs, failed)
    due = base + spec.delay_ms
    if spec.delay_until:
        try:
            text = templates.render(spec.delay_until, run_input, outputs, failed)
            due = max(due, definitions.until_ms(text, "delay_until", base))
        except (ValueError, InvalidArgument) as exc:
            why = str(exc) if isinstance(exc, InvalidArgument) else f"delay_until {exc}"
            raise ValueError(why) from None
    return payload, due


def _skipped_parents(run: RunRecord, spec: Step) -> str:
    """Why a step whose parents all finished is skipped ('' when it is not): a skipped parent
    (all of them with after_any). A failed parent fails the run instead."""
    parents = [run.step(p) for p in spec.after]
    if not parents or not all(p.state in (StepState.SUCCEEDED, StepState.SKIPPED) for p in parents):
        return ""
    skipped = [p.name for p in parents if p.state == StepState.SKIPPED]
    if skipped and (len(skipped) == len(parents) or not spec.after_any):
        return f"parent skipped: {', '.join(skipped)}"
    return ""


def _as_decided(state: StepState) -> str:
    """A step's state as a decision depends on it: a task leased or not decides nothing
    (step_schedule takes SCHEDULED for RUNNING too)."""
    return StepState.SCHEDULED.value if state == StepState.RUNNING else state.value


def _outbox_task(step: StepRecord) -> NewTask:
    """The task a SCHEDULED step's outbox record describes (the same id: written once)."""
    return NewTask(
        id=step.task_id,
        topic=step.topic,
        payload=step.payload,
        max_retries=step.max_retries,
        execute_at_ms=step.due_ms,
    )


def _failure(state: str, err: str) -> str:
    if state == "CANCELED":
        return "its task was deleted"
    return f"its task dead-lettered: {err}" if err else "its task dead-lettered"
