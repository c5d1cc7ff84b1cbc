"""The workflow checker (chaos/runcheck.py) on hand-made histories: a clean run of each chaos
workflow passes, and a history that breaks each rule (run ends, step order, parents + delay,
exactly once to success, on_failure, canceled runs start nothing, a signal and its timeout) is
caught with the run's id. Pure: no processes, no network."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from chaos.checker import FinalState
from chaos.checker import main as checker_main
from chaos.flows import DIAMOND, FLOWS, ORDER, ORDER_TIMEOUT_MS, WF_TOPIC
from chaos.history import (
    OK,
    REPEAT,
    STALE,
    WRONG_STATE,
    Call,
    Execution,
    History,
    LogWriter,
    RunCall,
    RunStarted,
    load_history,
)
from chaos.runcheck import (
    CANCEL_QUIET,
    ON_FAILURE,
    PARENTS_DELAY,
    RUN_ENDS,
    SIGNAL_ONCE,
    STEP_ONCE,
    STEP_ORDER,
    FinalRun,
    FinalStep,
    RunsFinal,
    RunVerdict,
    check_runs,
    run_failure_report,
    step_task,
)

LEASE = 1500
RUN = "r1"
CREATED = 1000


class Run:
    """One run being written by hand: its start, its steps' executions and its final GetRun."""

    def __init__(self, workflow: str = "diamond", run_id: str = RUN) -> None:
        self.id = run_id
        self.history = History()
        self.history.runs[run_id] = RunStarted(run_id, workflow, CREATED - 5, CREATED + 5)
        flow = FLOWS[workflow]
        self.final = FinalRun(
            run_id, workflow, "RUNNING", [FinalStep(s.name, "WAITING") for s in flow.steps]
        )
        self.final.created_ms = CREATED
        self.tokens = 0

    def step(self, name: str) -> FinalStep:
        found = self.final.step(name)
        assert found is not None
        return found

    def ran(
        self,
        name: str,
        claim: int,
        finished: int,
        attempt: int = 1,
        ack: str = OK,
        record: bool = True,
        due: int = 0,
    ) -> Execution:
        """A delivery of the step's task leased at `claim`, acked (first sent) just before
        `finished`; with `record` the run keeps it as the step's success."""
        self.tokens += 1
        token = f"{WF_TOPIC}/t.{self.tokens}"
        e = Execution(
            "w1",
            step_task(self.id, name),
            WF_TOPIC,
            token,
            attempt,
            3,
            due or claim,
            LEASE,
            claim + LEASE,
            claim + 1,
            finished - 2,
            "ack",
            [Call("ack", finished - 1, finished + 1, ack)],
        )
        self.history.executions.append(e)
        if record:
            s = self.step(name)
            s.state, s.task_id, s.attempts, s.output = "SUCCEEDED", e.task, attempt, token
            s.started_ms, s.finished_ms, s.due_ms = claim + 2, finished, due or claim
        return e

    def ends(self, state: str, at: int) -> None:
        self.final.state, self.final.finished_ms = state, at
        for s in self.final.steps:
            if s.state == "WAITING":
                s.state = "SKIPPED" if state != "CANCELED" else "CANCELED"

    def call(self, kind: str, sent: int, result: str = OK, payload: str = "") -> None:
        name = "paid" if kind == "signal" else ""
        call = RunCall(kind, self.id, sent, sent + 5, result, name, payload)
        self.history.run_calls.setdefault(self.id, []).append(call)

    def check(self) -> RunVerdict:
        return check_runs(self.history, RunsFinal(dict(FLOWS), {self.id: self.final}))


def caught(verdict: RunVerdict, invariant: str) -> bool:
    return any(v.invariant == invariant and v.task == RUN for v in verdict.violations)


def clean_diamond() -> Run:
    """a; b after a (+300 ms); c after a; d after b and c; e after b or c (+200 ms)."""
    r = Run()
    r.ran("a", 1010, 1052)
    r.ran("c", 1060, 1102, due=1052)
    r.ran("e", 1310, 1332, due=1302)
    r.ran("b", 1360, 1402, due=1352)
    r.ran("d", 1410, 1452, due=1402)
    r.ends("SUCCEEDED", 1452)
    return r


