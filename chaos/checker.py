"""The checker: reads a run's history (chaos/history.py) and the queue's final state (read over
gRPC after the faults healed and the queue drained) and verifies the six invariants:

1. no-loss       every acknowledged enqueue ends SUCCEEDED, DEAD or CANCELED (not missing, not
                 stuck); an accepted Ack ends SUCCEEDED, an accepted cancel ends CANCELED.
2. exactly-once  no delivery is leased while an earlier lease of the task was still valid (and
                 not settled); every duplicate execution is explained by an expired lease.
3. never-early   no delivery is leased before its due time (the enqueued one, the one it
                 carried, or the retry time a Nack set).
4. dlq-exact     DEAD exactly when retries were spent or a Nack asked for it; the dead-letter
                 listing and the stats agree with the tasks' states.
5. fencing       no Ack, Nack or ExtendLease was accepted after a later lease of the task began.
6. cron-once     one task per schedule tick: no two tasks for one tick, no tick left without one.
7. start-in-lease no handler starts after its own lease deadline (the one it was delivered with,
                 or renewed by an ExtendLease/HOLD answered before the start), nor after a
                 later lease of its task began.
8. restart       (scenarios that ask for it) every task running on a SIGKILLed worker starts
                 again within the scenario's bound after the kill (unless that attempt was its
                 last: "worker lost" counts it, so it is dead-lettered instead).

A stream delivery's lease (rpc Work) is renewed by the server while its stream lives, which the
worker does not see; it ends when the stream breaks, so a SIGKILL of its worker (faults.jsonl)
ends it too, and so may a silence (SIGSTOP, a cut link; faults.jsonl) past the server's
keepalive ping timeout: a re-delivery after that is no overlap (a handler that was running
finishes, its result refused). Starting a delivery after that is a violation (start-in-lease).

Pure: no processes, no network. `python -m chaos.checker <run dir>` re-checks a kept run (and
its workflow runs, chaos/runcheck.py, when it has a runs.json).
Stdlib only (plus chaos.history); imports nothing of atp.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from chaos.history import (
    OK,
    REFUSED,
    STALE,
    Call,
    Execution,
    History,
    load_history,
)

NO_LOSS, EXACTLY_ONCE, NEVER_EARLY = "no-loss", "exactly-once", "never-early"
DLQ_EXACT, FENCING, CRON_ONCE = "dlq-exact", "fencing", "cron-once"
START_IN_LEASE, RESTART = "start-in-lease", "restart"
# The server finds a silent stream (its worker stopped or cut off) dead no sooner than its
# keepalive ping timeout, 5 s, after the silence began (less 100 ms for the clocks).
SILENCE_TO_RELEASE_MS = 4_900
INVARIANTS = (
    NO_LOSS,
    EXACTLY_ONCE,
    NEVER_EARLY,
    DLQ_EXACT,
    FENCING,
    CRON_ONCE,
    START_IN_LEASE,
    RESTART,
)
FINAL_STATES = frozenset({"SUCCEEDED", "DEAD", "CANCELED"})
MISSING = "MISSING"  # GetTask answered NOT_FOUND


# -- the final state ----------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class FinalTask:
    state: str  # a TaskState name, or MISSING
    attempt: int = 0
    max_retries: int = 0
    topic: str = ""
    last_error: str = ""
    by_id: bool = True  # False: GetTask by id alone answered NOT_FOUND, with its topic found it


@dataclasses.dataclass(slots=True)
class TopicCounts:
    pending: int = 0
    running: int = 0
    dead: int = 0


@dataclasses.dataclass(slots=True)
class ScheduleFinal:
    id: str
    topic: str
    interval_ms: int  # 0 for a cron expression (no gap check)
    last_fire_ms: int


@dataclasses.dataclass(slots=True)
class FinalState:
    tasks: dict[str, FinalTask] = dataclasses.field(default_factory=dict)
    dead_letters: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    stats: dict[str, TopicCounts] = dataclasses.field(default_factory=dict)
    schedules: list[ScheduleFinal] = dataclasses.field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FinalState:
        return cls(
            tasks={k: FinalTask(**v) for k, v in data.get("tasks", {}).items()},
            dead_letters={k: list(v) for k, v in data.get("dead_letters", {}).items()},
            stats={k: TopicCounts(**v) for k, v in data.get("stats", {}).items()},
            schedules=[ScheduleFinal(**s) for s in data.get("schedules", [])],
        )


# -- the verdict --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Violation:
    invariant: str
    task: str  # "-" when it is about a whole topic
    detail: str


@dataclasses.dataclass(slots=True)
class Counts:
    tasks: int = 0  # acknowledged enqueues plus cron ticks seen
    succeeded: int = 0
    dead: int = 0
    canceled: int = 0
    lost: int = 0
    stuck: int = 0
    executions: int = 0
    duplicates: int = 0  # re-deliveries not caused by a Nack
    explained: int = 0  # ... of which the earlier lease had expired
    early: int = 0
    stale_refused: int = 0  # Ack/Nack refused with FAILED_PRECONDITION (stale token)
    unrecorded: int = 0  # deliveries no recording worker saw (lost replies, killed workers)
    after_deadline: int = 0  # handlers started after their own lease deadline
    skipped: int = 0  # deliveries held and not started (their lease too near its end)
    interrupted: int = 0  # tasks running on a worker when it was SIGKILLed
    restart_max_ms: int | None = None  # the slowest of those to start again after the kill
    unindexed: int = 0  # found with the topic only: GetTask by id alone finds nothing
    acks_lost: int = 0  # accepted Acks undone: the task leased again or not SUCCEEDED at the end
    loss_window_ms: int | None = None  # the oldest lost acknowledgement before its Redis kill


class Findings:
    """What a check found (its dataclass holds `violations`): ok when none; the ids broken."""

    __slots__ = ()
    violations: list[Violation]

    @property
    def ok(self) -> bool:
        return not self.violations

    def offending(self) -> list[str]:
        return sorted({v.task for v in self.violations if v.task != "-"})


@dataclasses.dataclass(slots=True)
class Verdict(Findings):
    counts: Counts
    violations: list[Violation]


# -- the checks ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Restart:
    """A task that was running on `worker` when it was SIGKILLed at `killed_ms`, and when a
    handler started it again (None: never)."""

    task: str
    worker: str
    killed_ms: int
    restarted_ms: int | None
    last_try: bool = False  # the cut attempt was its last (attempt > max_retries): ends DEAD

    @property
    def after_ms(self) -> int | None:
        return None if self.restarted_ms is None else self.restarted_ms - self.killed_ms


def restarts(history: History) -> list[Restart]:
    """Each execution cut by a SIGKILL (started before it, no `end` before it) and the next
    start of its task after the kill."""
    runs = history.by_task()
    out = []
    for worker, killed in sorted(history.kills, key=lambda k: k[1]):
        for e in history.executions:
            if e.worker != worker or e.start_ms > killed:
                continue
            if e.end_ms is not None and e.end_ms <= killed:
                continue
            if history.death_after(worker, e.start_ms) != killed:
                continue  # an earlier kill cut it
            later = [r.start_ms for r in runs[e.task] if r.start_ms > killed]
            again = min(later) if later else None
            out.append(Restart(e.task, worker, killed, again, e.attempt > e.max_retries))
    return out


def check(history: History, final: FinalState, restart_within_ms: int | None = None) -> Verdict:
    """The invariants; `restart_within_ms`: also require every task cut by a SIGKILL to start
    again within that long."""
    counts = Counts()
    found: list[Violation] = []
    runs = history.by_task()
    cron_topics = {s.topic for s in final.schedules}
    tracked = set(history.enqueued)
    tracked |= {e.task for e in history.executions if e.topic in cron_topics}
    tracked |= {t for t, ft in final.tasks.items() if ft.topic in cron_topics}
    counts.tasks = len(tracked)
    counts.executions = len(history.executions)
    _no_loss(history, final, runs, tracked, counts, found)
    _losses(history, final, runs, counts)
    for task, executions in runs.items():
        _hand_out(task, executions, history, counts, found)
        _start_in_lease(task, executions, counts, found)
        _fencing(task, executions, found)
        _early(task, executions, history, counts, found)
    _dlq(final, runs, tracked, found)
    for schedule in final.schedules:
        _cron(schedule, runs, final, found)
    counts.stale_refused = sum(
        1 for e in history.executions for c in e.settles() if c.result == STALE
    )
    counts.skipped = history.skips
    _restart(restarts(history), restart_within_ms, counts, found)
    return Verdict(counts, found)


def _start_in_lease(
    task: str, runs: list[Execution], counts: Counts, found: list[Violation]
) -> None:
    """No handler starts once its lease deadline has passed, nor once a later lease of the task
    began (the server released it: a stream found dead): by then the task is another worker's."""
    for i, e in enumerate(runs):
        later = [b for b in runs[i + 1 :] if b.claim_ms < e.start_ms]
        if later:
            counts.after_deadline += 1
            found.append(
                Violation(
                    START_IN_LEASE,
                    task,
                    f"attempt {e.attempt} ({e.transport}, {e.worker}) started at {e.start_ms},"
                    f" after a later lease (attempt {later[0].attempt}, {later[0].worker})"
                    f" began at {later[0].claim_ms}",
                )
            )
            continue
        deadline = e.deadline_at_start()
        if e.start_ms > deadline:
            counts.after_deadline += 1
            found.append(
                Violation(
                    START_IN_LEASE,
                    task,
                    f"attempt {e.attempt} ({e.transport}, {e.worker}) started at {e.start_ms},"
                    f" {e.start_ms - deadline} ms after its lease deadline {deadline}",
                )
            )


