"""The recorded history: append-only JSON-lines logs, one per process, and their reader.

Producers write `enqueue` and `cancel` events, the run producer `run_start` and `run_call`
(CancelRun, SignalRun) events; workers write `start`, `skip` (a delivery not
started: its lease was too close to its end or the stream was stale), `end` and `call` (Ack,
Nack, ExtendLease or a stream HOLD) events; scenarios write `kill` (a worker SIGKILLed, at
`t_ms`), `kill_server` (an atp process SIGKILLed) and `silent` (a worker stopped or cut off
from `t_ms` to `until_ms`) to faults.jsonl.
One line each, flushed by a single os.write, so a SIGKILL loses at most the line being written.
Stdlib only; imports nothing of atp.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

# What a settle/extend/cancel call came back with.
OK = "ok"
STALE = "stale"  # FAILED_PRECONDITION: the lease token is not the current one
NOT_FOUND = "not_found"
WRONG_STATE = "wrong_state"
REPEAT = "repeat"  # CancelRun: canceled before; SignalRun: a signal of the name came before
REFUSED = frozenset({STALE, NOT_FOUND, WRONG_STATE})  # the server said no: nothing changed


def now_ms() -> int:
    """Wall clock in ms: the same clock Redis TIME reads on this host."""
    return time.time_ns() // 1_000_000


class LogWriter:
    """Appends one JSON object per line; each line goes out in one write(2) on an O_APPEND fd."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, event: str, **fields: Any) -> None:
        line = json.dumps({"ev": event, **fields}, separators=(",", ":")) + "\n"
        os.write(self._fd, line.encode())

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> LogWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def read_events(path: Path) -> Iterator[dict[str, Any]]:
    """Every complete line of one log (a torn last line, from a SIGKILL, is skipped)."""
    with path.open(encoding="utf-8") as f:
        for line in f:
            if not line.endswith("\n"):
                break
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue


# -- the history as the checker sees it ----------------------------------------------------


@dataclasses.dataclass(slots=True)
class Enqueued:
    """An enqueue the server acknowledged."""

    id: str
    topic: str
    mode: str
    max_retries: int
    due_ms: int  # the absolute due time sent (execute_at_ms)
    acked_ms: int


@dataclasses.dataclass(slots=True)
class Cancel:
    id: str
    sent_ms: int
    done_ms: int
    result: str


@dataclasses.dataclass(slots=True)
class Call:
    """One Ack, Nack or ExtendLease attempt and what came back."""

    kind: str  # ack | nack | extend
    sent_ms: int
    done_ms: int
    result: str  # ok, stale, not_found, wrong_state or error:<STATUS>
    dead_letter: bool = False  # nack: asked to dead-letter
    dead_lettered: bool = False  # nack: the server's answer
    next_due_ms: int = 0  # nack: when the task is due again
    deadline_ms: int = 0  # extend: the new lease deadline

    @property
    def accepted(self) -> bool:
        return self.result == OK


@dataclasses.dataclass(slots=True)
class Execution:
    """One delivery of a task to a recording worker (one lease token)."""

    worker: str
    task: str
    topic: str
    token: str
    attempt: int
    max_retries: int
    due_ms: int  # the due time the task carried when it was leased
    lease_ms: int
    deadline_ms: int  # the first lease deadline (Redis clock)
    start_ms: int  # when the handler started
    end_ms: int | None = None  # handler finished (None: the worker died first)
    outcome: str = ""  # ack | nack | dead_letter
    calls: list[Call] = dataclasses.field(default_factory=list)
    transport: str = "unary"  # unary (Retrieve) | stream (Work: the server renews the lease)
    start_deadline_ms: int = 0  # the deadline the worker knew when it started (a HOLD renews)

    @property
    def claim_ms(self) -> int:
        """When Redis leased it: the claim script sets deadline = now + lease."""
        return self.deadline_ms - self.lease_ms

    def known_deadline(self) -> int:
        """The latest lease deadline the server confirmed (first lease, an accepted extend or
        HOLD). A stream's renewals by the server are not seen: for a stream delivery this is a
        lower bound while its stream lived."""
        extended = [c.deadline_ms for c in self.calls if c.kind == "extend" and c.accepted]
        return max([self.deadline_ms, self.start_deadline_ms, *extended])

    def deadline_at_start(self) -> int:
        """The lease deadline known when the handler started: the one it came with (or a
        HOLD's before the start), or an extend answered by then."""
        extended = [
            c.deadline_ms
            for c in self.calls
            if c.kind == "extend" and c.accepted and c.done_ms <= self.start_ms
        ]
        return max([self.deadline_ms, self.start_deadline_ms, *extended])

    def settles(self) -> list[Call]:
        return [c for c in self.calls if c.kind in ("ack", "nack")]

    def accepted_settle(self) -> Call | None:
        return next((c for c in self.settles() if c.accepted), None)

    def first_sent(self, kind: str) -> int | None:
        sent = [c.sent_ms for c in self.calls if c.kind == kind]
        return min(sent) if sent else None


@dataclasses.dataclass(slots=True)
class RunStarted:
    """A StartRun the server acknowledged (chaos/runs.py)."""

    id: str
    workflow: str
    sent_ms: int
    acked_ms: int