def failed_diamond() -> Run:
    """c dead-letters: the run fails; b was canceled in its delay; undo runs after c."""
    r = Run()
    r.ran("a", 1010, 1052)
    c = r.ran("c", 1060, 1102, due=1052, record=False)
    c.outcome, c.calls = "dead_letter", [Call("nack", 1101, 1103, OK, dead_letter=True)]
    r.step("c").state, r.step("c").task_id, r.step("c").finished_ms = "FAILED", c.task, 1102
    r.step("c").due_ms, r.step("c").error = 1052, "its task dead-lettered"
    r.step("b").state, r.step("b").task_id, r.step("b").due_ms = "CANCELED", "wf:r1:b", 1352
    r.ran("undo", 1110, 1150, due=1102)
    r.final.error = "c: its task dead-lettered"
    r.ends("FAILED", 1150)
    return r


def order(paid_at: int | None, sent: int | None, kept: bool = True) -> Run:
    """The order timeout: `paid` sent at `sent` (None: never); the step's outcome by
    `paid_at` (None: timed out)."""
    r = Run("order")
    due = CREATED + ORDER_TIMEOUT_MS
    paid = r.step("paid")
    paid.due_ms, paid.task_id = due, ""
    if sent is not None:
        r.call("signal", sent, OK if kept else REPEAT, '{"n": 1}')
    if paid_at is not None:
        paid.state, paid.output, paid.finished_ms = "SUCCEEDED", '{"n": 1}', paid_at
        r.ran("ship", paid_at + 10, paid_at + 50, due=paid_at)
        r.ends("SUCCEEDED", paid_at + 50)
    else:
        paid.state, paid.finished_ms, paid.error = "FAILED", due, "no signal 'paid'"
        r.ran("cancel-order", due + 10, due + 50, due=due)
        r.final.error = "paid: no signal 'paid' within 800 ms"
        r.ends("FAILED", due + 50)
    return r


def test_clean_runs_pass_and_are_counted() -> None:
    for r in (clean_diamond(), failed_diamond(), order(1700, 1695), order(None, None)):
        verdict = r.check()
        assert verdict.ok, verdict.violations
    verdict = clean_diamond().check()
    c = verdict.counts
    assert (c.runs, c.succeeded, c.steps, c.executions, c.reruns) == (1, 1, 5, 5, 0)
    assert failed_diamond().check().counts.on_failure_ran == 1


# -- run-ends -------------------------------------------------------------------------------


def test_a_run_getrun_cannot_find_is_caught() -> None:
    r = clean_diamond()
    verdict = check_runs(r.history, RunsFinal(dict(FLOWS), {}))
    assert caught(verdict, RUN_ENDS) and verdict.counts.unsettled == 1


def test_a_run_left_open_is_caught() -> None:
    r = clean_diamond()
    r.final.state = "RUNNING"
    r.step("d").state = "SCHEDULED"
    assert caught(r.check(), RUN_ENDS)


def test_a_succeeded_run_with_a_failed_step_is_caught() -> None:
    r = clean_diamond()
    r.step("d").state = "FAILED"
    assert caught(r.check(), RUN_ENDS)


def test_an_accepted_cancel_of_a_run_that_succeeded_is_caught() -> None:
    r = clean_diamond()
    r.call("cancel", 1200)
    assert caught(r.check(), RUN_ENDS)


# -- step-order and parents-delay -----------------------------------------------------------


def test_a_child_leased_before_its_parent_finished_is_caught() -> None:
    r = clean_diamond()
    d = next(e for e in r.history.executions if e.task == "wf:r1:d")
    d.deadline_ms = 1390 + LEASE  # leased at 1390, b finished at 1402
    assert caught(r.check(), STEP_ORDER)


def test_a_child_leased_before_its_parents_ack_was_sent_is_caught_from_the_history() -> None:
    r = clean_diamond()
    r.step("b").finished_ms = 1300  # the run's record is wrong too: only the Ack shows it
    r.step("d").due_ms = 1350
    d = next(e for e in r.history.executions if e.task == "wf:r1:d")
    d.deadline_ms = 1380 + LEASE  # b's Ack was first sent at 1401
    verdict = r.check()
    assert caught(verdict, STEP_ORDER)
    assert any("Acks were sent" in v.detail for v in verdict.violations)