def _restart(
    cut: list[Restart], within_ms: int | None, counts: Counts, found: list[Violation]
) -> None:
    counts.interrupted = len(cut)
    waits = [r.after_ms for r in cut if r.after_ms is not None]
    counts.restart_max_ms = max(waits) if waits else None
    if within_ms is None:
        return
    for r in cut:
        if r.after_ms is None and r.last_try:
            continue  # the lost attempt spent its retries: dead-lettered, rightly not run again
        if r.after_ms is None or r.after_ms > within_ms:
            when = "never" if r.after_ms is None else f"{r.after_ms} ms after"
            found.append(
                Violation(
                    RESTART,
                    r.task,
                    f"running on {r.worker} when it was SIGKILLed at {r.killed_ms}, started"
                    f" again {when} (bound {within_ms} ms)",
                )
            )


def _no_loss(
    history: History,
    final: FinalState,
    runs: dict[str, list[Execution]],
    tracked: Iterable[str],
    counts: Counts,
    found: list[Violation],
) -> None:
    for task in sorted(tracked):
        state = final.tasks.get(task, FinalTask(MISSING)).state
        counts.succeeded += state == "SUCCEEDED"
        counts.dead += state == "DEAD"
        counts.canceled += state == "CANCELED"
        if state == MISSING:
            counts.lost += 1
            found.append(Violation(NO_LOSS, task, "acknowledged, but GetTask finds no such task"))
        elif not final.tasks[task].by_id:
            counts.unindexed += 1
            found.append(
                Violation(NO_LOSS, task, "found with its topic only: its id index was lost")
            )
        elif state not in FINAL_STATES:
            counts.stuck += 1
            found.append(Violation(NO_LOSS, task, f"still {state} after the queue drained"))
        acked = [e for e in runs.get(task, []) if any(c.kind == "ack" for c in _accepted(e))]
        if acked and state != "SUCCEEDED":
            found.append(
                Violation(
                    NO_LOSS, task, f"Ack of attempt {acked[0].attempt} accepted, ends {state}"
                )
            )
        cancels = [c for c in history.cancels.get(task, []) if c.result == OK]
        if cancels and state != "CANCELED":
            found.append(Violation(NO_LOSS, task, f"cancel accepted, ends {state}"))
        late = [e for e in runs.get(task, []) if cancels and e.claim_ms > cancels[0].done_ms]
        if late:
            found.append(
                Violation(NO_LOSS, task, f"attempt {late[0].attempt} leased after its cancel")
            )


