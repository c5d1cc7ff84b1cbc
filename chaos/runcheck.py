"""The workflow checker: for every run a chaos scenario started (the run producer's log), its
final GetRun (read after the faults healed and the runs settled) and the executions of its step
tasks (`wf:<run>:<step>`, the recording workers' logs), verifies, against the workflow's
definition:

1. run-ends      every started run ends SUCCEEDED, FAILED or CANCELED with no step left open,
                 and its state agrees with its steps (SUCCEEDED: none failed; FAILED: the step
                 its error names failed); an accepted CancelRun ends it CANCELED.
2. step-order    no step's task is leased before its parents finished (all of them, or one
                 with `after_any`), by the run's record and by the parents' accepted Acks;
                 a step whose parents did not succeed never runs.
3. parents-delay no step's task is leased (nor due) before its parents' finish plus its delay
                 (a signal step's deadline: its wait's start plus its timeout).
4. step-once     every step exactly once to success as far as the run is concerned: its task
                 created once (one first attempt), at most one accepted Ack, and a SUCCEEDED
                 step's output and attempts are those of the execution whose Ack the queue
                 accepted (the workers ack with the lease token as the result); no task for a
                 step that was never scheduled; a task step cannot succeed without running.
5. on-failure    the on_failure step runs exactly when a step failed the run (after that
                 step finished), else it is SKIPPED (CANCELED with the run) and never runs.
6. cancel-quiet  a canceled run starts nothing new: no step's task is first leased after a
                 CancelRun was answered (ok, or "canceled before": a retry), and no task runs
                 for a step the run never scheduled (WAITING when the run was canceled or
                 failed). A step scheduled before may still be leased in the moment between
                 the cancel (run slot) and its task's delete (topic slot): it may finish.
7. signal-once   a signal step succeeds only with a signal that arrived (its finish time, the
                 Redis clock of run_signal) by its deadline, inside one of the SignalRun calls
                 sent (a call retried after a lost answer may have landed, whatever its last
                 answer), with that signal's payload; it times out only when no signal was
                 there (a call answered kept or "came before") before its deadline.

Pure: no processes, no network. Stdlib only (plus chaos.history and chaos.checker's Violation);
imports nothing of atp.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from chaos.checker import Findings, Violation
from chaos.history import OK, REPEAT, WRONG_STATE, Execution, History, RunCall

RUN_ENDS, STEP_ORDER, PARENTS_DELAY = "run-ends", "step-order", "parents-delay"
STEP_ONCE, ON_FAILURE, CANCEL_QUIET, SIGNAL_ONCE = (
    "step-once",
    "on-failure",
    "cancel-quiet",
    "signal-once",
)
RUN_INVARIANTS = (
    RUN_ENDS,
    STEP_ORDER,
    PARENTS_DELAY,
    STEP_ONCE,
    ON_FAILURE,
    CANCEL_QUIET,
    SIGNAL_ONCE,
)
RUN_FINAL = frozenset({"SUCCEEDED", "FAILED", "CANCELED"})
STEP_OPEN = frozenset({"WAITING", "SCHEDULED", "RUNNING"})
MISSING = "MISSING"  # GetRun answered NOT_FOUND


# -- the definitions, as the checker needs them -------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class StepSpec:
    name: str
    topic: str = ""  # '' for a signal step
    payload: str = ""
    after: tuple[str, ...] = ()
    after_any: bool = False
    delay_ms: int = 0
    on_failure: bool = False
    signal: str = ""
    timeout_ms: int = 0

    @property
    def has_task(self) -> bool:
        return not self.signal


@dataclasses.dataclass(frozen=True, slots=True)
class FlowSpec:
    name: str
    steps: tuple[StepSpec, ...]

    def step(self, name: str) -> StepSpec:
        return next(s for s in self.steps if s.name == name)

    @property
    def on_failure(self) -> str:
        return next((s.name for s in self.steps if s.on_failure), "")


# -- the final state of the runs ----------------------------------------------------------


@dataclasses.dataclass(slots=True)
class FinalStep:
    name: str
    state: str  # a StepState name without its prefix
    task_id: str = ""
    attempts: int = 0
    output: str = ""
    error: str = ""
    started_ms: int = 0
    finished_ms: int = 0
    due_ms: int = 0


@dataclasses.dataclass(slots=True)
class FinalRun:
    id: str
    workflow: str
    state: str  # a RunState name without its prefix, or MISSING
    steps: list[FinalStep] = dataclasses.field(default_factory=list)
    created_ms: int = 0
    finished_ms: int = 0
    error: str = ""

    def step(self, name: str) -> FinalStep | None:
        return next((s for s in self.steps if s.name == name), None)

    @property
    def settled(self) -> bool:
        """Finished, with every step's outcome recorded (nothing left to look at)."""
        return self.state in RUN_FINAL and not any(s.state in STEP_OPEN for s in self.steps)