def test_a_step_that_ran_although_its_parent_failed_is_caught() -> None:
    r = failed_diamond()
    r.ran("e", 1310, 1332, due=1302)  # e after b or c: neither succeeded
    assert caught(r.check(), STEP_ORDER)


def test_a_step_leased_inside_its_delay_is_caught() -> None:
    r = clean_diamond()
    b = next(e for e in r.history.executions if e.task == "wf:r1:b")
    b.deadline_ms = 1200 + LEASE  # a finished at 1052, delay 300 ms: not before 1352
    verdict = r.check()
    assert caught(verdict, PARENTS_DELAY) and not caught(verdict, STEP_ORDER)


def test_a_step_made_due_before_its_delay_is_caught() -> None:
    r = clean_diamond()
    r.step("e").due_ms = 1200  # c finished at 1102, delay 200 ms
    assert caught(r.check(), PARENTS_DELAY)


def test_a_signal_deadline_before_its_timeout_is_caught() -> None:
    r = order(None, None)
    r.step("paid").due_ms = CREATED + ORDER_TIMEOUT_MS - 100
    assert caught(r.check(), PARENTS_DELAY)


# -- step-once ------------------------------------------------------------------------------


def test_a_step_task_created_twice_is_caught() -> None:
    r = clean_diamond()
    r.ran("c", 1070, 1110, record=False)  # a second first attempt: a second task
    assert caught(r.check(), STEP_ONCE)


def test_two_accepted_acks_for_one_step_are_caught() -> None:
    r = clean_diamond()
    r.ran("c", 2700, 2750, attempt=2, record=False)
    assert caught(r.check(), STEP_ONCE)


def test_the_run_keeping_another_executions_output_than_the_accepted_ack_is_caught() -> None:
    r = clean_diamond()
    first = next(e for e in r.history.executions if e.task == "wf:r1:c")
    first.calls = [Call("ack", 1101, 1103, STALE)]  # its lease was gone: refused
    r.ran("c", 2700, 2750, attempt=2, record=False)  # the retry's Ack was accepted
    r.step("c").attempts = 1  # the run kept attempt 1's output
    verdict = r.check()
    assert caught(verdict, STEP_ONCE)
    assert any("accepted attempt 2" in v.detail for v in verdict.violations)


def test_an_output_no_execution_produced_is_caught() -> None:
    r = clean_diamond()
    r.step("d").output = "made up"
    assert caught(r.check(), STEP_ONCE)


def test_attempts_that_do_not_match_the_kept_output_are_caught() -> None:
    r = clean_diamond()
    r.step("a").attempts = 2
    assert caught(r.check(), STEP_ONCE)


def test_a_step_the_run_skipped_that_ran_is_caught() -> None:
    r = clean_diamond()
    r.ran("undo", 1500, 1540, record=False)
    verdict = r.check()
    assert caught(verdict, STEP_ONCE) and caught(verdict, ON_FAILURE)


def test_an_accepted_ack_of_a_step_that_failed_in_the_run_is_caught() -> None:
    r = clean_diamond()
    r.step("e").state = "FAILED"
    assert caught(r.check(), STEP_ONCE)


def test_a_task_step_that_succeeded_without_running_is_caught() -> None:
    r = clean_diamond()
    r.history.executions = [e for e in r.history.executions if e.task != "wf:r1:e"]
    assert caught(r.check(), STEP_ONCE)


# -- on-failure -----------------------------------------------------------------------------


def test_a_failed_run_whose_on_failure_step_did_not_run_is_caught() -> None:
    r = failed_diamond()
    r.history.executions = [e for e in r.history.executions if e.task != "wf:r1:undo"]
    r.step("undo").state = "SKIPPED"
    assert caught(r.check(), ON_FAILURE)


def test_an_on_failure_step_before_the_failure_is_caught() -> None:
    r = failed_diamond()
    undo = next(e for e in r.history.executions if e.task == "wf:r1:undo")
    undo.deadline_ms = 1090 + LEASE  # c failed at 1102
    assert caught(r.check(), STEP_ORDER)