def _losses(
    history: History, final: FinalState, runs: dict[str, list[Execution]], counts: Counts
) -> None:
    """Counted for the failover scenarios (their violations are no-loss and exactly-once):
    accepted Acks undone, and the loss window: how long before the Redis master's SIGKILL the
    oldest lost acknowledgement (an enqueue missing at the end, an undone Ack) was answered."""
    acked_at: list[int] = []
    for task, enqueued in history.enqueued.items():
        got = final.tasks.get(task, FinalTask(MISSING))
        if got.state == MISSING or not got.by_id:
            acked_at.append(enqueued.acked_ms)
    for task, executions in runs.items():
        for i, e in enumerate(executions):
            ack = next((c for c in _accepted(e) if c.kind == "ack"), None)
            if ack is None:
                continue
            state = final.tasks.get(task, FinalTask(MISSING)).state
            if executions[i + 1 :] or state != "SUCCEEDED":
                counts.acks_lost += 1
                acked_at.append(ack.done_ms)
            break
    windows = []
    for t in acked_at:
        kills = [k for k in history.redis_kills if k >= t]
        if kills:
            windows.append(min(kills) - t)
    counts.loss_window_ms = max(windows) if windows else None


def _accepted(e: Execution) -> list[Call]:
    return [c for c in e.calls if c.accepted]