@dataclasses.dataclass(slots=True)
class RunsFinal:
    """What runs.json holds: the definitions the runs used and every run's GetRun."""

    flows: dict[str, FlowSpec] = dataclasses.field(default_factory=dict)
    runs: dict[str, FinalRun] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunsFinal:
        flows = {
            name: FlowSpec(
                f["name"],
                tuple(StepSpec(**{**s, "after": tuple(s.get("after", ()))}) for s in f["steps"]),
            )
            for name, f in data.get("flows", {}).items()
        }
        runs = {
            rid: FinalRun(**{**r, "steps": [FinalStep(**s) for s in r.get("steps", [])]})
            for rid, r in data.get("runs", {}).items()
        }
        return cls(flows, runs)


# -- the verdict --------------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class RunCounts:
    runs: int = 0
    succeeded: int = 0
    failed: int = 0
    canceled: int = 0
    unsettled: int = 0  # missing, or not finished after the wait
    steps: int = 0  # step outcomes recorded (SUCCEEDED or FAILED)
    step_tasks: int = 0  # step tasks some worker ran
    executions: int = 0  # deliveries of step tasks
    reruns: int = 0  # deliveries beyond one per step task (retries, expired leases)
    on_failure_ran: int = 0
    signals_in_time: int = 0  # timed signal steps that succeeded (arrival by the deadline)
    signals_late: int = 0  # ... that timed out, their signal sent after the deadline
    signals_racing: int = 0  # ... that timed out, their signal sent before and answered after
    timeouts: int = 0  # timed signal steps that timed out (with a signal or none)
    server_kills: int = 0


@dataclasses.dataclass(slots=True)
class RunVerdict(Findings):
    counts: RunCounts
    violations: list[Violation]


def step_task(run_id: str, step: str) -> str:
    return f"wf:{run_id}:{step}"


def check_runs(history: History, final: RunsFinal) -> RunVerdict:
    counts = RunCounts(runs=len(history.runs), server_kills=len(history.server_kills))
    found: list[Violation] = []
    by_task = history.by_task()
    for run_id in sorted(history.runs):
        fr = final.runs.get(run_id)
        if fr is None or fr.state == MISSING:
            counts.unsettled += 1
            found.append(Violation(RUN_ENDS, run_id, "started, but GetRun finds no such run"))
            continue
        flow = final.flows.get(fr.workflow)
        if flow is None:
            found.append(Violation(RUN_ENDS, run_id, f"unknown workflow {fr.workflow!r}"))
            continue
        runs = {s.name: by_task.get(step_task(run_id, s.name), []) for s in flow.steps}
        calls = history.run_calls.get(run_id, [])
        _count(fr, flow, runs, counts)
        RunCheck(fr, flow, runs, calls, found).all()
    signal_timing(history, final, counts)
    return RunVerdict(counts, found)


def _count(
    fr: FinalRun, flow: FlowSpec, runs: dict[str, list[Execution]], counts: RunCounts
) -> None:
    counts.succeeded += fr.state == "SUCCEEDED"
    counts.failed += fr.state == "FAILED"
    counts.canceled += fr.state == "CANCELED"
    counts.unsettled += not fr.settled
    counts.steps += sum(1 for s in fr.steps if s.state in ("SUCCEEDED", "FAILED"))
    counts.step_tasks += sum(1 for r in runs.values() if r)
    counts.executions += sum(len(r) for r in runs.values())
    counts.reruns += sum(max(len(r) - 1, 0) for r in runs.values())
    if flow.on_failure:
        counts.on_failure_ran += bool(runs[flow.on_failure])


