"""The workflow scripts (definitions in the workflows slot; each run in its own slot, docs/adr/
0010) and the reads the advancer and the API need. One method per script; every call is safe
to repeat (each script checks its from-state; a step's task id is derived, ADR 0010).

Only this package imports redis. Knows no Jinja2 and no gRPC.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from appliance.errors import NotFound
from appliance.model import NewTask
from appliance.store import codec
from appliance.store.batching import Pipelines, TaskWrites
from appliance.store.results import Refusal, error, refusal
from appliance.store.store import Store
from appliance.workflows.model import RunRecord, run_from_fields, run_wake

Expected = Sequence[tuple[str, str]]
"""(step, state) pairs a run's steps must be in for a move decided on them (step_schedule)."""


class Finish(NamedTuple):
    """A step's outcome as step_finish.lua takes it."""

    step: str
    succeeded: bool
    text: str  # its output, or why it failed or was skipped
    finished_ms: int  # 0: now
    attempts: int
    steps: Sequence[str]  # every step of the run
    on_failure: str = ""
    skipped: bool = False

    def args(self, store: WorkflowStore) -> list[Any]:
        outcome = "SKIPPED" if self.skipped else "SUCCEEDED" if self.succeeded else "FAILED"
        head = [self.step, outcome, self.text, self.finished_ms, self.attempts]
        return [*head, store.retention_ms, self.on_failure, *self.steps]