def _hand_out(
    task: str, runs: list[Execution], history: History, counts: Counts, found: list[Violation]
) -> None:
    """Exactly one live lease: no delivery while an earlier lease was valid and unsettled."""
    tokens = [e.token for e in runs]
    if len(set(tokens)) != len(tokens):
        found.append(Violation(EXACTLY_ONCE, task, "one lease token delivered twice"))
    attempts = [e.attempt for e in runs]
    if len(set(attempts)) != len(attempts):
        found.append(Violation(EXACTLY_ONCE, task, f"two leases with one attempt: {attempts}"))
    counts.unrecorded += (runs[0].attempt - 1) if runs else 0
    for i, a in enumerate(runs):
        ended = _lease_end(a, runs[i + 1] if i + 1 < len(runs) else None, history)
        for b in runs[i + 1 :]:
            if any(c.kind == "ack" for c in _accepted(a)):
                detail = f"attempt {b.attempt} leased after attempt {a.attempt}'s Ack was accepted"
                found.append(Violation(EXACTLY_ONCE, task, detail))
            elif b.claim_ms < ended:
                found.append(
                    Violation(
                        EXACTLY_ONCE,
                        task,
                        f"attempt {b.attempt} leased at {b.claim_ms} while attempt {a.attempt}'s"
                        f" lease was valid until {ended} and unsettled",
                    )
                )
    for a, b in itertools.pairwise(runs):
        counts.unrecorded += max(b.attempt - a.attempt - 1, 0)
        if not (_settled_by(a, b.claim_ms, kinds=("nack",)) or _requeued_by_nack(a, b)):
            counts.duplicates += 1
            counts.explained += b.claim_ms >= _valid_until(a, history)