class RunCheck:
    """The checks of one run (each method one invariant)."""

    def __init__(
        self,
        fr: FinalRun,
        flow: FlowSpec,
        runs: dict[str, list[Execution]],
        calls: list[RunCall],
        found: list[Violation],
    ) -> None:
        self.fr = fr
        self.flow = flow
        self.runs = runs  # step -> its task's executions, in lease order
        self.calls = calls
        self.found = found

    def all(self) -> None:
        self.run_ends()
        self.step_once()
        self.order_and_delay()
        self.on_failure()
        self.cancel_quiet()
        self.signals()

    def flag(self, invariant: str, detail: str) -> None:
        self.found.append(Violation(invariant, self.fr.id, detail))

    def state(self, step: str) -> str:
        s = self.fr.step(step)
        return s.state if s is not None else MISSING

    def first_claim(self, step: str) -> Execution | None:
        runs = self.runs.get(step, [])
        return min(runs, key=lambda e: e.claim_ms) if runs else None

    def failed_steps(self) -> list[str]:
        return [
            s.name for s in self.fr.steps if s.state == "FAILED" and s.name != self.flow.on_failure
        ]

    # -- 1. run-ends ---------------------------------------------------------------------

    def run_ends(self) -> None:
        fr = self.fr
        if fr.state not in RUN_FINAL:
            self.flag(RUN_ENDS, f"still {fr.state} after the runs settled")
        for s in fr.steps:
            if fr.state in RUN_FINAL and s.state in STEP_OPEN:
                self.flag(RUN_ENDS, f"step {s.name} still {s.state} in a {fr.state} run")
        failed = self.failed_steps()
        if fr.state == "SUCCEEDED":
            bad = [s.name for s in fr.steps if s.state not in ("SUCCEEDED", "SKIPPED")]
            if bad:
                self.flag(RUN_ENDS, f"SUCCEEDED with steps {bad} not succeeded")
        if fr.state == "FAILED":
            if not failed:
                self.flag(RUN_ENDS, "FAILED, but no step failed")
            elif fr.error.split(":", 1)[0] not in failed:
                self.flag(RUN_ENDS, f"FAILED with error {fr.error!r}, failed steps {failed}")
        cancels = [c for c in self.calls if c.kind == "cancel"]
        if any(c.result == OK for c in cancels) and fr.state != "CANCELED":
            self.flag(RUN_ENDS, f"a CancelRun was accepted, the run ends {fr.state}")
        if any(c.result == WRONG_STATE for c in cancels) and fr.state == "CANCELED":
            self.flag(RUN_ENDS, "a CancelRun was refused (finished), the run ends CANCELED")

    # -- 4. step-once --------------------------------------------------------------------

    def step_once(self) -> None:
        for spec in self.flow.steps:
            runs = self.runs[spec.name]
            state = self.state(spec.name)
            firsts = [e for e in runs if e.attempt == 1]
            if len(firsts) > 1:
                self.flag(STEP_ONCE, f"step {spec.name}: its task created {len(firsts)} times")
            acked = [e for e in runs if _ack_accepted(e)]
            if len(acked) > 1:
                self.flag(STEP_ONCE, f"step {spec.name}: {len(acked)} Acks accepted")
            if runs and state in ("WAITING", "SKIPPED", MISSING):
                self.flag(STEP_ONCE, f"step {spec.name} ran ({len(runs)} times), but is {state}")
            if acked and state != "SUCCEEDED":
                allowed = self.fr.state in ("CANCELED", "FAILED") and state == "CANCELED"
                if not allowed:
                    self.flag(STEP_ONCE, f"step {spec.name}: its Ack was accepted, it is {state}")
            if state == "SUCCEEDED" and spec.has_task:
                self._succeeded_once(spec.name, runs, acked)

    def _succeeded_once(self, step: str, runs: list[Execution], acked: list[Execution]) -> None:
        """The run's record of a SUCCEEDED step names the execution the queue counted."""
        fs = self.fr.step(step)
        assert fs is not None
        if not runs:
            self.flag(STEP_ONCE, f"step {step} SUCCEEDED, but no worker ever ran its task")
            return
        named = [e for e in runs if e.token == fs.output]
        if not named:
            self.flag(STEP_ONCE, f"step {step}: output {fs.output[:80]!r} is no execution's")
            return
        e = named[0]
        if acked and acked[0] is not e:
            self.flag(
                STEP_ONCE,
                f"step {step}: the run kept attempt {e.attempt}'s output, the queue accepted"
                f" attempt {acked[0].attempt}'s Ack",
            )
        if fs.attempts != e.attempt:
            self.flag(
                STEP_ONCE,
                f"step {step}: the run records {fs.attempts} attempt(s), its output is attempt"
                f" {e.attempt}'s",
            )

    # -- 2. step-order and 3. parents-delay ----------------------------------------------

    def order_and_delay(self) -> None:
        for spec in self.flow.steps:
            fs = self.fr.step(spec.name)
            first = self.first_claim(spec.name)
            if fs is None or (first is None and fs.state not in ("SUCCEEDED", "FAILED")):
                continue  # never ran and never finished: nothing to order
            base = self._wait_began(spec, first is not None)
            if base is None:
                continue
            floor = base + spec.delay_ms
            if first is not None:
                if first.claim_ms < base:
                    self.flag(
                        STEP_ORDER,
                        f"step {spec.name} leased at {first.claim_ms}, {base - first.claim_ms} ms"
                        " before its parents finished",
                    )
                elif first.claim_ms < floor:
                    self.flag(
                        PARENTS_DELAY,
                        f"step {spec.name} leased at {first.claim_ms}, {floor - first.claim_ms}"
                        f" ms before its parents' finish + {spec.delay_ms} ms",
                    )
                self._after_parent_acks(spec, first)
            if fs.due_ms and fs.due_ms < floor + spec.timeout_ms:
                self.flag(
                    PARENTS_DELAY,
                    f"step {spec.name} due at {fs.due_ms}, before its parents' finish + delay"
                    f" + timeout ({floor + spec.timeout_ms})",
                )

    def _wait_began(self, spec: StepSpec, ran: bool) -> int | None:
        """When the step's wait began (its parents' finish), by the run's record; None when it
        should never have started (flagged if it ran)."""
        fr = self.fr
        if spec.on_failure:
            failed = [fr.step(n) for n in self.failed_steps()]
            ends = [f.finished_ms for f in failed if f is not None]
            if not ends:
                return None  # on-failure checks this one
            return min(ends)
        if not spec.after:
            return fr.created_ms
        parents = [(p, fr.step(p)) for p in spec.after]
        done = [(p, f) for p, f in parents if f is not None and f.state == "SUCCEEDED"]
        if not (done if spec.after_any else len(done) == len(parents)):
            if ran:
                states = {p: (f.state if f else MISSING) for p, f in parents}
                self.flag(STEP_ORDER, f"step {spec.name} ran though its parents ended {states}")
            return None
        ends = [f.finished_ms for _, f in done]
        return min(ends) if spec.after_any else max(ends)

    def _after_parent_acks(self, spec: StepSpec, first: Execution) -> None:
        """From the history alone: a parent's task finishes no sooner than its accepted Ack was
        first sent, so a child leased before that of every parent (one, for after_any) was
        early, whatever the run's record says."""
        sent = []
        for p in spec.after:
            acked = [e for e in self.runs.get(p, []) if _ack_accepted(e)]
            first_sent = [e.first_sent("ack") for e in acked]
            sent += [s for s in first_sent if s is not None]
        if not sent or (not spec.after_any and len(sent) < len(spec.after)):
            return  # a parent without a recorded Ack (a signal, a killed worker): no bound
        earliest_finish = min(sent) if spec.after_any else max(sent)
        if first.claim_ms < earliest_finish:
            self.flag(
                STEP_ORDER,
                f"step {spec.name} leased at {first.claim_ms}, before its parents' Acks were"
                f" sent ({earliest_finish})",
            )

    # -- 5. on-failure -------------------------------------------------------------------

    def on_failure(self) -> None:
        name = self.flow.on_failure
        if not name:
            return
        state, ran = self.state(name), bool(self.runs[name])
        failed = self.failed_steps()
        if self.fr.state == "CANCELED" and not failed:
            if ran:
                self.flag(ON_FAILURE, f"{name} ran in a canceled run where no step failed")
            return
        if failed:
            if state not in ("SUCCEEDED", "FAILED") and self.fr.state != "CANCELED":
                self.flag(ON_FAILURE, f"steps {failed} failed, but {name} is {state}")
            if self.flow.step(name).has_task and state in ("SUCCEEDED", "FAILED") and not ran:
                self.flag(ON_FAILURE, f"{name} is {state}, but no worker ran it")
            if self.fr.state not in ("FAILED", "CANCELED"):
                self.flag(ON_FAILURE, f"steps {failed} failed, the run ends {self.fr.state}")
        else:
            if ran or state not in ("SKIPPED", "CANCELED"):
                how = f"ran {len(self.runs[name])} time(s)" if ran else f"is {state}"
                self.flag(ON_FAILURE, f"no step failed, but {name} {how}")

    # -- 6. cancel-quiet -----------------------------------------------------------------

    def cancel_quiet(self) -> None:
        # Answered ok, or "canceled before" (a retry): by then the run's pending step tasks
        # were deleted (CancelRun looks at the run first, which deletes them again).
        cancels = [c.done_ms for c in self.calls if c.kind == "cancel" and c.result in (OK, REPEAT)]
        for spec in self.flow.steps:
            fs, first = self.fr.step(spec.name), self.first_claim(spec.name)
            if first is None or fs is None:
                continue
            if not fs.task_id:
                self.flag(
                    CANCEL_QUIET,
                    f"step {spec.name} ({fs.state}) was never scheduled, yet its task ran",
                )
            if first.attempt == 1 and cancels and first.claim_ms > min(cancels):
                self.flag(
                    CANCEL_QUIET,
                    f"step {spec.name} first leased at {first.claim_ms}, after a CancelRun was"
                    f" answered at {min(cancels)}",
                )

    # -- 7. signal-once ------------------------------------------------------------------

    def signals(self) -> None:
        for spec in self.flow.steps:
            fs = self.fr.step(spec.name)
            if not spec.signal or fs is None or fs.state not in ("SUCCEEDED", "FAILED"):
                continue
            sent = [c for c in self.calls if c.kind == "signal" and c.name == spec.signal]
            # May have landed: answered kept or repeat, failed, or retried (an earlier try
            # landed and its answer was lost, the last answer "finished" or anything else).
            tried = [c for c in sent if c.result in (OK, REPEAT) or not _final_first(c)]
            kept = [c for c in sent if c.result in (OK, REPEAT)]  # a signal there by done_ms
            due = fs.due_ms if spec.timeout_ms else None
            if fs.state == "SUCCEEDED":
                if not tried:
                    self.flag(SIGNAL_ONCE, f"step {spec.name} SUCCEEDED with no signal sent")
                elif due is not None and min(c.sent_ms for c in tried) > due:
                    self.flag(
                        SIGNAL_ONCE,
                        f"step {spec.name} SUCCEEDED though every {spec.signal!r} was sent after"
                        f" its deadline {due}",
                    )
                elif due is not None and fs.finished_ms > due:
                    self.flag(
                        SIGNAL_ONCE,
                        f"step {spec.name} SUCCEEDED with its signal's arrival {fs.finished_ms}"
                        f" after its deadline {due}",
                    )
                elif not any(c.sent_ms <= fs.finished_ms <= c.done_ms for c in tried):
                    self.flag(
                        SIGNAL_ONCE,
                        f"step {spec.name}: its signal's arrival {fs.finished_ms} is inside no"
                        f" SignalRun call",
                    )
                payloads = {c.payload for c in ([c for c in kept if c.result == OK] or tried)}
                if tried and fs.output not in payloads:
                    self.flag(
                        SIGNAL_ONCE,
                        f"step {spec.name}: output {fs.output[:80]!r} is not the kept signal's",
                    )
            elif due is not None and any(c.done_ms < due for c in kept):
                first = min(c.done_ms for c in kept)
                self.flag(
                    SIGNAL_ONCE,
                    f"step {spec.name} timed out at {due} though {spec.signal!r} was kept by"
                    f" {first}",
                )


