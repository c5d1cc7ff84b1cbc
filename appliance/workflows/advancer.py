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
import logging

from appliance.config import Settings
from appliance.errors import AtpError, InvalidArgument, NotFound, WrongState
from appliance.model import NewTask
from appliance.store import Store
from appliance.store.wakeups import Wakeups, wait_any
from appliance.store.workflows import WorkflowStore
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
POLL_S = 1.0  # a RUNNING step is looked at this often (a dead letter publishes nothing)
BATCH = 100  # runs per pass
START_GRACE_MS = 30_000  # a run indexed this recently but not found yet: StartRun is writing it
PARALLEL = 16  # runs advanced at once (each its own run: no two calls touch one run)
ERROR_PAUSE_S = 0.5


class RunWakeups(Wakeups):
    """Wake-ups that remember the runs named by ack.lua's messages ('wf:<run>:<step> <ms>')."""

    def __init__(self, store: Store) -> None:
        super().__init__(store.redis, store.keys.workflows.channel)
        self.named: set[str] = set()

    def wake(self, topic: str | None = None) -> None:
        run_id = run_of_message(topic) if topic else None
        if run_id:
            self.named.add(run_id)
        super().wake(topic)


class Advancer:
    def __init__(self, store: Store, settings: Settings, poll_s: float = POLL_S) -> None:
        self.store = store
        self.settings = settings
        self.workflows = WorkflowStore(store)
        self.poll_ms = int(poll_s * 1000)
        self.wakeups = RunWakeups(store)
        self.kick = asyncio.Event()  # set by StartRun and CancelRun in this process
        self._stop = asyncio.Event()
        self._definitions: dict[tuple[str, int], Workflow] = {}
        # The config's workflows (ConfigError here stops the server at start, exit 78).
        self.declared = from_config(settings.workflows, settings.payload_max_bytes)

    async def run(self) -> None:
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
                self.kick.clear()
                await wait_any(await self.run_once(), woken, self.kick, self._stop)

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

    async def run_once(self) -> float:
        """Advance every run due for a look; return seconds until the next one is due."""
        try:
            now = await self.store.now_ms()
            due, _ = await self.workflows.due_runs(now, BATCH)
            named, self.wakeups.named = self.wakeups.named, set()
            runs = list(dict.fromkeys([*named, *due]))
            for start in range(0, len(runs), PARALLEL):  # runs are independent: side by side
                chunk = runs[start : start + PARALLEL]
                await asyncio.gather(*(self._advance_logged(r, now) for r in chunk))
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

    async def _advance_logged(self, run_id: str, now: int) -> None:
        try:
            await self.workflows.look_again(run_id, await self.advance(run_id, now))
        except Exception as exc:  # looked at again when its due time comes
            log.warning("workflow run %s: %s", run_id, exc, exc_info=not isinstance(exc, AtpError))

    async def definition(self, name: str, version: int) -> Workflow:
        key = (name, version)
        if key not in self._definitions:
            _, text = await self.workflows.workflow(name, version)
            self._definitions[key] = Workflow.from_json(name, version, text)
        return self._definitions[key]

    async def read(self, run_id: str) -> tuple[RunRecord, Workflow] | None:
        fields = await self.workflows.run_fields(run_id)
        if not fields:
            return None
        wf = await self.definition(fields["wf"], int(fields["ver"]))
        return run_from_fields(run_id, fields, wf.step_names), wf

    async def advance(self, run_id: str, now: int) -> int | None:
        """One look at a run; when to look again (ms), None when it needs no more looks."""
        found = await self.read(run_id)
        if found is None:  # gone after retention, or StartRun has not written it yet
            created = await self.workflows.created_ms(run_id)
            return now + self.poll_ms if created and now - created < START_GRACE_MS else None
        run, wf = found
        if any(s.state in STEP_HAS_TASK for s in run.steps) and await self._observe(run, wf, now):
            found = await self.read(run_id)
            assert found is not None
            run, wf = found
        for _ in wf.steps:  # a skipped step may make its children ready (or skipped) at once
            if run.state not in RUN_ACTIVE or not await self._schedule_ready(run, wf):
                break
            found = await self.read(run_id)
            assert found is not None
            run, wf = found
        if run.state not in RUN_ACTIVE:  # finished: its running steps' outcomes are recorded
            await self.delete_tasks([s.task_id for s in run.steps if s.state == "CANCELED"])
            running = any(s.state == StepState.RUNNING for s in run.steps)
            return now + self.poll_ms if running else None
        return self._next_look(run, now)

    async def look(self, run_id: str) -> None:
        """Advance one run now (CancelRun first brings its steps up to date)."""
        await self._advance_logged(run_id, await self.store.now_ms())

    def _next_look(self, run: RunRecord, now: int) -> int:
        """A RUNNING step: the poll interval; else the earliest due time of a scheduled step
        (a task in its delay, a signal's deadline); at most a minute."""
        later = [s.due_ms for s in run.steps if s.state == StepState.SCHEDULED and s.due_ms > now]
        if any(s.state == StepState.RUNNING for s in run.steps) or not later:
            return now + self.poll_ms
        return min(min(later), now + 60_000)  # waiting in a delay: looked at when it is due

    async def _observe(self, run: RunRecord, wf: Workflow, now: int) -> bool:
        """Bring the steps whose tasks exist (or signals wait) up to date; True when one
        changed. `now`: a time taken before `run` was read."""
        waiting = [s for s in run.steps if s.state in STEP_HAS_TASK]
        changed = False
        for step in [s for s in waiting if wf.step(s.name).signal]:
            changed |= await self._signal(run, wf, step, now)
        open_steps = [s for s in waiting if not wf.step(s.name).signal]
        tasks = await self.workflows.tasks([(s.topic, s.task_id) for s in open_steps])
        for step, task in zip(open_steps, tasks, strict=True):
            if task is None:  # the outbox record was not delivered yet (or got lost): again
                if run.state in RUN_ACTIVE and step.state == StepState.SCHEDULED:
                    await self.store.enqueue([_outbox_task(step)])
                continue
            state, attempts = task["state"], int(task.get("attempt", 0))
            if state in ("SUCCEEDED", "DEAD", "CANCELED"):
                ok = state == "SUCCEEDED"
                text = task.get("result", "") if ok else _failure(state, task.get("err", ""))
                changed |= await self._finish(run, wf, step.name, ok, text, task, attempts)
            elif state == "RUNNING" and (step.state != "RUNNING" or attempts != step.attempts):
                await self.workflows.step_running(run.id, step.name, attempts)
                changed = True
        return changed

    async def _signal(self, run: RunRecord, wf: Workflow, step: StepRecord, now: int) -> bool:
        """A signal step: its signal came by the deadline (SUCCEEDED with the payload), or the
        deadline passed without it (FAILED); both judged by the Redis clock (ADR 0010). The
        timeout is judged at `now`, taken before `run` was read: a signal kept after the read
        arrived after `now`, so a run read without it at or past the deadline has timed out,
        while one read before the deadline may still get it (the next look sees it)."""
        spec = wf.step(step.name)
        came = run.signals.get(spec.signal)
        if came is not None and (not spec.timeout_ms or came[0] <= step.due_ms):
            return await self._finish(
                run, wf, step.name, True, came[1], {"finished": str(came[0])}, 0
            )
        if spec.timeout_ms and now >= step.due_ms:
            why = f"no signal {spec.signal!r} within {spec.timeout_ms} ms"
            return await self._finish(
                run, wf, step.name, False, why, {"finished": str(step.due_ms)}, 0
            )
        return False

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
    ) -> bool:
        finished = int(task.get("finished", 0))
        done = await self.workflows.finish_step(
            run.id, step, ok, text, finished, attempts, wf.step_names, wf.on_failure, skipped
        )
        if done is not None:
            await self.delete_tasks(done[1])
        return done is not None

    async def _schedule_ready(self, run: RunRecord, wf: Workflow) -> bool:
        """Schedule every WAITING step whose parents allow it; True when one moved."""
        outputs = {s.name: s.output for s in run.steps if s.state == StepState.SUCCEEDED}
        done = {s.name: s.state.value for s in run.steps if s.state not in STEP_OPEN}
        moved = False
        for step in run.steps:
            if step.state != StepState.WAITING:
                continue
            spec = wf.step(step.name)
            base = self._ready_since(run, spec)
            skip = _skipped_parents(run, spec) if base is None else ""
            if base is not None and spec.when:
                try:
                    if not templates.holds(spec.when, run.input, outputs, done):
                        skip = f"when is false: {spec.when}"
                except ValueError as exc:
                    await self._finish(run, wf, step.name, False, str(exc), {}, 0)
                    return True
            if skip:
                await self._finish(run, wf, step.name, False, skip, {}, 0, skipped=True)
                return True  # its children may be ready (or skipped) now: read again
            if base is None:
                continue
            failed = {"step": run.failed, "error": run.error} if spec.on_failure else None
            try:
                payload, due = _rendered(spec, run.input, outputs, failed, base)
            except ValueError as exc:
                await self._finish(run, wf, step.name, False, str(exc), {}, 0)
                return True
            retries = self.settings.default_max_retries
            task = NewTask(
                id=step_task_id(run.id, step.name) if spec.has_task else "",
                topic=spec.topic,
                payload=payload,
                max_retries=retries if spec.max_retries is None else spec.max_retries,
                execute_at_ms=due + spec.timeout_ms,
            )
            if await self.workflows.schedule_step(run.id, step.name, task) is None:
                if spec.has_task:
                    await self.store.enqueue([task])
                moved = True
        return moved

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