def _valid_until(a: Execution, history: History) -> int:
    """`a`'s known deadline, or earlier: the first call the server answered "stale" (its token
    was no longer current then); for a stream delivery, its worker's SIGKILL (the server
    releases a broken stream's leases at once), or SILENCE_TO_RELEASE_MS into a silence of its
    worker longer than that (the keepalive may have found the stream dead)."""
    ends = [a.known_deadline()]
    ends += [c.done_ms for c in a.calls if c.result == STALE]
    if a.transport == "stream":
        death = history.death_after(a.worker, a.start_ms)
        if death is not None:
            ends.append(death)
        ends += [
            since + SILENCE_TO_RELEASE_MS
            for worker, since, until in history.silences
            if worker == a.worker
            and until - since > SILENCE_TO_RELEASE_MS
            and a.claim_ms <= since + SILENCE_TO_RELEASE_MS
        ]
    return min(ends)


def _lease_end(a: Execution, after: Execution | None, history: History) -> int:
    """When `a`'s lease surely ended: its deadline (or its stream worker's SIGKILL), its
    accepted Ack/Nack (first sent), or the Nack that evidently re-queued the task before the
    deadline (see _requeued_by_nack)."""
    ends = [_valid_until(a, history)]
    ends += [a.first_sent(c.kind) or c.sent_ms for c in a.settles() if c.accepted]
    if after is not None and _requeued_by_nack(a, after):
        ends.append(after.due_ms)
    return min(ends)


def _requeued_by_nack(a: Execution, b: Execution) -> bool:
    """The next delivery carries a due time set after `a` was leased and before its lease ran
    out: only `a`'s own Nack can have set it (a recovered lease is due at or after its
    deadline), so that Nack landed whatever its reply said."""
    first = a.first_sent("nack")
    return (
        b.attempt == a.attempt + 1
        and first is not None
        and first <= b.due_ms
        and a.claim_ms < b.due_ms < a.known_deadline()
    )


def _settled_by(e: Execution, when_ms: int, kinds: tuple[str, ...] = ("ack", "nack")) -> bool:
    """An accepted Ack/Nack of `e` whose first try was sent by `when_ms` (so it may have landed
    before then: an idempotent retry of it may be accepted later)."""
    for c in _accepted(e):
        first = e.first_sent(c.kind)
        if c.kind in kinds and first is not None and first <= when_ms:
            return True
    return False


def _fencing(task: str, runs: list[Execution], found: list[Violation]) -> None:
    """No call with a superseded token accepted: every accepted call was first sent before any
    later lease of the task began. And no refusal of a call that did change the task."""
    for i, a in enumerate(runs):
        later = [b.claim_ms for b in runs[i + 1 :]]
        if not later:
            continue
        superseded_at = min(later)
        for c in _accepted(a):
            first = c.sent_ms if c.kind == "extend" else a.first_sent(c.kind)
            if first is not None and first > superseded_at:
                found.append(
                    Violation(
                        FENCING,
                        task,
                        f"{c.kind} with attempt {a.attempt}'s token accepted, sent at {first}"
                        f" after a later lease began at {superseded_at}",
                    )
                )
        nacks = [c for c in a.calls if c.kind == "nack"]
        refused = [c.result for c in nacks if c.result in REFUSED]
        if refused and not any(c.accepted for c in nacks) and _requeued_by_nack(a, runs[i + 1]):
            found.append(
                Violation(
                    FENCING,
                    task,
                    f"Nack of attempt {a.attempt} answered {refused[0]} (refused, changes nothing)"
                    f" but it was applied: attempt {runs[i + 1].attempt} carried the retry time"
                    f" {runs[i + 1].due_ms} it set, before the lease's deadline"
                    f" {a.known_deadline()}",
                )
            )


def _early(
    task: str, runs: list[Execution], history: History, counts: Counts, found: list[Violation]
) -> None:
    enqueued = history.enqueued.get(task)
    for prev, e in zip([None, *runs], runs, strict=False):
        floors = {"the due time it carried": e.due_ms}
        if enqueued is not None:
            floors["the enqueued due time"] = enqueued.due_ms
        retry = _retry_due(prev, e.claim_ms) if prev is not None else 0
        if retry:
            floors["the retry time of the Nack before it"] = retry
        broken = {name: due for name, due in floors.items() if min(e.claim_ms, e.start_ms) < due}
        if broken:
            counts.early += 1
            name, due = next(iter(broken.items()))
            found.append(
                Violation(
                    NEVER_EARLY,
                    task,
                    f"attempt {e.attempt} leased at {e.claim_ms}, {due - e.claim_ms} ms before"
                    f" {name} ({due})",
                )
            )