def signal_timing(history: History, final: RunsFinal, counts: RunCounts) -> None:
    """Count how each timed signal step ended against its deadline: succeeded (its arrival, the
    step's finish, was checked against the deadline), timed out with its kept signal sent after
    the deadline (late), or timed out with it sent before and answered after the deadline
    (racing: its arrival is not visible from outside, so either outcome is right)."""
    for run_id, fr in final.runs.items():
        flow = final.flows.get(fr.workflow)
        if flow is None:
            continue
        for spec in flow.steps:
            fs = fr.step(spec.name)
            if not spec.signal or not spec.timeout_ms or fs is None:
                continue
            counts.signals_in_time += fs.state == "SUCCEEDED"
            if fs.state != "FAILED":
                continue
            counts.timeouts += 1
            kept = [
                c
                for c in history.run_calls.get(run_id, [])
                if c.kind == "signal" and c.name == spec.signal and c.result == OK
            ]
            if kept and kept[0].sent_ms > fs.due_ms:
                counts.signals_late += 1
            elif kept and kept[0].done_ms >= fs.due_ms:
                counts.signals_racing += 1


def _final_first(c: RunCall) -> bool:
    """The call's first try was answered (refused): it changed nothing."""
    return c.attempts == 1 and not c.result.startswith("error:")