@dataclasses.dataclass(slots=True)
class RunCall:
    """One CancelRun or SignalRun attempt and what came back: `ok` (this call canceled the run
    or kept the signal), `repeat` (canceled before / a signal of the name came before),
    `wrong_state` (the run had finished) or `error:<STATUS>`."""

    kind: str  # cancel | signal
    run: str
    sent_ms: int
    done_ms: int
    result: str
    name: str = ""  # signal: its name
    payload: str = ""  # signal: its payload
    attempts: int = 1  # tries (a transport error is retried): an earlier one may have landed


@dataclasses.dataclass(slots=True)
class History:
    enqueued: dict[str, Enqueued] = dataclasses.field(default_factory=dict)
    cancels: dict[str, list[Cancel]] = dataclasses.field(default_factory=dict)
    executions: list[Execution] = dataclasses.field(default_factory=list)
    kills: list[tuple[str, int]] = dataclasses.field(default_factory=list)  # (worker, t_ms)
    # (worker, from, until): stopped or cut off, so its server may find its stream dead
    silences: list[tuple[str, int, int]] = dataclasses.field(default_factory=list)
    skips: int = 0  # deliveries a worker held and did not start (past or near their deadline)
    runs: dict[str, RunStarted] = dataclasses.field(default_factory=dict)  # workflow runs
    run_calls: dict[str, list[RunCall]] = dataclasses.field(default_factory=dict)  # by run
    server_kills: list[tuple[str, int]] = dataclasses.field(default_factory=list)  # atp side
    redis_kills: list[int] = dataclasses.field(default_factory=list)  # a Redis master's SIGKILL

    def death_after(self, worker: str, t_ms: int) -> int | None:
        """When `worker` was first SIGKILLed at or after `t_ms` (None: it was not)."""
        times = [k for w, k in self.kills if w == worker and k >= t_ms]
        return min(times) if times else None

    def by_task(self) -> dict[str, list[Execution]]:
        """Each task's executions in lease order (the Redis clock of their claims)."""
        out: dict[str, list[Execution]] = {}
        for e in self.executions:
            out.setdefault(e.task, []).append(e)
        for runs in out.values():
            runs.sort(key=lambda e: (e.claim_ms, e.attempt))
        return out


def load_history(directory: Path) -> History:
    """Every *.jsonl log in `directory` merged into one History."""
    history = History()
    open_runs: dict[str, Execution] = {}
    for path in sorted(directory.glob("*.jsonl")):
        for event in read_events(path):
            _apply(history, open_runs, event)
    return history


def _kill(history: History, ev: dict[str, Any]) -> None:
    """A worker's SIGKILL, or a Redis master's (cluster_failover)."""
    if ev["ev"] == "redis_kill":
        history.redis_kills.append(ev["t_ms"])
    else:
        history.kills.append((ev["worker"], ev["t_ms"]))


def _apply(history: History, runs: dict[str, Execution], ev: dict[str, Any]) -> None:
    kind = ev.get("ev")
    if kind == "enqueue":
        history.enqueued[ev["id"]] = Enqueued(
            ev["id"], ev["topic"], ev["mode"], ev["max_retries"], ev["due_ms"], ev["acked_ms"]
        )
    elif kind == "cancel":
        cancel = Cancel(ev["id"], ev["sent_ms"], ev["done_ms"], ev["result"])
        history.cancels.setdefault(ev["id"], []).append(cancel)
    elif kind == "start":
        run = Execution(
            ev["worker"],
            ev["task"],
            ev["topic"],
            ev["token"],
            ev["attempt"],
            ev["max_retries"],
            ev["due_ms"],
            ev["lease_ms"],
            ev.get("first_deadline_ms", ev["deadline_ms"]),
            ev["start_ms"],
            transport=ev.get("transport", "unary"),
            start_deadline_ms=ev["deadline_ms"],
        )
        runs[run.token] = run
        history.executions.append(run)
    elif kind in ("kill", "redis_kill"):
        _kill(history, ev)
    elif kind == "kill_server":
        history.server_kills.append((ev["process"], ev["t_ms"]))
    elif kind == "run_start":
        history.runs[ev["id"]] = RunStarted(ev["id"], ev["workflow"], ev["sent_ms"], ev["acked_ms"])
    elif kind == "run_call":
        fields = {f.name for f in dataclasses.fields(RunCall)}
        call = RunCall(**{k: v for k, v in ev.items() if k in fields})
        history.run_calls.setdefault(call.run, []).append(call)
    elif kind == "silent":
        history.silences.append((ev["worker"], ev["t_ms"], ev["until_ms"]))
    elif kind == "skip":
        history.skips += 1
    elif kind == "end" and ev["token"] in runs:
        runs[ev["token"]].end_ms = ev["end_ms"]
        runs[ev["token"]].outcome = ev["outcome"]
    elif kind == "call" and ev["token"] in runs:
        fields = {f.name for f in dataclasses.fields(Call)}
        runs[ev["token"]].calls.append(Call(**{k: v for k, v in ev.items() if k in fields}))