def _retry_due(prev: Execution, claim_ms: int) -> int:
    """When the accepted Nack of `prev` (sent before `claim_ms`) made the task due again."""
    nacks = [c for c in _accepted(prev) if c.kind == "nack"]
    if nacks and _settled_by(prev, claim_ms, ("nack",)):
        return nacks[0].next_due_ms
    return 0


def _dlq(
    final: FinalState,
    runs: dict[str, list[Execution]],
    tracked: Iterable[str],
    found: list[Violation],
) -> None:
    listed = {task for ids in final.dead_letters.values() for task in ids}
    for task in sorted(tracked):
        ft = final.tasks.get(task, FinalTask(MISSING))
        nacks = [(e, c) for e in runs.get(task, []) for c in _accepted(e) if c.kind == "nack"]
        asked = any(c.dead_letter or c.dead_lettered for _, c in nacks)
        for e, c in nacks:
            expected = c.dead_letter or e.attempt > e.max_retries
            if c.dead_lettered != expected:
                found.append(
                    Violation(
                        DLQ_EXACT,
                        task,
                        f"Nack of attempt {e.attempt} (max_retries {e.max_retries}, dead_letter"
                        f" {c.dead_letter}) answered dead_lettered={c.dead_lettered}",
                    )
                )
        if ft.state == "DEAD" and not asked and ft.attempt <= ft.max_retries:
            found.append(
                Violation(
                    DLQ_EXACT,
                    task,
                    f"DEAD after {ft.attempt} attempts (max_retries {ft.max_retries})"
                    " and no Nack asked for it",
                )
            )
        if asked and ft.state != "DEAD":
            found.append(Violation(DLQ_EXACT, task, f"dead-lettered by a Nack, ends {ft.state}"))
        if (ft.state == "DEAD") != (task in listed):
            where = "listed" if task in listed else "not listed"
            found.append(Violation(DLQ_EXACT, task, f"{ft.state} but {where} in ListDeadLetters"))
    for topic, ids in final.dead_letters.items():
        stats = final.stats.get(topic)
        if stats is not None and stats.dead != len(ids):
            found.append(
                Violation(
                    DLQ_EXACT,
                    "-",
                    f"{topic}: GetStats dead={stats.dead}, ListDeadLetters {len(ids)}",
                )
            )


def _cron(
    schedule: ScheduleFinal,
    runs: dict[str, list[Execution]],
    final: FinalState,
    found: list[Violation],
) -> None:
    ticks: dict[int, list[str]] = {}
    ids = {t for t, rs in runs.items() if rs and rs[0].topic == schedule.topic}
    ids |= {t for t, ft in final.tasks.items() if ft.topic == schedule.topic}
    ids |= set(final.dead_letters.get(schedule.topic, []))
    for task in sorted(ids):
        tick = _tick_of(task, runs.get(task, []))
        if tick is not None:
            ticks.setdefault(tick, []).append(task)
    for tick, tasks in sorted(ticks.items()):
        if len(tasks) > 1:
            for task in tasks:
                found.append(
                    Violation(CRON_ONCE, task, f"{schedule.id}: tick {tick} has {len(tasks)} tasks")
                )
    if not ticks or not schedule.interval_ms or not schedule.last_fire_ms:
        return
    first = min(ticks)
    for tick in range(first, schedule.last_fire_ms + 1, schedule.interval_ms):
        if tick not in ticks:
            found.append(Violation(CRON_ONCE, "-", f"{schedule.id}: tick {tick} has no task"))