def _ack_accepted(e: Execution) -> bool:
    return any(c.kind == "ack" and c.accepted for c in e.calls)


def describe_run(run_id: str, history: History, final: RunsFinal) -> str:
    """A run's whole recorded history, for a failure report."""
    lines = [f"run {run_id}"]
    started = history.runs.get(run_id)
    if started is not None:
        lines.append(
            f"  start    {started.workflow} sent={started.sent_ms} acked={started.acked_ms}"
        )
    for c in history.run_calls.get(run_id, []):
        extra = f" {c.name}={c.payload!r}" if c.kind == "signal" else ""
        lines.append(f"  {c.kind:<8} sent={c.sent_ms} done={c.done_ms} {c.result}{extra}")
    fr = final.runs.get(run_id)
    if fr is not None:
        lines.append(
            f"  final    {fr.state} created={fr.created_ms} finished={fr.finished_ms}"
            f" error={fr.error[:100]!r}"
        )
        by_task = history.by_task()
        for s in fr.steps:
            lines.append(
                f"    {s.name:<12} {s.state:<9} att={s.attempts} due={s.due_ms}"
                f" started={s.started_ms} finished={s.finished_ms} out={s.output[:40]!r}"
                f" err={s.error[:60]!r}"
            )
            for e in by_task.get(step_task(run_id, s.name), []):
                calls = " ".join(f"{c.kind}@{c.sent_ms}:{c.result}" for c in e.calls)
                lines.append(
                    f"      lease attempt={e.attempt} {e.worker} token={e.token} claim={e.claim_ms}"
                    f" start={e.start_ms} end={e.end_ms} {e.outcome or '-'} {calls}"
                )
    return "\n".join(lines)


def run_failure_report(
    verdict: RunVerdict, history: History, final: RunsFinal, limit: int = 10
) -> str:
    lines = [f"{len(verdict.violations)} workflow invariant violation(s):"]
    lines += [f"  [{v.invariant}] {v.task}: {v.detail}" for v in verdict.violations[:200]]
    offending = verdict.offending()
    lines.append(f"offending runs ({len(offending)}): {' '.join(offending)}")
    lines += [describe_run(r, history, final) for r in offending[:limit]]
    return "\n".join(lines)


def flows_by_name(flows: Iterable[FlowSpec]) -> dict[str, FlowSpec]:
    return {f.name: f for f in flows}