def test_an_on_failure_step_in_a_run_that_did_not_fail_is_caught() -> None:
    r = clean_diamond()
    r.step("undo").state = "SUCCEEDED"
    assert caught(r.check(), ON_FAILURE)


def test_a_failed_step_that_did_not_fail_the_run_is_caught() -> None:
    r = failed_diamond()
    r.final.state = "SUCCEEDED"
    verdict = r.check()
    assert caught(verdict, ON_FAILURE) and caught(verdict, RUN_ENDS)


# -- cancel-quiet ---------------------------------------------------------------------------


def canceled_diamond(at: int = 1195) -> Run:
    """Canceled at `at` while b waited in its delay: b, d and e never run."""
    r = Run()
    r.ran("a", 1010, 1052)
    r.ran("c", 1060, 1102, due=1052)
    r.step("b").state, r.step("b").task_id, r.step("b").due_ms = "CANCELED", "wf:r1:b", 1352
    r.step("e").state, r.step("e").task_id, r.step("e").due_ms = "CANCELED", "wf:r1:e", 1302
    r.call("cancel", at)
    r.ends("CANCELED", at + 3)
    return r


def test_a_canceled_run_passes() -> None:
    verdict = canceled_diamond().check()
    assert verdict.ok, verdict.violations
    assert verdict.counts.canceled == 1


def test_a_step_of_a_canceled_run_started_after_the_cancel_is_caught() -> None:
    r = canceled_diamond()
    r.ran("b", 1360, 1402, due=1352, record=False)  # its task was not deleted
    verdict = r.check()
    assert caught(verdict, CANCEL_QUIET)


def test_a_step_started_after_a_repeated_cancel_is_caught() -> None:
    r = canceled_diamond()
    r.history.run_calls[RUN] = []
    r.call("cancel", 1250, REPEAT)  # a retry: the first try's answer was lost
    r.ran("e", 1310, 1332, due=1302, record=False)
    assert caught(r.check(), CANCEL_QUIET)


def test_a_task_for_a_step_the_run_never_scheduled_is_caught() -> None:
    r = canceled_diamond()
    r.ran("d", 1150, 1170, record=False)  # d was WAITING when the run was canceled
    assert caught(r.check(), CANCEL_QUIET)


def test_a_step_leased_before_the_cancel_may_finish() -> None:
    r = canceled_diamond(at=1320)
    r.ran("e", 1310, 1350, due=1302, record=False)  # leased before the cancel's answer
    r.step("e").state = "CANCELED"
    verdict = r.check()
    assert verdict.ok, verdict.violations


# -- signal-once ----------------------------------------------------------------------------


def test_a_signal_racing_its_deadline_may_go_either_way() -> None:
    due = CREATED + ORDER_TIMEOUT_MS
    assert order(due - 2, due - 3).check().ok  # arrived just before: succeeded
    racing = order(None, due - 3)  # sent before, answered after: it may have arrived late
    racing.history.run_calls[RUN][0].done_ms = due + 3
    verdict = racing.check()
    assert verdict.ok
    c = verdict.counts
    assert (c.signals_in_time, c.timeouts, c.signals_racing, c.signals_late) == (0, 1, 1, 0)
    c = order(None, due + 10).check().counts
    assert (c.signals_in_time, c.timeouts, c.signals_racing, c.signals_late) == (0, 1, 0, 1)
    assert order(due - 2, due - 3).check().counts.signals_in_time == 1


def test_a_success_with_a_signal_sent_after_the_deadline_is_caught() -> None:
    due = CREATED + ORDER_TIMEOUT_MS
    assert caught(order(due + 20, due + 10).check(), SIGNAL_ONCE)


def test_a_success_judged_by_an_arrival_after_the_deadline_is_caught() -> None:
    due = CREATED + ORDER_TIMEOUT_MS
    r = order(due + 2, due - 3)  # sent before, arrived (its finish) after the deadline
    r.history.run_calls[RUN][0].done_ms = due + 5
    assert caught(r.check(), SIGNAL_ONCE)