class WorkflowStore:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.keys = store.keys.workflows
        self.retention_ms = store.settings.retention_ms
        # a single Redis: a run's key and its steps' topics' keys on one server, so one script
        # may touch both (a hand-off in one round trip, step_hand_off.lua); not a Cluster
        self.one_node = not store.keys.sharded
        # the hand-offs of concurrent runs, gathered into one round trip each (ADR 0010)
        self._hand_offs = Pipelines(lambda build: store.run_many("step_finish", build))
        self._task_writes = TaskWrites(lambda tasks: store.enqueue(tasks, index=False))

    # -- definitions ---------------------------------------------------------------------

    async def put_workflow(self, name: str, definition_json: str) -> int:
        """Store a checked definition as the name's next version; returns the version."""
        k = self.keys
        return int(
            await self.store.run(
                "workflow_put", [k.names, k.versions(name)], [name, definition_json]
            )
        )

    async def workflow(self, name: str, version: int = 0) -> tuple[int, str]:
        """(version, definition JSON): the latest when version is 0 (NotFound if deleted)."""
        k = self.keys
        if version <= 0:
            version = await self.latest_version(name)
        (text,) = await self.store.read("get_workflow", ("hget", k.versions(name), str(version)))
        if text is None:
            raise NotFound(f"no workflow {name!r} version {version}")
        return version, codec.text(text)

    async def workflow_names(self) -> dict[str, int]:
        (names,) = await self.store.read("list_workflows", ("hgetall", self.keys.names))
        return {codec.text(n): int(v) for n, v in names.items()}

    async def delete_workflow(self, name: str) -> None:
        reply = await self.store.run("workflow_delete", [self.keys.names], [name])
        if refusal("workflow_delete", reply) is Refusal.NOT_FOUND:
            raise NotFound(f"no workflow {name!r}")

    # -- runs ----------------------------------------------------------------------------

    async def start_run(
        self,
        run_id: str,
        workflow: str,
        version: int,
        run_input: str,
        steps: Sequence[str],
        start_ms: int = 0,
        scheduled: Sequence[tuple[str, NewTask]] = (),
        now_ms: int = 0,
        look_ms: int = 0,
    ) -> bool:
        """Create the run (True), or find it made before (False). The indexes are written
        first: a crash leaves a run looked at, never one forgotten (ADR 0010). `start_ms`
        (0: now): when its steps without parents are due (a schedule's tick). `scheduled`:
        its first steps (step, task), recorded SCHEDULED with their outbox records by the same
        script (the caller writes their tasks), the run's first look at `look_ms` (a safety
        net: a crash before the tasks were written is caught by it). Without them the new run
        is announced on the workflows channel, so an advancer in any process looks at once.
        `now_ms`: a Redis time the caller read (0: read it here)."""
        now = now_ms or await self.store.now_ms()
        look = look_ms if scheduled and look_ms else now
        await self.store.read(
            "start_run",
            ("zadd", self.keys.runs, {run_id: now}, True),
            # LT: a run that exists keeps an earlier look
            ("zadd", self.keys.due, {run_id: look}, False, False, False, False, False, True),
        )
        key = self.store.keys.run(run_id)
        args = [workflow, version, run_input, start_ms, len(steps), *steps]
        for step, t in scheduled:  # as step_schedule records them
            args += [step, t.id, t.topic, t.payload, t.execute_at_ms, t.max_retries]
        created = int(await self.store.run("run_start", [key], args)) == 1
        if created and not scheduled:
            message = run_wake(run_id)
            channel = self.keys.channel
            await self.store.call("start_run", lambda: self.store.redis.publish(channel, message))
        return created

    async def latest_version(self, name: str) -> int:
        """The workflow's latest version (NotFound if deleted)."""
        (latest,) = await self.store.read("get_workflow", ("hget", self.keys.names, name))
        if latest is None:
            raise NotFound(f"no workflow {name!r}")
        return int(latest)

    async def run_fields(self, run_id: str) -> dict[str, str]:
        (fields,) = await self.store.read("get_run", ("hgetall", self.store.keys.run(run_id)))
        return codec.text_hash(fields)

    async def get_run(self, run_id: str, steps: Sequence[str]) -> RunRecord:
        fields = await self.run_fields(run_id)
        if not fields:
            raise NotFound(f"no run {run_id!r}")
        return run_from_fields(run_id, fields, list(steps))

    async def run_ids(self, offset: int, count: int) -> list[str]:
        """Run ids, newest first (a page of the runs index; ids of expired runs included)."""
        (ids,) = await self.store.read(
            "list_runs", ("zrevrange", self.keys.runs, offset, offset + count - 1)
        )
        return [codec.text(i) for i in ids]

    async def created_ms(self, run_id: str) -> int | None:
        """When StartRun indexed the run (ms), or None."""
        (score,) = await self.store.read("get_run", ("zscore", self.keys.runs, run_id))
        return None if score is None else int(score)

    async def forget_runs(self, run_ids: Sequence[str]) -> None:
        if run_ids:
            await self.store.read("list_runs", ("zrem", self.keys.runs, *run_ids))

    async def cancel_run(self, run_id: str, steps: Sequence[str]) -> list[str]:
        """Cancel the run; the task ids of the steps canceled now (to delete). Canceling a
        canceled run answers []; a finished one is WrongState."""
        key = self.store.keys.run(run_id)
        reply = await self.store.run("run_cancel", [key], [self.retention_ms, *steps])
        why = refusal("run_cancel", reply)
        if why is Refusal.NOT_FOUND:
            raise NotFound(f"no run {run_id!r}")
        if why is Refusal.RUN_FINISHED:
            raise error(why, f"run {run_id!r} has finished ({codec.text(reply[1])})")
        return [codec.text(t) for t in reply[1:]]

    async def signal_run(self, run_id: str, name: str, payload: str) -> bool:
        """Keep a signal for the run: True; False when one of the name came before."""
        reply = await self.store.run("run_signal", [self.store.keys.run(run_id)], [name, payload])
        why = refusal("run_signal", reply)
        if why is Refusal.NOT_FOUND:
            raise NotFound(f"no run {run_id!r}")
        if why is Refusal.RUN_FINISHED:
            raise error(why, f"run {run_id!r} has finished: a signal starts nothing")
        return int(reply) == 1

    # -- advancing -----------------------------------------------------------------------

    async def due_runs(self, now_ms: int, limit: int) -> tuple[list[str], int | None]:
        """Runs due for a look at `now_ms` (up to `limit`), and the next due time after them."""
        due, head = await self.store.read(
            "due_runs",
            ("zrangebyscore", self.keys.due, "-inf", now_ms, 0, limit),
            ("zrange", self.keys.due, 0, 0, "WITHSCORES"),
        )
        return [codec.text(r) for r in due], (int(head[0][1]) if head else None)

    async def look_again(self, run_id: str, at_ms: int | None) -> None:
        """When to look at the run next; None: never (it finished)."""
        if at_ms is None:
            await self.store.read("due_runs", ("zrem", self.keys.due, run_id))
        else:
            await self.store.read("due_runs", ("zadd", self.keys.due, {run_id: at_ms}))

    async def look_again_many(self, looks: dict[str, int | None]) -> None:
        """look_again for many runs in one round trip."""
        later = {run_id: at for run_id, at in looks.items() if at is not None}
        never = [run_id for run_id, at in looks.items() if at is None]
        commands: list[tuple[Any, ...]] = [("zadd", self.keys.due, later)] if later else []
        commands += [("zrem", self.keys.due, *never)] if never else []
        await self.store.read("due_runs", *commands)

    async def schedule_step(
        self, run_id: str, step: str, task: NewTask, expected: Expected = ()
    ) -> Refusal | None:
        """Record the step's task (the outbox); None when scheduled now. `expected`: (step,
        state) pairs the run's steps must be in (else RUN_MOVED, nothing changed)."""
        reply = await self.store.run(
            "step_schedule", [self.store.keys.run(run_id)], _schedule_args(step, task, expected)
        )
        return refusal("step_schedule", reply)

    async def schedule_and_read(
        self, run_id: str, step: str, task: NewTask
    ) -> tuple[Refusal | None, dict[str, str]]:
        """schedule_step's answer and the run's fields after it, in one round trip."""
        reply, fields = await self._run_and_read(
            "step_schedule", run_id, _schedule_args(step, task)
        )
        return refusal("step_schedule", reply), fields

    async def finish_and_schedule(
        self,
        run_id: str,
        finish: Finish,
        ready: Sequence[tuple[str, NewTask]],
        expected: Expected = (),
    ) -> tuple[tuple[str, list[str]] | None, dict[str, str]]:
        """A step's success (`finish`) and the steps it makes ready scheduled (`ready`: step,
        task), then the run read, in one round trip: each script runs after the one before
        on the run's connection and checks its own from-state. `expected`: the steps' states
        the decision was made on, as they are once `finish` is recorded (a ready step is
        scheduled only while the run is still so). (finish_step's answer, the run's fields
        after: which ready steps are SCHEDULED is read there, not from the scripts' answers,
        which a replay after NOSCRIPT would make 'already done')."""
        key = self.store.keys.run(run_id)

        def build(pipe: Any) -> None:
            self.store.scripts.queue(pipe, "step_finish", [key], finish.args(self))
            states = dict(expected)
            for name, task in ready:
                args = _schedule_args(name, task, list(states.items()))
                self.store.scripts.queue(pipe, "step_schedule", [key], args)
                if name in states:  # as the next one expects it, once this one is scheduled
                    states[name] = "SCHEDULED"
            pipe.hgetall(key)

        # with the hand-offs of other runs under way (each script in its run's slot)
        reply, *_, raw = await self._hand_offs.run(build, len(ready) + 2)
        return _finished(reply), codec.text_hash(raw)

    async def hand_off(
        self,
        run_id: str,
        finish: Finish,
        ready: Sequence[tuple[str, NewTask]],
        expected: Expected = (),
    ) -> tuple[tuple[str, list[str]] | None, dict[str, str]]:
        """finish_and_schedule, and the tasks of the ready steps scheduled now written, in one
        script (step_hand_off.lua): one round trip for the whole hand-off where the run's key
        and the topics' keys are on one Redis (`one_node`); a Redis Cluster must take
        finish_and_schedule, then write_tasks. The same answer as finish_and_schedule."""
        store = self.store
        await store.admit_topics(list({task.topic for _, task in ready if task.id}))
        keys = [store.keys.run(run_id)]
        args: list[Any] = [store.keys.wake_channel, self.retention_ms, finish.step, finish.text]
        args += [finish.finished_ms, finish.attempts, finish.on_failure]
        args += [len(finish.steps), *finish.steps]
        for name, task in ready:  # a step without a task (a signal): the run's key, untouched
            tk = store.keys.topic(task.topic) if task.id else None
            keys += [tk.pending, tk.new] if tk else [keys[0], keys[0]]
            args += [*_schedule_args(name, task), tk.task_prefix if tk else ""]
        args += [x for pair in expected for x in pair]

        def build(pipe: Any) -> None:
            store.scripts.queue(pipe, "step_hand_off", keys, args)

        ((reply, _, raw),) = await self._hand_offs.run(build, 1)
        return _finished(reply), codec.text_pairs(raw)

    async def settle(self) -> None:
        """Until the hand-offs' batches under way are answered."""
        await self._hand_offs.settle()
        await self._task_writes.settle()

    async def write_tasks(self, tasks: Sequence[NewTask]) -> None:
        """Write steps' tasks from their outbox records (the ids derived: a repeat writes
        nothing), with those of other runs' hand-offs under way in one enqueue call."""
        await self._task_writes.write(tasks)

    async def step_running(self, run_id: str, step: str, attempts: int) -> dict[str, str]:
        """Record the step's task as leased; the run's fields afterwards (read in the same
        round trip)."""
        _, fields = await self._run_and_read("step_running", run_id, [step, attempts])
        return fields

    async def _run_and_read(
        self, script: str, run_id: str, args: Sequence[Any]
    ) -> tuple[Any, dict[str, str]]:
        """A run script and a read of the run after it, pipelined (one round trip; the read
        follows the script on the run's connection, so it sees its change)."""
        key = self.store.keys.run(run_id)

        def build(pipe: Any) -> None:
            self.store.scripts.queue(pipe, script, [key], args)
            pipe.hgetall(key)

        reply, fields = await self.store.run_many(script, build)
        return reply, codec.text_hash(fields)

    async def finish_step(
        self,
        run_id: str,
        step: str,
        succeeded: bool,
        text: str,
        finished_ms: int,
        attempts: int,
        steps: Sequence[str],
        on_failure: str = "",
        skipped: bool = False,
    ) -> tuple[str, list[str]] | None:
        """Record a step's outcome: (the run's state, ids of tasks of steps canceled now), or
        None when the step had finished already (nothing changed). `skipped`: its `when` was
        false or a parent was skipped (`text` says which)."""
        finish = Finish(step, succeeded, text, finished_ms, attempts, steps, on_failure, skipped)
        return (await self.finish_and_read(run_id, finish))[0]

    async def finish_and_read(
        self, run_id: str, finish: Finish
    ) -> tuple[tuple[str, list[str]] | None, dict[str, str]]:
        """finish_step's answer and the run's fields after it, in one round trip."""
        reply, fields = await self._run_and_read("step_finish", run_id, finish.args(self))
        return _finished(reply), fields

    async def run_and_tasks(
        self, run_id: str, refs: Sequence[tuple[str, str]]
    ) -> tuple[dict[str, str], list[dict[str, str] | None]]:
        """The run's fields and its step tasks (as `tasks`), in one round trip."""
        commands = [("hgetall", self.store.keys.run(run_id)), *self._task_reads(refs)]
        replies = await self.store.read("get_run", *commands)
        fields = codec.text_hash(replies[0])
        return fields, self._tasks_found(replies[1:])

    async def tasks(self, refs: Sequence[tuple[str, str]]) -> list[dict[str, str] | None]:
        """Per (topic, task id): the task record's state, attempt, result, err and finished
        fields; {'state': 'PENDING'} for a task never leased; None when there is none."""
        commands = self._task_reads(refs)
        return self._tasks_found(await self.store.read("step_tasks", *commands) if refs else [])

    def _task_reads(self, refs: Sequence[tuple[str, str]]) -> list[tuple[Any, ...]]:
        commands: list[tuple[Any, ...]] = []
        for topic, task_id in refs:
            tk = self.store.keys.topic(topic)
            commands.append(("hmget", tk.task(task_id), *TASK_FIELDS))
            commands.append(("hexists", tk.new, task_id))
        return commands

    @staticmethod
    def _tasks_found(replies: Sequence[Any]) -> list[dict[str, str] | None]:
        found: list[dict[str, str] | None] = []
        for n in range(len(replies) // 2):
            fields, new = replies[2 * n], replies[2 * n + 1]
            if fields[0] is not None:
                pairs = zip(TASK_FIELDS, fields, strict=True)
                found.append({k: codec.text(v) for k, v in pairs if v})
            else:
                found.append({"state": "PENDING"} if new else None)
        return found


TASK_FIELDS = ("state", "attempt", "result", "err", "finished")


def _finished(reply: Any) -> tuple[str, list[str]] | None:
    """step_finish's answer: (the run's state, tasks of steps canceled now); None: refused."""
    if refusal("step_finish", reply) is not None:
        return None
    return codec.text(reply[1]), [codec.text(t) for t in reply[2:]]


def _schedule_args(step: str, task: NewTask, expected: Expected = ()) -> list[Any]:
    head = [step, task.id, task.topic, task.payload, task.execute_at_ms, task.max_retries]
    return [*head, *(x for pair in expected for x in pair)]
