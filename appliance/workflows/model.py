"""The workflow run and step lifecycles, written once: states, named groups, the allowed moves
(each with the Lua script that makes it), and the records the store returns.

Stdlib only; of atp it imports only the lifecycle table's type (appliance/model.py).
docs/adr/0010-workflows.md explains the design.
"""

from __future__ import annotations

import dataclasses
import enum

from appliance.model import Transition


class RunState(enum.StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"


class StepState(enum.StrEnum):
    WAITING = "WAITING"
    SCHEDULED = "SCHEDULED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"
    CANCELED = "CANCELED"


RUN_ACTIVE = frozenset({RunState.PENDING, RunState.RUNNING})
"""Runs an advancer still moves on; the others are finished (kept for retention)."""

STEP_OPEN = frozenset({StepState.WAITING, StepState.SCHEDULED, StepState.RUNNING})
"""Steps not finished yet."""

STEP_HAS_TASK = frozenset({StepState.SCHEDULED, StepState.RUNNING})
"""Steps whose task exists (or is about to: the outbox record is written first)."""


R, S = RunState, StepState
RUN_TRANSITIONS: tuple[Transition[RunState], ...] = (
    # StartRun: a new run waits for its first step to be scheduled, or has them scheduled.
    Transition(None, R.PENDING, "run_start"),
    Transition(None, R.RUNNING, "run_start"),
    # The first step is scheduled.
    Transition(R.PENDING, R.RUNNING, "step_schedule"),
    # The last step succeeded.
    Transition(R.RUNNING, R.SUCCEEDED, "step_finish"),
    # A step failed (its task dead-lettered or was deleted, or its template failed).
    Transition(R.PENDING, R.FAILED, "step_finish"),
    Transition(R.RUNNING, R.FAILED, "step_finish"),
    # CancelRun.
    Transition(R.PENDING, R.CANCELED, "run_cancel"),
    Transition(R.RUNNING, R.CANCELED, "run_cancel"),
)

STEP_TRANSITIONS: tuple[Transition[StepState], ...] = (
    # StartRun: every step waits for its parents; those without are scheduled at once.
    Transition(None, S.WAITING, "run_start"),
    Transition(None, S.SCHEDULED, "run_start"),
    # Its parents finished: its task is recorded (the outbox), then written, due after the delay.
    Transition(S.WAITING, S.SCHEDULED, "step_schedule"),
    # Its task was leased by a worker (or leased again: attempts updated).
    Transition(S.SCHEDULED, S.RUNNING, "step_running"),
    Transition(S.RUNNING, S.RUNNING, "step_running"),
    # Its task was acked: the result is the step's output (a signal step: the signal came,
    # its payload is the output; or no signal by its timeout: FAILED).
    Transition(S.SCHEDULED, S.SUCCEEDED, "step_finish"),
    Transition(S.RUNNING, S.SUCCEEDED, "step_finish"),
    # Its task dead-lettered or was deleted; or its payload template failed to render.
    Transition(S.SCHEDULED, S.FAILED, "step_finish"),
    Transition(S.RUNNING, S.FAILED, "step_finish"),
    Transition(S.WAITING, S.FAILED, "step_finish"),
    # Another step failed the run: what waited is skipped, what was scheduled is canceled; or
    # the run succeeded: its on_failure step is skipped.
    Transition(S.WAITING, S.SKIPPED, "step_finish"),
    Transition(S.SCHEDULED, S.CANCELED, "step_finish"),
    # CancelRun: what waited or was scheduled is canceled (a RUNNING step may finish).
    Transition(S.WAITING, S.CANCELED, "run_cancel"),
    Transition(S.SCHEDULED, S.CANCELED, "run_cancel"),
)


def step_task_id(run_id: str, step: str) -> str:
    """The one id a step's task can have: writing it twice makes one task (ADR 0010)."""
    return f"wf:{run_id}:{step}"


def run_of_task(task_id: str) -> str | None:
    """The run a step task's id names, or None for any other task."""
    mark, run_id, step = [*task_id.split(":", 2), "", ""][:3]
    return run_id if mark == "wf" and run_id and step else None


def run_wake(run_id: str) -> str:
    """The workflows channel's message announcing a new run (run_of_message reads it)."""
    return f"run:{run_id}"


def run_of_message(name: str) -> str | None:
    """The run a workflows channel message names: a step task's id (ack.lua) or run_wake's."""
    mark, _, run_id = name.partition(":")
    return run_id if mark == "run" and run_id else run_of_task(name)


@dataclasses.dataclass(frozen=True, slots=True)
class StepRecord:
    name: str
    state: StepState
    task_id: str = ""
    attempts: int = 0
    output: str = ""
    error: str = ""
    started_ms: int = 0
    finished_ms: int = 0
    due_ms: int = 0
    topic: str = ""  # the outbox record: what its task is (SCHEDULED and later)
    payload: str = ""
    max_retries: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class RunRecord:
    id: str
    workflow: str
    version: int
    state: RunState
    input: str
    created_ms: int
    finished_ms: int
    error: str
    steps: tuple[StepRecord, ...]
    failed: str = ""  # the step that failed the run (its on_failure step runs)
    signals: dict[str, tuple[int, str]] = dataclasses.field(default_factory=dict)  # at, payload

    def step(self, name: str) -> StepRecord:
        return next(s for s in self.steps if s.name == name)


def run_from_fields(run_id: str, fields: dict[str, str], step_names: list[str]) -> RunRecord:
    """A run from its HASH (decoded), its steps in definition order."""

    def num(key: str) -> int:
        return int(fields.get(key) or 0)

    steps = tuple(
        StepRecord(
            name=n,
            state=StepState(fields.get(f"{n}:state", "WAITING")),
            task_id=fields.get(f"{n}:task", ""),
            attempts=num(f"{n}:att"),
            output=fields.get(f"{n}:out", ""),
            error=fields.get(f"{n}:err", ""),
            started_ms=num(f"{n}:start"),
            finished_ms=num(f"{n}:end"),
            due_ms=num(f"{n}:due"),
            topic=fields.get(f"{n}:topic", ""),
            payload=fields.get(f"{n}:payload", ""),
            max_retries=num(f"{n}:maxr"),
        )
        for n in step_names
    )
    return RunRecord(
        id=run_id,
        workflow=fields.get("wf", ""),
        version=num("ver"),
        state=RunState(fields["state"]),
        input=fields.get("input", ""),
        created_ms=num("created"),
        finished_ms=num("finished"),
        error=fields.get("error", ""),
        steps=steps,
        failed=fields.get("failed", ""),
        signals={
            k.removeprefix("signal:"): (num("signal_at:" + k.removeprefix("signal:")), v)
            for k, v in fields.items()
            if k.startswith("signal:")
        },
    )