def _tick_of(task: str, runs: list[Execution]) -> int | None:
    """The tick a cron task stands for: the due time of its first delivery, else the tick in
    its id (`sched:<schedule id>:<tick ms>`, the scheduler's idempotency key)."""
    first = [e.due_ms for e in runs if e.attempt == 1]
    if first:
        return first[0]
    tail = task.rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() else None


# -- showing what went wrong --------------------------------------------------------------


def describe_task(task: str, history: History, final: FinalState) -> str:
    """A task's whole recorded history, one event per line, for a failure report."""
    lines = [f"task {task}"]
    ran = {e.worker for e in history.by_task().get(task, [])}
    lines += [f"  (SIGKILL {w} at {t})" for w, t in history.kills if w in ran]
    enq = history.enqueued.get(task)
    if enq is not None:
        lines.append(
            f"  enqueue  topic={enq.topic} mode={enq.mode} max_retries={enq.max_retries}"
            f" due={enq.due_ms} acked={enq.acked_ms}"
        )
    for cancel in history.cancels.get(task, []):
        lines.append(
            f"  cancel   sent={cancel.sent_ms} done={cancel.done_ms} result={cancel.result}"
        )
    for e in history.by_task().get(task, []):
        lines.append(
            f"  lease    attempt={e.attempt} worker={e.worker} {e.transport} token={e.token}"
            f" due={e.due_ms} claim={e.claim_ms} deadline={e.known_deadline()} start={e.start_ms}"
            f" end={e.end_ms} outcome={e.outcome or '-'}"
        )
        for c in e.calls:
            extra = f" deadline={c.deadline_ms}" if c.kind == "extend" else ""
            if c.kind == "nack":
                extra = f" dead_letter={c.dead_letter} dead_lettered={c.dead_lettered}"
                extra += f" next_due={c.next_due_ms}"
            lines.append(
                f"    {c.kind:<7} sent={c.sent_ms} done={c.done_ms} result={c.result}{extra}"
            )
    ft = final.tasks.get(task)
    if ft is not None:
        lines.append(
            f"  final    state={ft.state} attempt={ft.attempt} max_retries={ft.max_retries}"
            f" last_error={ft.last_error!r}"
        )
    return "\n".join(lines)


def failure_report(verdict: Verdict, history: History, final: FinalState, limit: int = 20) -> str:
    lines = [f"{len(verdict.violations)} invariant violation(s):"]
    lines += [f"  [{v.invariant}] {v.task}: {v.detail}" for v in verdict.violations[:200]]
    offending = verdict.offending()
    lines.append(f"offending task ids ({len(offending)}): {' '.join(offending)}")
    lines += [describe_task(t, history, final) for t in offending[:limit]]
    return "\n".join(lines)


def check_run(run_dir: Path) -> tuple[Verdict, History, FinalState]:
    """Check a run directory: its *.jsonl logs and final.json."""
    history = load_history(run_dir)
    final = FinalState.from_json(json.loads((run_dir / "final.json").read_text()))
    return check(history, final), history, final


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m chaos.checker <run dir>", file=sys.stderr)
        return 2
    verdict, history, final = check_run(Path(argv[0]))
    print(json.dumps(dataclasses.asdict(verdict.counts)))
    broken = not verdict.ok
    if broken:
        print(failure_report(verdict, history, final))
    runs_json = Path(argv[0]) / "runs.json"
    if runs_json.exists():  # a workflow scenario: its runs too
        from chaos.runcheck import RunsFinal, check_runs, run_failure_report

        runs = RunsFinal.from_json(json.loads(runs_json.read_text()))
        run_verdict = check_runs(history, runs)
        print(json.dumps(dataclasses.asdict(run_verdict.counts)))
        if not run_verdict.ok:
            print(run_failure_report(run_verdict, history, runs))
            broken = True
    if broken:
        return 1
    print("all invariants hold")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
