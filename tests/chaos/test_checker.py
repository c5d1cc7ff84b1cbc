"""The chaos checker on hand-made histories: a clean one passes, and each planted fault (loss,
overlap, early start, stale ack accepted, DLQ mismatch, duplicate cron tick, ...) is caught
with the offending task's id. Pure: no processes, no network."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from chaos.checker import (
    CRON_ONCE,
    DLQ_EXACT,
    EXACTLY_ONCE,
    FENCING,
    MISSING,
    NEVER_EARLY,
    NO_LOSS,
    RESTART,
    START_IN_LEASE,
    FinalState,
    FinalTask,
    ScheduleFinal,
    TopicCounts,
    Verdict,
    check,
    describe_task,
    failure_report,
    restarts,
)
from chaos.history import (
    OK,
    STALE,
    Call,
    Cancel,
    Enqueued,
    Execution,
    History,
    LogWriter,
    load_history,
)

LEASE = 1500
TOPIC = "chaos"
_tokens = itertools.count(1)


def enqueue(h: History, task: str, due: int = 1000, mode: str = "ok", retries: int = 3) -> None:
    h.enqueued[task] = Enqueued(task, TOPIC, mode, retries, due, due - 10)


def lease(
    h: History,
    task: str,
    attempt: int,
    claim: int,
    *calls: Call,
    due: int = 1000,
    retries: int = 3,
    topic: str = TOPIC,
    outcome: str = "ack",
) -> Execution:
    e = Execution(
        worker="w1",
        task=task,
        topic=topic,
        token=f"{topic}/call{next(_tokens)}.1",
        attempt=attempt,
        max_retries=retries,
        due_ms=due,
        lease_ms=LEASE,
        deadline_ms=claim + LEASE,
        start_ms=claim + 1,
        end_ms=claim + 50,
        outcome=outcome,
        calls=list(calls),
    )
    h.executions.append(e)
    return e


def ack(sent: int, result: str = OK) -> Call:
    return Call("ack", sent, sent + 5, result)


def nack(sent: int, next_due: int = 0, dead_letter: bool = False, dead: bool = False) -> Call:
    return Call("nack", sent, sent + 5, OK, dead_letter, dead, 0 if dead else next_due)


def extend(sent: int, deadline: int, result: str = OK) -> Call:
    return Call("extend", sent, sent + 5, result, deadline_ms=deadline if result == OK else 0)


def final(
    tasks: dict[str, FinalTask], dead: list[str] | None = None, **extra: object
) -> FinalState:
    dead = dead if dead is not None else [t for t, f in tasks.items() if f.state == "DEAD"]
    stats = {TOPIC: TopicCounts(0, 0, len(dead))}
    return FinalState(tasks=tasks, dead_letters={TOPIC: dead}, stats=stats, **extra)  # type: ignore[arg-type]


def done(attempt: int = 1, retries: int = 3) -> FinalTask:
    return FinalTask("SUCCEEDED", attempt, retries, TOPIC)


def caught(verdict: Verdict, invariant: str, task: str) -> bool:
    return any(v.invariant == invariant and v.task == task for v in verdict.violations)


def clean_history() -> tuple[History, FinalState]:
    """Every legal path: ack; Nack then retry; a lease that expired and was delivered again
    (its late Ack refused); retries spent -> DEAD; dead-letter Nack; canceled; an extension."""
    h = History()
    enqueue(h, "ok")
    lease(h, "ok", 1, 1000, ack(1100))
    enqueue(h, "retry")
    lease(h, "retry", 1, 1000, nack(1100, next_due=1400), outcome="nack")
    lease(h, "retry", 2, 1450, ack(1500), due=1400)
    enqueue(h, "expired")
    lease(h, "expired", 1, 1000, ack(2400, STALE))  # lease ran out at 2500; refused
    lease(h, "expired", 2, 2600, ack(2700), due=2550)
    enqueue(h, "spent", mode="fail_always", retries=1)
    lease(h, "spent", 1, 1000, nack(1100, next_due=1300), retries=1, outcome="nack")
    lease(h, "spent", 2, 1300, nack(1400, dead=True), due=1300, retries=1, outcome="nack")
    enqueue(h, "dl", mode="dead")
    lease(h, "dl", 1, 1000, nack(1100, dead_letter=True, dead=True), outcome="dead_letter")
    enqueue(h, "canceled", due=5000, mode="cancel")
    h.cancels["canceled"] = [Cancel("canceled", 1000, 1010, OK)]
    enqueue(h, "long")
    lease(h, "long", 1, 1000, extend(1500, 3000), ack(2900))  # valid to 3000 thanks to extend
    f = final(
        {
            "ok": done(),
            "retry": done(2),
            "expired": done(2),
            "spent": FinalTask("DEAD", 2, 1, TOPIC),
            "dl": FinalTask("DEAD", 1, 3, TOPIC),
            "canceled": FinalTask("CANCELED", 0, 3, TOPIC),
            "long": done(),
        }
    )
    return h, f


def test_a_clean_history_passes_and_is_counted() -> None:
    h, f = clean_history()
    verdict = check(h, f)
    assert verdict.ok, failure_report(verdict, h, f)
    c = verdict.counts
    assert (c.tasks, c.succeeded, c.dead, c.canceled, c.lost, c.stuck) == (7, 4, 2, 1, 0, 0)
    assert (c.duplicates, c.explained, c.stale_refused, c.early) == (1, 1, 1, 0)


def test_planted_loss_is_caught() -> None:
    h, f = clean_history()
    enqueue(h, "gone")
    f.tasks["gone"] = FinalTask(MISSING)
    verdict = check(h, f)
    assert caught(verdict, NO_LOSS, "gone") and verdict.counts.lost == 1
    assert verdict.offending() == ["gone"]


def test_a_task_stuck_after_the_drain_is_caught() -> None:
    h, f = clean_history()
    enqueue(h, "stuck")
    f.tasks["stuck"] = FinalTask("PENDING", 0, 3, TOPIC)
    verdict = check(h, f)
    assert caught(verdict, NO_LOSS, "stuck") and verdict.counts.stuck == 1


def test_an_accepted_ack_that_does_not_end_succeeded_is_caught() -> None:
    h, f = clean_history()
    enqueue(h, "undone")
    lease(h, "undone", 1, 1000, ack(1100))
    f.tasks["undone"] = FinalTask("PENDING", 1, 3, TOPIC)
    assert caught(check(h, f), NO_LOSS, "undone")


def test_a_canceled_task_that_ran_is_caught() -> None:
    h, f = clean_history()
    enqueue(h, "ran", due=5000, mode="cancel")
    h.cancels["ran"] = [Cancel("ran", 1000, 1010, OK)]
    lease(h, "ran", 1, 5000, ack(5100), due=5000)
    f.tasks["ran"] = done()
    assert caught(check(h, f), NO_LOSS, "ran")


def test_planted_overlap_is_caught() -> None:
    h, f = clean_history()
    enqueue(h, "twice")
    lease(h, "twice", 1, 1000, ack(1900, STALE))  # lease valid until 2500
    lease(h, "twice", 2, 1800, ack(1850))  # handed out again at 1800: two live leases
    f.tasks["twice"] = done(2)
    verdict = check(h, f)
    assert caught(verdict, EXACTLY_ONCE, "twice")
    assert verdict.offending() == ["twice"]


def test_overlap_with_an_extended_lease_is_caught() -> None:
    h, f = clean_history()
    enqueue(h, "extended")
    lease(h, "extended", 1, 1000, extend(2000, 3500), ack(3400, STALE))
    lease(h, "extended", 2, 2700, ack(2800))  # after the first deadline, before the extended one
    f.tasks["extended"] = done(2)
    assert caught(check(h, f), EXACTLY_ONCE, "extended")


def test_delivery_after_an_accepted_ack_is_caught() -> None:
    h, f = clean_history()
    enqueue(h, "again")
    lease(h, "again", 1, 1000, ack(1100))
    lease(h, "again", 2, 5000, ack(5100))
    f.tasks["again"] = done(2)
    assert caught(check(h, f), EXACTLY_ONCE, "again")


def test_two_leases_with_one_attempt_number_are_caught() -> None:
    h, f = clean_history()
    enqueue(h, "same")
    lease(h, "same", 1, 1000, ack(1100, STALE))
    lease(h, "same", 1, 3000, ack(3100))
    f.tasks["same"] = done(1)
    assert caught(check(h, f), EXACTLY_ONCE, "same")


def test_a_start_after_its_own_lease_deadline_is_caught() -> None:
    h, f = clean_history()
    enqueue(h, "stale")
    e = lease(h, "stale", 1, 1000, ack(2700, STALE))
    e.start_ms = 1000 + LEASE + 10  # held past its deadline (2500), then started anyway
    f.tasks["stale"] = FinalTask("PENDING", 1, 3, TOPIC)
    verdict = check(h, f)
    assert caught(verdict, START_IN_LEASE, "stale") and verdict.counts.after_deadline == 1
    assert "10 ms after its lease deadline 2500" in failure_report(verdict, h, f)


def test_a_start_within_a_lease_renewed_before_it_passes() -> None:
    h, f = clean_history()
    enqueue(h, "held")
    e = lease(h, "held", 1, 1000, extend(2000, 4000), ack(3100))
    e.start_ms = 3000  # after the first deadline (2500), before the renewed one (4000)
    e.transport = "stream"
    f.tasks["held"] = done()
    verdict = check(h, f)
    assert verdict.ok, failure_report(verdict, h, f)
    e.calls[0] = extend(3000, 4000)  # renewed only after the start: too late
    assert caught(check(h, f), START_IN_LEASE, "held")


def test_a_start_after_a_later_lease_began_is_caught() -> None:
    h, f = clean_history()
    enqueue(h, "resumed")
    a = lease(h, "resumed", 1, 1000, ack(12_100, STALE))
    a.lease_ms, a.deadline_ms = 20_000, 21_000  # a long lease, released when its stream died
    a.start_ms, a.end_ms, a.transport = 12_000, 12_050, "stream"  # started after resuming
    lease(h, "resumed", 2, 11_000, ack(11_100))
    f.tasks["resumed"] = done(2)
    verdict = check(h, f)
    assert caught(verdict, START_IN_LEASE, "resumed") and verdict.counts.after_deadline == 1
    assert "after a later lease (attempt 2, w1) began at 11000" in failure_report(verdict, h, f)


def test_a_lease_answered_stale_had_ended_by_then() -> None:
    h, f = clean_history()
    enqueue(h, "frozen")
    a = lease(h, "frozen", 1, 1000, ack(11_000, STALE))
    a.lease_ms, a.deadline_ms, a.end_ms = 20_000, 21_000, 10_990  # its stream found dead
    lease(h, "frozen", 2, 11_500, ack(11_600))
    f.tasks["frozen"] = done(2)
    verdict = check(h, f)
    assert verdict.ok, failure_report(verdict, h, f)
    assert (verdict.counts.duplicates, verdict.counts.explained) == (2, 2)  # "expired": 1
    h.executions[-1].deadline_ms = 10_000 + LEASE  # claimed at 10000, before the stale answer
    assert caught(check(h, f), EXACTLY_ONCE, "frozen")


def test_a_stream_lease_may_end_once_its_worker_is_silent_past_the_keepalive() -> None:
    h, f = clean_history()
    enqueue(h, "frozen")
    a = lease(h, "frozen", 1, 1000)
    a.lease_ms, a.deadline_ms, a.end_ms, a.transport = 20_000, 21_000, 14_000, "stream"
    b = lease(h, "frozen", 2, 7_000, ack(7_100))
    b.transport = "stream"
    f.tasks["frozen"] = done(2)
    assert caught(check(h, f), EXACTLY_ONCE, "frozen")  # nothing explains the release
    h.silences.append(("w1", 2_000, 14_000))  # SIGSTOP from 2000 to 14000
    verdict = check(h, f)
    assert verdict.ok, failure_report(verdict, h, f)
    b.deadline_ms = 6_800 + LEASE  # claimed 4.8 s into the silence: released too soon
    assert caught(check(h, f), EXACTLY_ONCE, "frozen")


def _killed_mid_task(
    transport: str, killed_at: int | None, again: int = 1250
) -> tuple[History, FinalState]:
    """w1 runs attempt 1 (lease to 2500) and dies at `killed_at`; w2 gets attempt 2 at
    `again` (started 1 ms later)."""
    h, f = clean_history()
    enqueue(h, "cut")
    a = lease(h, "cut", 1, 1000)
    a.end_ms, a.outcome, a.transport = None, "", transport
    b = lease(h, "cut", 2, again, ack(again + 50))
    b.worker, b.transport = "w2", transport
    if killed_at is not None:
        h.kills.append(("w1", killed_at))
    f.tasks["cut"] = done(2)
    return h, f


def test_a_stream_lease_ends_when_its_worker_is_killed() -> None:
    h, f = _killed_mid_task("stream", killed_at=1200)
    verdict = check(h, f, restart_within_ms=1000)
    assert verdict.ok, failure_report(verdict, h, f)
    assert (verdict.counts.duplicates, verdict.counts.explained) == (2, 2)  # "expired": 1
    assert (verdict.counts.interrupted, verdict.counts.restart_max_ms) == (1, 51)


def test_a_redelivery_before_the_kill_or_of_a_unary_lease_is_an_overlap() -> None:
    for transport, killed_at in (("stream", None), ("stream", 1300), ("unary", 1200)):
        h, f = _killed_mid_task(transport, killed_at)
        assert caught(check(h, f), EXACTLY_ONCE, "cut"), (transport, killed_at)


def test_restarts_after_a_kill_are_measured_and_bounded() -> None:
    h, f = _killed_mid_task("stream", killed_at=1200, again=2250)
    (cut,) = restarts(h)
    assert (cut.task, cut.worker, cut.killed_ms, cut.after_ms) == ("cut", "w1", 1200, 1051)
    verdict = check(h, f, restart_within_ms=1000)
    assert caught(verdict, RESTART, "cut") and verdict.counts.restart_max_ms == 1051
    assert check(h, f).ok  # no bound asked: only counted
    h.executions.pop()  # never started again
    f.tasks["cut"] = FinalTask("PENDING", 1, 3, TOPIC)
    verdict = check(h, f, restart_within_ms=1000)
    assert caught(verdict, RESTART, "cut") and verdict.counts.restart_max_ms is None
    h.executions[-1].max_retries = 0  # its last try: "worker lost" dead-letters it
    f.tasks["cut"] = FinalTask("DEAD", 1, 0, TOPIC)
    f.dead_letters[TOPIC].append("cut")
    f.stats[TOPIC].dead += 1
    verdict = check(h, f, restart_within_ms=1000)
    assert verdict.ok, failure_report(verdict, h, f)
    assert verdict.counts.interrupted == 1


def test_a_task_that_ended_before_the_kill_was_not_cut() -> None:
    h, _ = _killed_mid_task("stream", killed_at=1200)
    h.executions[-2].end_ms = 1100
    assert restarts(h) == []


def test_planted_early_start_is_caught() -> None:
    h, f = clean_history()
    enqueue(h, "early", due=2000)
    lease(h, "early", 1, 1990, ack(2100), due=2000)
    f.tasks["early"] = done()
    verdict = check(h, f)
    assert caught(verdict, NEVER_EARLY, "early") and verdict.counts.early == 1


def test_a_retry_before_its_backoff_is_caught() -> None:
    h, f = clean_history()
    enqueue(h, "eager")
    lease(h, "eager", 1, 1000, nack(1100, next_due=1600), outcome="nack")
    lease(h, "eager", 2, 1300, ack(1400), due=1300)  # the task claimed due 1300: not so
    f.tasks["eager"] = done(2)
    assert caught(check(h, f), NEVER_EARLY, "eager")


def test_planted_stale_ack_accepted_is_caught() -> None:
    h, f = clean_history()
    enqueue(h, "stale")
    lease(h, "stale", 1, 1000, ack(3000))  # sent after attempt 2 began, yet accepted
    lease(h, "stale", 2, 2600, ack(2700, STALE))
    f.tasks["stale"] = done(2)
    verdict = check(h, f)
    assert caught(verdict, FENCING, "stale")


def test_a_stale_extend_accepted_is_caught() -> None:
    h, f = clean_history()
    enqueue(h, "ext")
    lease(h, "ext", 1, 1000, extend(2700, 4200), ack(2800, STALE))
    lease(h, "ext", 2, 2600, ack(2650))
    f.tasks["ext"] = done(2)
    assert caught(check(h, f), FENCING, "ext")


def test_a_nack_retried_after_a_lost_reply_is_not_stale() -> None:
    """The first Nack landed (reply lost), the task was leased again, the retry was answered
    from the settled token: legal, not a fencing breach."""
    h, f = clean_history()
    enqueue(h, "lost-reply")
    first = Call("nack", 1100, 4100, "error:DEADLINE_EXCEEDED")
    lease(h, "lost-reply", 1, 1000, first, nack(4200, next_due=1300), outcome="nack")
    lease(h, "lost-reply", 2, 1350, ack(1400), due=1300)
    f.tasks["lost-reply"] = done(2)
    verdict = check(h, f)
    assert verdict.ok, failure_report(verdict, h, f)


def test_a_nack_refused_as_stale_though_it_was_applied_is_caught() -> None:
    """Seen under reset_peer: the Nack landed, its reply was lost, the server's own retry came
    after the task was leased and acked again and was answered "stale". The next lease carries
    the retry time that Nack set, so the refusal was untrue; it is not an overlap."""
    h, f = clean_history()
    enqueue(h, "lied", mode="fail_once")
    lease(h, "lied", 1, 1000, Call("nack", 1100, 1900, STALE), outcome="nack")
    lease(h, "lied", 2, 1500, ack(1600), due=1200)  # due 1200 < deadline 2500: a Nack's doing
    f.tasks["lied"] = done(2)
    verdict = check(h, f)
    assert caught(verdict, FENCING, "lied")
    assert not caught(verdict, EXACTLY_ONCE, "lied")
    assert verdict.counts.duplicates == 1  # "expired" of the clean history, not this one


def test_a_nack_that_timed_out_but_landed_is_no_overlap() -> None:
    h, f = clean_history()
    enqueue(h, "unsure", mode="fail_once")
    lease(h, "unsure", 1, 1000, Call("nack", 1100, 4100, "error:DEADLINE_EXCEEDED"))
    lease(h, "unsure", 2, 1500, ack(1600), due=1200)
    f.tasks["unsure"] = done(2)
    verdict = check(h, f)
    assert verdict.ok, failure_report(verdict, h, f)


def test_planted_dlq_mismatch_is_caught() -> None:
    h, f = clean_history()
    enqueue(h, "too-soon", mode="fail_always", retries=3)
    lease(h, "too-soon", 1, 1000, nack(1100, next_due=1300), outcome="nack")
    f.tasks["too-soon"] = FinalTask("DEAD", 1, 3, TOPIC)  # retries left, nobody asked
    verdict = check(h, f)
    assert caught(verdict, DLQ_EXACT, "too-soon")


def test_a_dead_letter_nack_not_ending_dead_is_caught() -> None:
    h, f = clean_history()
    enqueue(h, "revived", mode="dead")
    lease(h, "revived", 1, 1000, nack(1100, dead_letter=True, dead=True), outcome="dead_letter")
    f.tasks["revived"] = done()
    assert caught(check(h, f), DLQ_EXACT, "revived")


def test_a_nack_answer_that_contradicts_the_retries_is_caught() -> None:
    h, f = clean_history()
    enqueue(h, "spared", mode="fail_always", retries=0)
    lease(h, "spared", 1, 1000, nack(1100, next_due=1200), retries=0, outcome="nack")
    lease(h, "spared", 2, 1250, ack(1300), due=1200, retries=0)
    f.tasks["spared"] = done(2, retries=0)
    assert caught(check(h, f), DLQ_EXACT, "spared")


def test_the_dead_letter_listing_must_match_the_states() -> None:
    h, f = clean_history()
    f.dead_letters[TOPIC] = ["spent"]  # "dl" is DEAD but not listed
    f.stats[TOPIC] = TopicCounts(0, 0, 2)
    verdict = check(h, f)
    assert caught(verdict, DLQ_EXACT, "dl")
    assert caught(verdict, DLQ_EXACT, "-")  # stats say 2, the listing 1


def cron_history(ticks: dict[str, int], last_fire: int) -> tuple[History, FinalState]:
    h = History()
    tasks = {}
    for task, tick in ticks.items():
        lease(h, task, 1, tick + 5, ack(tick + 50), due=tick, topic="cron")
        tasks[task] = FinalTask("SUCCEEDED", 1, 3, "cron")
    f = FinalState(
        tasks=tasks,
        dead_letters={"cron": []},
        stats={"cron": TopicCounts()},
        schedules=[ScheduleFinal("tick", "cron", 1000, last_fire)],
    )
    return h, f


def test_one_task_per_tick_passes() -> None:
    h, f = cron_history({f"sched:tick:{t}": t for t in (10_000, 11_000, 12_000)}, 12_000)
    verdict = check(h, f)
    assert verdict.ok, failure_report(verdict, h, f)
    assert verdict.counts.tasks == 3


def test_planted_duplicate_cron_tick_is_caught() -> None:
    ticks = {"sched:tick:10000": 10_000, "sched:tick:11000": 11_000, "rogue": 11_000}
    h, f = cron_history(ticks, 11_000)
    verdict = check(h, f)
    assert caught(verdict, CRON_ONCE, "rogue") and caught(verdict, CRON_ONCE, "sched:tick:11000")


def test_a_missed_cron_tick_is_caught() -> None:
    h, f = cron_history({"sched:tick:10000": 10_000, "sched:tick:12000": 12_000}, 12_000)
    verdict = check(h, f)
    assert any(v.invariant == CRON_ONCE and "11000" in v.detail for v in verdict.violations)


def test_the_tick_of_a_cron_task_seen_only_on_a_retry_comes_from_its_id() -> None:
    h, f = cron_history({"sched:tick:10000": 10_000}, 11_000)
    lease(h, "sched:tick:11000", 2, 13_000, ack(13_050), due=12_900, topic="cron")
    f.tasks["sched:tick:11000"] = FinalTask("SUCCEEDED", 2, 3, "cron")
    verdict = check(h, f)
    assert verdict.ok, failure_report(verdict, h, f)
    assert verdict.counts.unrecorded == 1


def test_a_tick_whose_task_no_worker_ran_counts_from_the_final_state() -> None:
    """The pause cancels the tick fired ahead: its task is found by GetTask, not by a worker."""
    h, f = cron_history({"sched:tick:10000": 10_000}, 11_000)
    f.tasks["sched:tick:11000"] = FinalTask("CANCELED", 0, 3, "cron")
    verdict = check(h, f)
    assert verdict.ok, failure_report(verdict, h, f)
    assert (verdict.counts.tasks, verdict.counts.canceled) == (2, 1)


def test_the_failure_report_shows_each_offending_task_history() -> None:
    h, f = clean_history()
    enqueue(h, "twice")
    lease(h, "twice", 1, 1000, ack(1900, STALE))
    lease(h, "twice", 2, 1800, ack(1850))
    f.tasks["twice"] = done(2)
    report = failure_report(check(h, f), h, f)
    assert "offending task ids (1): twice" in report
    assert "attempt=2" in report and "result=stale" in report
    assert describe_task("twice", h, f).startswith("task twice")


def test_history_round_trips_through_the_logs(tmp_path: Path) -> None:
    with LogWriter(tmp_path / "producer.jsonl") as log:
        log.write("enqueue", id="a", topic=TOPIC, mode="ok", max_retries=3, due_ms=10, acked_ms=9)
        log.write("cancel", id="a", sent_ms=11, done_ms=12, result=OK)
    with LogWriter(tmp_path / "worker-w1.jsonl") as log:
        log.write("ready", worker="w1", t_ms=1)
        log.write(
            "start",
            worker="w1",
            task="a",
            topic=TOPIC,
            token="chaos/x.1",
            attempt=1,
            max_retries=3,
            due_ms=10,
            lease_ms=LEASE,
            deadline_ms=20 + LEASE,
            start_ms=21,
        )
        log.write("skip", worker="w1", task="b", token="chaos/y.1", attempt=1, deadline_ms=5,
                  t_ms=9, why="lease deadline")  # fmt: skip
        log.write("call", token="chaos/x.1", kind="extend", sent_ms=30, done_ms=31, result=OK,
                  deadline_ms=2000)  # fmt: skip
        log.write("end", token="chaos/x.1", end_ms=40, outcome="ack")
        log.write("call", token="chaos/x.1", kind="ack", sent_ms=41, done_ms=42, result=OK,
                  dead_letter=False)  # fmt: skip
    with (tmp_path / "worker-w1.jsonl").open("a") as f:
        f.write('{"ev":"call","token":"chaos/x.1"')  # torn by a SIGKILL
    h = load_history(tmp_path)
    assert h.enqueued["a"].due_ms == 10 and h.cancels["a"][0].result == OK
    (e,) = h.executions
    assert (e.claim_ms, e.known_deadline(), e.end_ms, e.outcome) == (20, 2000, 40, "ack")
    assert [c.kind for c in e.calls] == ["extend", "ack"] and e.accepted_settle() is not None
    assert (e.transport, h.skips, h.kills) == ("unary", 1, [])


def test_stream_starts_and_kills_round_trip_through_the_logs(tmp_path: Path) -> None:
    with LogWriter(tmp_path / "worker-w1.jsonl") as log:
        log.write("start", worker="w1", task="a", topic=TOPIC, token="chaos/x.1", attempt=1,
                  max_retries=3, due_ms=10, lease_ms=LEASE, deadline_ms=3000,
                  first_deadline_ms=20 + LEASE, start_ms=2000,
                  transport="stream")  # fmt: skip
    with LogWriter(tmp_path / "faults.jsonl") as log:
        log.write("kill", worker="w1", t_ms=2100)
    h = load_history(tmp_path)
    (e,) = h.executions
    assert (e.transport, e.claim_ms, e.deadline_at_start(), e.known_deadline()) == (
        "stream",
        20,
        3000,
        3000,
    )
    assert h.kills == [("w1", 2100)] and h.death_after("w1", 2000) == 2100
    assert h.death_after("w1", 2200) is None


@pytest.mark.parametrize("result", [STALE, "not_found", "error:UNAVAILABLE"])
def test_refused_or_failed_calls_are_not_accepted(result: str) -> None:
    assert not ack(1, result).accepted


def test_losses_across_a_redis_master_kill_are_counted_with_their_window() -> None:
    """cluster_failover: enqueues missing at the end, enqueues found only with their topic (id
    index lost) and Acks undone (leased again) are counted; the loss window is how long before
    the master's SIGKILL the oldest of those acknowledgements was answered."""
    h, f = clean_history()
    h.redis_kills = [3000, 9000]
    enqueue(h, "gone", due=2700)  # acknowledged at 2690, lost by the kill at 3000
    f.tasks["gone"] = FinalTask(MISSING)
    enqueue(h, "unindexed", due=2900)  # acknowledged at 2890
    f.tasks["unindexed"] = FinalTask("SUCCEEDED", 1, 3, TOPIC, by_id=False)
    enqueue(h, "undone")
    lease(h, "undone", 1, 2000, ack(2500))  # answered at 2505: 495 ms before the kill
    lease(h, "undone", 2, 5000, ack(5100))
    f.tasks["undone"] = done(2)
    verdict = check(h, f)
    c = verdict.counts
    assert (c.lost, c.unindexed, c.acks_lost, c.loss_window_ms) == (1, 1, 1, 495)
    assert caught(verdict, NO_LOSS, "unindexed") and caught(verdict, EXACTLY_ONCE, "undone")


def test_no_loss_no_window() -> None:
    h, f = clean_history()
    h.redis_kills = [3000]
    c = check(h, f).counts
    assert (c.lost, c.unindexed, c.acks_lost, c.loss_window_ms) == (0, 0, 0, None)


def test_redis_kills_are_read_from_the_faults_log(tmp_path: Path) -> None:
    with LogWriter(tmp_path / "faults.jsonl") as log:
        log.write("redis_kill", node=7000, t_ms=1234, lag_s=0.5)
        log.write("kill", worker="w1", t_ms=1300)
    h = load_history(tmp_path)
    assert h.redis_kills == [1234] and h.kills == [("w1", 1300)]