def test_an_arrival_outside_every_signal_call_is_caught() -> None:
    r = order(1600, 1695)  # finished before the only SignalRun was sent
    assert caught(r.check(), SIGNAL_ONCE)


def test_a_timeout_although_the_signal_was_kept_in_time_is_caught() -> None:
    due = CREATED + ORDER_TIMEOUT_MS
    assert caught(order(None, due - 100).check(), SIGNAL_ONCE)


def test_a_success_with_another_payload_than_the_kept_signal_is_caught() -> None:
    r = order(1700, 1695)
    r.step("paid").output = '{"n": 2}'
    assert caught(r.check(), SIGNAL_ONCE)


def test_a_retried_signal_whose_last_answer_is_finished_may_have_landed() -> None:
    """The first try landed (the step succeeded with it), its answer was lost (a killed
    server), and the retry found the run finished: the call still counts as sent."""
    r = order(1700, 1695, kept=False)
    call = r.history.run_calls[RUN][0]
    call.result, call.attempts, call.done_ms = WRONG_STATE, 2, 4200
    assert r.check().ok
    call.attempts = 1  # refused at its only try: it changed nothing
    assert caught(r.check(), SIGNAL_ONCE)


def test_a_timeout_although_a_signal_was_there_before_the_deadline_is_caught() -> None:
    due = CREATED + ORDER_TIMEOUT_MS
    r = order(None, due - 100, kept=False)  # answered "came before" well before the deadline
    assert caught(r.check(), SIGNAL_ONCE)


def test_a_success_with_no_signal_is_caught() -> None:
    assert caught(order(1700, None).check(), SIGNAL_ONCE)


# -- reports and logs -----------------------------------------------------------------------


def test_the_failure_report_shows_the_offending_run() -> None:
    r = clean_diamond()
    r.step("a").attempts = 2
    report = run_failure_report(r.check(), r.history, RunsFinal(dict(FLOWS), {RUN: r.final}))
    assert "[step-once] r1" in report and "run r1" in report and "lease attempt=1" in report


def test_run_events_and_runs_json_round_trip(tmp_path: Path) -> None:
    with LogWriter(tmp_path / "producer-runs.jsonl") as log:
        log.write("run_start", id=RUN, workflow="order", sent_ms=995, acked_ms=1005)
        log.write(
            "run_call",
            kind="signal",
            run=RUN,
            sent_ms=1695,
            done_ms=1700,
            result=OK,
            name="paid",
            payload='{"n": 1}',
        )
    with LogWriter(tmp_path / "faults.jsonl") as log:
        log.write("kill_server", process="server-2", t_ms=1500)
    history = load_history(tmp_path)
    assert history.runs[RUN].workflow == "order"
    assert history.run_calls[RUN][0].payload == '{"n": 1}'
    assert history.server_kills == [("server-2", 1500)]
    final = RunsFinal(dict(FLOWS), {RUN: order(1700, 1695).final})
    again = RunsFinal.from_json(json.loads(json.dumps(final.to_json())))
    assert again == final
    assert dataclasses.asdict(again.flows["diamond"]) == dataclasses.asdict(DIAMOND)
    assert again.flows["order"] == ORDER


def test_rechecking_a_kept_run_checks_its_workflow_runs_too(tmp_path: Path) -> None:
    with LogWriter(tmp_path / "producer-runs.jsonl") as log:
        log.write("run_start", id=RUN, workflow="order", sent_ms=995, acked_ms=1005)
    (tmp_path / "final.json").write_text(json.dumps(FinalState().to_json()))
    canceled = Run("order")
    canceled.ends("CANCELED", 1100)  # canceled before anything ran: nothing in the workers' logs
    runs = RunsFinal(dict(FLOWS), {RUN: canceled.final})
    (tmp_path / "runs.json").write_text(json.dumps(runs.to_json()))
    assert checker_main([str(tmp_path)]) == 0
    runs.runs[RUN].state = "RUNNING"  # planted: a run left open
    (tmp_path / "runs.json").write_text(json.dumps(runs.to_json()))
    assert checker_main([str(tmp_path)]) == 1
