"""W7 (workflows, issue 16) in docs/BENCHMARKS.md: its targets with verdicts and its table.
The issue calls this workload W6; W6 was already the lateness under load, so it is W7 here.
Pure functions over the plain dicts loadtest/bench.py collects; stdlib only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from sections import NAMES, get, med, ms, quotient, rate, ratio, table, w1_rate

W7_SYSTEMS = ("atp", "celery", "bullmq")
W7_HOW = {
    "atp": "a `Workflow` of 3 steps (`after` the previous), SDK `Worker(concurrency=10)`",
    "celery": "`chain(a.si(), b.si(), c.si())`, `celery worker -c 10` (prefork)",
    "bullmq": "`FlowProducer` child -> parent -> grandparent, `Worker` concurrency 10",
}
HANDOFF_P99_MS = 3.0
WAITING_RUN_BYTES = 1024


def w7_items(runs: Sequence[dict[str, Any]], system: str, phase: str) -> list[Any]:
    return [((r.get("w7") or {}).get(system) or {}).get(phase) or {} for r in runs]


def w7_figure(runs: Sequence[dict[str, Any]], system: str, phase: str, stat: str) -> float:
    return med(w7_items(runs, system, phase), stat)


def _verdict(ok: bool | None) -> str:
    return "not measured" if ok is None else ("met" if ok else "**missed**")


def w7_targets(runs: Sequence[dict[str, Any]]) -> list[str]:
    ours = w7_figure(runs, "atp", "throughput", "runs_per_s")
    celery = w7_figure(runs, "celery", "throughput", "runs_per_s")
    bull = w7_figure(runs, "bullmq", "throughput", "runs_per_s")
    p99 = w7_figure(runs, "atp", "handoff", "handoff_p99_ms")
    waiting = w7_figure(runs, "atp", "memory", "bytes_per_run")

    def at_least(q: float, goal: float) -> bool | None:
        return None if math.isnan(q) else q >= goal

    rows = [
        [
            "W7 3-step chains completed/s: >= 2x Celery `chain`",
            f"atp {rate(ours)}/s, Celery {rate(celery)}/s: {ratio(ours, celery)}",
            _verdict(at_least(quotient(ours, celery), 2.0)),
        ],
        [
            "W7 3-step chains completed/s: >= 1x BullMQ `FlowProducer`",
            f"atp {rate(ours)}/s, BullMQ {rate(bull)}/s: {ratio(ours, bull)}",
            _verdict(at_least(quotient(ours, bull), 1.0)),
        ],
        [
            f"W7 hand-off p99 <= {HANDOFF_P99_MS:.0f} ms",
            f"{ms(p99)} ms",
            _verdict(None if math.isnan(p99) else p99 <= HANDOFF_P99_MS),
        ],
        [
            "W7 <= 1 KB per run waiting in a 3-day delay, beyond payloads",
            f"{rate(waiting)} bytes",
            _verdict(None if math.isnan(waiting) else waiting <= WAITING_RUN_BYTES),
        ],
    ]
    missed = {
        key
        for key, row in zip(("celery", "bullmq", "p99", "bytes"), rows, strict=True)
        if "missed" in row[2]
    }
    return [
        "## Targets (issue 16, workflows: W7)",
        "",
        *table(["target", "measured (medians, same run)", "verdict"], rows),
        *w7_bounds(runs, missed),
    ]


W7_BOUNDS = {
    "celery": "the server's Python per hand-off. py-spy on the server during the W7 drain "
    "shows its event loop saturated (about 97% of its samples): a third hand-offs, an eighth "
    "the poll loop's safety looks at runs whose step waits in the queue over a second (now "
    "backed off from the run's own and its topic's queue wait, and a new run's first steps "
    "scheduled by StartRun itself, so no advancer reads a new run: reads of a run halved, "
    "6% of the server's samples where they were 19.5%, yet runs/s did not move, the reads "
    "saved falling while the chains are started, not while they drain; docs/adr/0010, "
    '"The run\'s start without a read"), the '
    "rest sending and parsing small Redis round trips (asyncio's socket write, redis-py's "
    "packing and parsing) and the worker stream. The hand-off is now, on a single Redis, "
    "one script that records the step, schedules the next and writes its task "
    "(step_hand_off.lua; on a Redis Cluster one pipeline to the run's slot plus the task's "
    'write), gathered across runs under load (docs/adr/0010, "one script"), where it was '
    "a read of the run and its step tasks, that pipeline, the write and a look written, per "
    "step, with every run re-read each second; what remains per step is the Ack, the "
    "workflow message, that one round trip and the claim, on the same 2 cores as the worker "
    "and Redis.",
    "bullmq": "the worker path before advancement: W1 at the same worker settings "
    "{w1} bounds 3-step chains at a third of that even with advancement free, below "
    "BullMQ's flows (its FlowProducer moves a parent on inside the script that completes "
    "the child: one round trip, one slot). atp's steps are tasks on topics, and a step's "
    "end and the next step's task are in different slots, which no script may join on a "
    "Redis Cluster (ADR 0010): there a hand-off is a message and two round trips, on a "
    "single Redis a message and one (step_hand_off.lua). What would reach it: the SDK "
    "worker's per-task cost (issue 12's W1 miss), then advancing inside the Ack's own "
    "script where the run and the topic share a node.",
    "p99": "every hop timed on a running worker (chains 20 ms apart, quiet machine, p50 "
    "from the server reading the Ack): ack.lua's message at the advancer 0.44 ms, the "
    "finish-and-schedule pipeline answered 1.08, the next task's wake-up 1.42, its claim "
    "pushed 1.88, the handler started 2.46 (the settle took 0.33 to reach the server): four "
    "Redis round trips in a row and two gRPC hops, 0.2-0.5 ms of Python each on the "
    'server\'s one loop (docs/adr/0010, "timed hop by hop"). On a single Redis the '
    "finish-and-schedule pipeline and the next task's write are now one script "
    "(step_hand_off.lua): three round trips (the Ack, the hand-off, the claim); 30 "
    "interleaved W7 runs each on a loaded machine: p50 4.59 -> 4.23 ms, p99 21.5 -> 18.5 "
    '(docs/adr/0010, "one script"). The tail is those hops '
    "meeting other work on the 2 shared cores: compare the peers' p99 in the same run. The "
    "two pub/sub hops are not on the path: counted, ack.lua's message reached the advancer "
    "before the Ack's reply was parsed for 97% of step tasks, the next task's wake-up the "
    "push loop before the write's reply for 99.7%, so handing both over in-process gained "
    'nothing (tried, not kept; docs/adr/0010, "not on the hand-off\'s path"). What would '
    "reach it: fewer of the three round trips (claiming the next task in the pipeline that "
    "writes it was tried: 0.13 ms sooner, lost in the noise), above all "
    "advancing in the Ack's round trip where the run and the topic share a node, and a "
    "cheaper worker data path.",
}


def w7_bounds(runs: Sequence[dict[str, Any]], missed: set[str]) -> list[str]:
    """For each W7 target missed: what the profile and the hop timing show bounds it, and
    what would reach it."""
    if not missed:
        return []
    w1 = w1_rate(runs, "atp-c10")
    w1_text = f"({rate(w1)} tasks/s in this run)" if not math.isnan(w1) else "(W1 not run)"
    names = {"celery": ">= 2x Celery", "bullmq": ">= 1x BullMQ", "p99": "hand-off p99"}
    items = [
        f"- **W7 {names[key]}**: " + W7_BOUNDS[key].format(w1=w1_text)
        for key in ("celery", "bullmq", "p99")
        if key in missed
    ]
    return ["", "What bounds the missed W7 targets:", "", *items] if items else []


def w7_section(runs: Sequence[dict[str, Any]]) -> list[str]:
    systems = [s for s in W7_SYSTEMS if any(w7_items(runs, s, "throughput"))]
    if not systems:
        return []
    rows = []
    for s in systems:
        thr, hand = w7_items(runs, s, "throughput"), w7_items(runs, s, "handoff")
        rows.append(
            [
                NAMES[s],
                W7_HOW[s],
                rate(med(thr, "runs_per_s")),
                ms(med(hand, "handoff_p50_ms")),
                ms(med(hand, "handoff_p99_ms")),
                ms(med(hand, "handoff_max_ms")),
                f"{sum(get(i, 'runs') - get(i, 'complete') for i in thr + hand):.0f}",
                f"{sum(get(i, 'twice') for i in thr + hand):.0f}",
            ]
        )
    waiting = w7_items(runs, "atp", "memory")
    lines = [
        '## W7 workflows: 3-step chains (the issue\'s "W6"; W6 here is the lateness under load)',
        "",
        "Each step is the W1 handler (record the start, one Redis `INCR`), worker concurrency "
        "10. Runs/s: every chain enqueued before the worker starts (atp: `StartRun` and the "
        "first step written), runs completed per second from the first step's start to the "
        "last one's. Hand-off: on a running worker, chains started 20 ms apart; one step's "
        "start to the next step's start, ms (after 5 warm-up chains). Medians of the runs; "
        "incomplete and twice summed.",
        "",
    ]
    header = ["system", "how", "runs/s", "hand-off p50", "p99", "max", "incomplete", "twice"]
    lines += table(header, rows)
    lines += [
        "",
        "Redis bytes per run waiting in a 3-day delay step (atp; `used_memory` without client "
        "buffers; empty input and payloads, "
        f"{rate(med(waiting, 'waiting_runs'))} runs, a 2-step workflow): "
        f"{rate(med(waiting, 'bytes_per_run'))} bytes.",
    ]
    return lines
