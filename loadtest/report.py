"""Renders docs/BENCHMARKS.md from the figures loadtest/bench.py collected: the targets of
issue 12 (and the earlier ones of issue 6), each with its measured figure and a verdict
computed from the data, the workload tables of loadtest/sections.py, a before/after table
against loadtest/baseline.json, and the profile's evidence for each missed target. Pure
functions over plain dicts; stdlib only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from sections import (
    API_RUNS,
    NAN,
    api_section,
    cluster_section,
    cpu_per_task,
    durability_section,
    enqueue_section,
    floor_text,
    fsync_section,
    get,
    med,
    ms,
    part,
    profile_section,
    quotient,
    rate,
    ratio,
    table,
    total,
    w1_rate,
    w1_section,
    w2_section,
    w3_section,
    w4_section,
    w5_section,
    w6_section,
)
from workflow_report import w7_figure, w7_section, w7_targets

__all__ = ["API_RUNS", "get", "ratio", "render", "summary"]

Row = list[str]


def verdict(ok: bool | None) -> str:
    """met / **missed**; None (a figure is missing): not measured."""
    if ok is None:
        return "not measured"
    return "met" if ok else "**missed**"


def check(value: float, good: Callable[[float], bool]) -> bool | None:
    return None if math.isnan(value) else good(value)


def versus(ours: float, bull: float) -> str:
    return f"atp {rate(ours)}/s, BullMQ {rate(bull)}/s: {ratio(ours, bull)}".replace(
        "failed/s", "not measured"
    )


def w1_target(runs: Sequence[dict[str, Any]], conc: int, goal: float, stretch: float) -> Row:
    ours, bull = w1_rate(runs, f"atp-c{conc}"), w1_rate(runs, f"bullmq-c{conc}")
    q = quotient(ours, bull)
    met = check(q, lambda v: v >= goal)
    note = " (stretch met)" if met and stretch and q >= stretch else ""
    target = f"W1, concurrency {conc}, sync INCR handler: >= {goal:.1f}x BullMQ"
    target += f" (stretch {stretch:.1f}x)" if stretch else ""
    return [target, versus(ours, bull), verdict(met) + note]


def enqueue_target(runs: Sequence[dict[str, Any]]) -> Row:
    ours = med(part(runs, "enqueue", "atp"), "sequential_per_s")
    bull = med(part(runs, "enqueue", "bullmq"), "sequential_per_s")
    return [
        "Sequential enqueue (`Client.enqueue()` one at a time): >= 1.0x BullMQ's `queue.add`",
        versus(ours, bull),
        verdict(check(quotient(ours, bull), lambda v: v >= 1.0)),
    ]


def concurrent_target(runs: Sequence[dict[str, Any]]) -> Row:
    ours = med(part(runs, "enqueue", "atp"), "concurrent_1000_per_s")
    return [
        "Concurrent enqueue from one producer process (1,000 in flight): >= 50,000 tasks/s",
        f"{rate(ours)} tasks/s",
        verdict(check(ours, lambda v: v >= 50_000)),
    ]


def w3_target(w3: dict[str, Any]) -> Row:
    atp = w3.get("atp") or {}
    restart, unfinished = get(atp, "restart_s"), get(atp, "unfinished")
    lost = get(atp, "not_recovered") + (0 if math.isnan(unfinished) else unfinished)
    released = get(atp, "released_s")
    freed = "" if math.isnan(released) else f" (released by the server after {released:.2f} s)"
    if not atp or "error" in atp:
        measured, ok = "failed" if atp else "not measured", None
    elif math.isnan(restart):
        cap = get(atp, "cap_s")
        measured = f"not restarted within {cap:.0f} s{freed}; {lost:.0f} not finished"
        ok = False
    else:
        measured = f"restarted {restart:.2f} s after the SIGKILL{freed}; {unfinished:.0f} lost"
        ok = restart <= 1.0 and unfinished == 0
    target = "W3: interrupted tasks restarted <= 1 s after the SIGKILL, 0 lost"
    return [target, measured, verdict(ok)]


def lateness_target(items: Sequence[dict[str, Any]], target: str, bound: float) -> Row:
    p99, early, never = med(items, "p99"), total(items, "early"), total(items, "never_run")
    ok = check(p99, lambda v: v <= bound and early == "0")
    measured = f"p99 {ms(p99)} ms, {early} early, {never} never run"
    if not any(items):
        measured = "not measured"
    return [target, measured, verdict(ok)]


def issue12_rows(results: dict[str, Any]) -> list[Row]:
    runs = results.get("runs", [])
    return [
        w1_target(runs, 10, 1.0, 1.5),
        w1_target(runs, 100, 1.5, 0.0),
        enqueue_target(runs),
        w3_target(results.get("w3") or {}),
        lateness_target(
            part(runs, "w2", "atp"), "W2 (SDK Worker, its default path): p99 <= 2 ms, 0 early", 2.0
        ),
        lateness_target(
            [r.get("w6") or {} for r in runs],
            "Due-to-start latency with a 1,000 tasks/s background load (W6): p99 <= 3 ms",
            3.0,
        ),
        concurrent_target(runs),
    ]


def targets(results: dict[str, Any]) -> list[str]:
    lines = ["## Targets (issue 12)", ""]
    lines += table(["target", "measured (medians, same run)", "verdict"], issue12_rows(results))
    return [*lines, "", *w7_targets(runs_of(results)), "", *earlier_targets(results)]


def runs_of(results: dict[str, Any]) -> list[dict[str, Any]]:
    return list(results.get("runs", []))


def earlier_targets(results: dict[str, Any]) -> list[str]:
    runs = results.get("runs", [])
    api = [r.get("api") or {} for r in runs]
    batch = max(med(api, "batch_1_server"), med(api, "batch_2_servers"))
    beyond = get((results.get("w4") or {}).get("atp"), "beyond_payload")
    w5runs = (results.get("w5") or {}).get("runs", [])
    w5 = {
        name: quotient(med(w5runs, f"backlog_{p}", stat), med(w5runs, f"empty_{p}", stat))
        for name, p, stat in (
            ("p99", "w2", "p99"),
            ("drain", "drain", "per_s"),
            ("probe", "drain", "probe_p50_ms"),
        )
    }
    w5_ok = None
    if not any(math.isnan(v) for v in w5.values()):  # worse by more than 10% misses
        w5_ok = w5["p99"] <= 1.1 and w5["drain"] >= 0.9 and w5["probe"] <= 1.1
    w5_text = "not measured"
    if w5_ok is not None:
        w5_text = (
            f"backlog / empty: W2 p99 {w5['p99']:.2f}x, drain rate {w5['drain']:.2f}x, "
            f"Retrieve latency {w5['probe']:.2f}x"
        )
    rows = [
        [
            "EnqueueBatch >= 50,000 tasks/s",
            f"{rate(batch)} tasks/s",
            verdict(check(batch, lambda v: v >= 50_000)),
        ],
        [
            "W4 <= 250 bytes per pending task beyond the payload",
            f"{rate(beyond)} bytes",
            verdict(check(beyond, lambda v: v <= 250)),
        ],
        [
            "W5 within 10% of the empty backlog",
            w5_text,
            verdict(w5_ok),
        ],
    ]
    return ["Earlier targets (issue 6):", "", *table(["target", "measured", "verdict"], rows)]


def code_state(m: dict[str, Any]) -> str:
    """Which atp code was measured. The work tree is shared with other engineers: say when the
    product's code (appliance/, proto/) changed during the run; other commits do not count."""
    before = str(m.get("code_before") or m.get("atp_commit", "?"))
    after = str(m.get("code_after") or before)
    head, _, code = before.partition(" ")
    if code == after.partition(" ")[2] and "+changes" not in code:
        return f"commit `{head}`"
    if code == after.partition(" ")[2]:
        return f"commit `{head}` with uncommitted changes in appliance/ or proto/"
    return (
        f"commit `{head}` (**the product's code changed during the run**, to "
        f"`{after.partition(' ')[0]}`: later steps measured the new code)"
    )


QUIET_LOAD = 1.0  # a 1-minute load average below this before the run: nothing else ran


def machine_state(m: dict[str, Any]) -> str:
    """How busy the machine was: from the load average before the run (the one after it is
    mostly the bench's own last steps)."""
    before = m.get("load_before") or ()

    def shown(values: Sequence[float]) -> str:
        return " / ".join(f"{x:.1f}" for x in values) or "?"

    loads = (
        f"load average {shown(before)} before, {shown(m.get('load_after', ()))} after, the "
        "latter the bench's own work"
    )
    if before and before[0] < QUIET_LOAD:
        return (
            f"a **quiet machine** (nothing else ran; {loads}). The machine is small and its "
            "figures still vary from run to run"
        )
    return (
        f"a **shared, noisy machine** (other engineers' work ran on the same cores; {loads}). "
        "Absolute figures are therefore low and noisy"
    )


def header(results: dict[str, Any]) -> list[str]:
    m = results.get("machine", {})
    return [
        "# atp benchmarks",
        "",
        "Generated by `just bench` (loadtest/bench.py, loadtest/report.py); do not edit by hand. "
        "How the harness works: [loadtest/README.md](../loadtest/README.md).",
        "",
        f"Measured {m.get('date', '?')} at atp {code_state(m)} "
        f"in {m.get('minutes', '?')} min on {m.get('cpus', '?')} cores ({m.get('cpu', '?')}), "
        f"{m.get('memory_gib', '?')} GiB, {m.get('os', '?')}, {machine_state(m)}; the "
        "ratios compare systems measured in the same run, interleaved run by run.",
        "",
        f"Software: Python {m.get('python', '?')}, grpcio {m.get('grpcio', '?')}, "
        f"{m.get('redis', 'redis ?')}, Node {m.get('node', '?')}; peers Celery "
        f"{m.get('celery', '?')} (kombu {m.get('kombu', '?')}), arq {m.get('arq', '?')}, "
        f"BullMQ {m.get('bullmq', '?')}, RQ {m.get('rq', '?')}, SAQ {m.get('saq', '?')}.",
        "",
        "Every system gets its own fresh `redis-server` on a free loopback port with the same "
        "settings (AOF on, appendfsync everysec, no RDB snapshots, no automatic AOF rewrite, "
        "`hash-max-listpack-value 1024` as docs/OPERATIONS.md asks of atp's Redis), "
        "one system at a time; all processes are ended by pid afterwards. Figures are medians of "
        f"{len(results.get('runs', []))} runs unless a section says otherwise.",
        *scope(results),
        "",
        "Command: `" + str(results.get("command", "just bench")).strip() + "`",
        "",
    ]


def scope(results: dict[str, Any]) -> list[str]:
    """A line saying what this run left out (--only, --systems, --short)."""
    notes = []
    if results.get("short"):
        notes.append("**a --short smoke run: tiny sizes, figures not comparable**")
    if results.get("parts") and "profile" not in results["parts"]:
        notes.append(f"parts run: {', '.join(results['parts'])}")
    if results.get("systems") and len(results["systems"]) < 6:
        notes.append(f"systems: {', '.join(results['systems'])}")
    return ["", "This run: " + "; ".join(notes) + "."] if notes else []


def method() -> list[str]:
    return [
        "## How each figure is taken",
        "",
        "- Every handler appends one 16-byte start record (due time, start time) with one "
        "`O_APPEND` write to a file shared by the worker's processes; the same for every "
        "system (loadtest/harness.py). The record file is how the harness knows that the "
        "drain is done and when each task started. W1's handlers then do one Redis `INCR` on "
        "a counter key (the harness checks the count).",
        "- W1: the producer enqueues the tasks with each system's fastest producer API, then "
        "one worker process starts; processing rate = tasks / (last handler start - first "
        "handler start), so the worker's boot is not counted. A drain is bounded at 20 s "
        "(arq's poll delay of 0.5 s caps it); its rate is taken over what ran.",
        "- Enqueue: one process, a fresh server and Redis, the connection opened before the "
        "clock starts.",
        "- W2: the worker starts and idles (2 s for atp, 4 s for the peers), then 2,000 tasks "
        "are enqueued due uniformly over 10 s starting 1.5 s later (absolute due times: atp "
        "`execute_at_ms`, Celery `eta`, arq `_defer_until`, BullMQ `timestamp` + `delay`); "
        "lateness is the handler's start minus the due time; early = negative; never run = "
        "not started 3 s after the last due time. atp's worker is the SDK Worker (concurrency "
        "1000, prefetch 250, async handler) or bare gRPC consumers.",
        "- W3: start and finish records per task number; see its section.",
        "- atp runs as `atp --role=server` (W3: `--role=server,watchdog`) against its own "
        "redis-server; its worker process is `loadtest/atp_worker.py`.",
        "",
    ]


# The round trip of one enqueue, measured apart (microseconds a call, sync client, 100-byte
# payload, one at a time, loopback, the 2 shared cores of this machine; side by side,
# 2026-11-30; the method is docs/adr/0020-enqueue-speed.md).
SEQUENTIAL_BOUND = (
    "one call at a time waits for its answer before the next is sent, so the figure is one "
    "round trip per task: sync client -> gRPC -> the server's event loop -> Redis and back. "
    "Measured apart on this machine, side by side: a bare grpc Python stream message to a "
    "do-nothing grpc.aio server and back, 300-360 us; the same with one redis.asyncio "
    "EVALSHA in the handler, 545 us; atp's EnqueueStream (raw stream, no SDK), 800-850 us; "
    "the SDK's `Client.enqueue()`, 850-920 us; a unary Enqueue, 1,300 us (per-call RPC "
    "setup); for comparison a bare sync redis-py EVALSHA, 60 us, and BullMQ's whole "
    "`queue.add`, 200-220 us. So the transport alone (two Python gRPC endpoints, each a "
    "hand-off between grpc's poller thread and the caller under one GIL) costs more than "
    "BullMQ's complete call, and each hop is a process wake-up on the shared cores. The "
    "server's profile under this load: its event loop is busy about a quarter of the time, "
    "atp's handler code a third of that; the rest waits for grpc's poller thread and Redis. "
    "What would reach 1.0x: not a Python gRPC hop per call: a producer that writes to Redis "
    "itself (enqueue.lua, as BullMQ does) or a compiled front end for Enqueue; within this "
    "design, fewer thread hand-offs (a sync stream on the caller's thread) would save about "
    "50-70 us of the SDK's share, not the 600 us the target needs."
)
CONCURRENT_BOUND = (
    "many calls share the SDK's EnqueueStream messages. The SDK's first design sent every "
    "call in flight (1,000) in one message and waited for it, so client and server took "
    "turns: at 27k tasks/s the client used 32 % of a core and the server 39 %, each idle "
    "while the other worked (CPU a call: client 11-13 us, server 15-18 us; their sum, about "
    "30 us, is the 32k/s of a quiet run). The SDK now splits waiting calls over a window of 4 "
    "messages (at least 100 calls each), so the client answers one message's callers while "
    "the server writes the next one's tasks; the bound becomes the busier side's per-call "
    "work (the server's: admitting each call, its NewTask and result, 3 Redis arguments per "
    "task) plus Redis's Lua time, on the same 2 cores. What would reach 50,000 where that is "
    "not enough: less per-call Python work on the server (a message's calls admitted and "
    "encoded as one block) or a second server process for the producer's streams."
)


def evidence(results: dict[str, Any]) -> list[str]:
    """For each target of issue 12 missed: what the profile shows bounds it, and what would
    reach it (from the issue's analysis: these name the product's work, not this harness's)."""
    prof = results.get("profile") or {}
    unary = prof.get("enqueue_unary") or {}
    why = {
        "W1, concurrency 10,": w1_bound(results, prof, 10, 1.0),
        "W1, concurrency 100,": w1_bound(results, prof, 100, 1.5),
        "Sequential": SEQUENTIAL_BOUND
        + (
            f" The server's self time under unary Enqueue, for scale: {top(unary)}."
            if unary
            else ""
        ),
        "Concurrent": CONCURRENT_BOUND,
        "W3": w3_bound(results.get("w3") or {}),
        "W2": "what is left is the claim's round trip, the push or reply to the worker and the "
        "handler's dispatch; compare the peers' tails in the same run for the machine's share "
        "(its scheduling delays).",
        "Due-to-start": "a due task shares the worker's stream and handler threads with the "
        "steady load: it can wait behind load tasks pushed before it (the stream's prefetch) "
        "and for a free handler thread; compare W2's tail in the same run, without the load, "
        "for the machine's share. The load's own cost is W1's: each of its tasks passes the "
        "GIL between the worker's event loop and a handler thread blocked in its INCR (see "
        "W1), so the due task's push and start wait for the loop as it serves the load. What "
        "would reach it: less CPU per load task in the worker (W1's levers), or the measured "
        "topic served by a worker process of its own.",
    }
    items = [
        f"- **{row[0]}** ({row[1]}): {why[key]}"
        for row in issue12_rows(results)
        if "missed" in row[2]
        for key in why
        if row[0].startswith(key)
    ]
    lines = ["## What bounds the missed targets", ""]
    if not items:
        return []
    if not prof or "error" in prof:
        lines += ["No profile in this run (`--only` without profile, or no py-spy).", ""]
    return [*lines, *items, ""]


def more_or_less(ours: float, floor: float) -> str:
    """'N µs per task more' or 'N µs per task less': the CPU per task against the floor's."""
    diff = ours - floor
    return f"{abs(diff):.0f} µs per task {'more' if diff >= 0 else 'less'}"


def w1_bound(results: dict[str, Any], prof: dict[str, Any], concurrency: int, goal: float) -> str:
    """W1 at `concurrency`: the CPU per task of each process against the 2 cores, the handler
    alone in as many threads, the profiles, and what would reach `goal` x BullMQ."""
    suffix = "" if concurrency == 10 else f"_c{concurrency}"
    worker, server = prof.get("sdk_worker" + suffix) or {}, prof.get("sdk_server" + suffix) or {}
    cpu = worker.get("cpu_us_per_task") or {}
    floor = prof.get(f"handler_floor_c{concurrency}") or {}
    floor_cpu = floor.get("cpu_us_per_task") or {}
    bullmq = w1_median(results, f"bullmq-c{concurrency}")
    needed = goal * bullmq
    text = []
    if worker:
        text.append(
            f"the SDK Worker process at concurrency {concurrency} "
            f"({rate(get(worker, 'rate_per_s'))} tasks/s while sampled) spends its self time in "
            f"{top(worker, 4)}; the server serving it, at the same time, in {top(server, 4)}."
        )
    if cpu:
        spent = sum(cpu.values())
        text.append(
            f"CPU per task meanwhile: {cpu_per_task(prof, concurrency)} (the worker's system "
            f"time {get(worker, 'worker_system_us'):.0f} µs of it), so the 2 cores would carry "
            f"at most {rate(2e6 / spent)} tasks/s if they ran nothing else"
            + (
                f"; {rate(needed)} tasks/s ({goal:.1f}x BullMQ) allows {2e6 / needed:.0f} µs in all"
                if needed > 0
                else ""
            )
            + "."
        )
    if floor_cpu:
        text.append(
            f"The handler alone in {concurrency} threads without any queue (loadtest/"
            f"handler_floor.py) reaches {floor_text(prof, concurrency)}"
            + (
                "; the Worker process spends "
                f"{more_or_less(get(cpu, 'worker'), get(floor_cpu, 'handler'))} than that "
                "(the two measured at different times, each within the machine's noise)"
                if "worker" in cpu
                else ""
            )
            + (
                f", and Redis {more_or_less(get(cpu, 'redis'), get(floor_cpu, 'redis'))} for "
                "the claim and the ack"
                if "redis" in cpu
                else ""
            )
            + "."
        )
    text.append(
        "What the Worker adds is not its Python (atp's own functions are a few percent of the "
        "samples) but the GIL passing: a sync handler blocks its thread in the INCR's socket "
        "read, and every time it, the other handler threads and the event loop (the stream's "
        "messages, each task's hand-off and settle) take turns the GIL changes hands through "
        "futex wake-ups and context switches, which shows as the process's system time and "
        "as the redis-py socket frames above (strace: 30-40 futex calls per task, about as "
        "many in the handler floor). BullMQ runs its processors on one thread with "
        "non-blocking, auto-pipelined Redis calls."
    )
    if concurrency == 10:
        text.append(
            "Handler threads already take the next ready task themselves and hand outcomes "
            "back in batches (docs/adr/0022-worker-handler-threads.md); a quarter of the "
            "finishing threads still find nothing ready (the 50-task credit window against "
            "the settle, claim and push round trip on shared cores). What would reach it: a "
            "handler whose Redis call does not block a thread (an `async def` handler), or a "
            "deeper window (prefetch 200 measured about +10 %), and less Redis work per task "
            "in the claim and ack scripts; on 2 shared cores each µs per task counts against "
            "BullMQ's total."
        )
    else:
        fastest = max(get(prof.get(f"handler_floor_c{c}"), "rate_per_s") for c in (10, 100))
        if needed > 0 and fastest < needed:
            text.append(
                f"{goal:.1f}x BullMQ ({rate(needed)} tasks/s) is above what the handler alone "
                f"reaches without any queue ({rate(fastest)} tasks/s at best, 10 or 100 "
                "threads): no change to the queue's path reaches it with this handler in one "
                "Python process."
            )
        text.append(
            "What would reach it: more handler threads do not help (the GIL serialises them; "
            "compare the floor at 10 and 100 threads), so 1.5x BullMQ needs the handler's "
            "Redis call not to block a thread (an `async def` handler on the event loop: the "
            "c=1000 no-op row shows what the path carries without the thread hand-off) or "
            "more worker processes, one per core, on more cores than this machine has."
        )
    return " ".join(text)


def w3_bound(w3: dict[str, Any]) -> str:
    atp = w3.get("atp") or {}
    released, restart = get(atp, "released_s"), get(atp, "restart_s")
    if math.isnan(released) or released > 1.0:
        return (
            "a SIGKILLed SDK Worker's tasks come back only when their lease runs out and the "
            "watchdog recovers them. What reaches it: releasing a dead stream's tasks at once "
            "(issue 12, item 2)."
        )
    waves = get(atp, "tasks") - get(atp, "interrupted")
    return (
        f"the server released the interrupted tasks {released:.2f} s after the SIGKILL, but "
        f"they restarted only after {restart:.1f} s: back in the queue by due time, they wait "
        f"behind the {waves:.0f} tasks still pending (and any the dead worker held unstarted), "
        f"which the fresh worker at concurrency {get(atp, 'concurrency'):.0f} runs first, "
        f"{get(atp, 'sleep_s'):.0f} s a wave. What reaches it: a released task keeps its "
        "place (its original due time) so the next free slot takes it, or spare slots."
    )


def top(profile: dict[str, Any], count: int = 3) -> str:
    frames = profile.get("self", [])[:count]
    if not frames:
        return "n/a"
    return ", ".join(f"`{f}` {100 * s:.0f}%" for f, s in frames)


def w1_median(results: dict[str, Any], key: str) -> float:
    return w1_rate(results.get("runs", []), key)


def runs_median(results: dict[str, Any], name: str, key: str, stat: str) -> float:
    return med(part(results.get("runs", []), name, key), stat)


def w6_median(results: dict[str, Any], stat: str) -> float:
    return med([r.get("w6") or {} for r in results.get("runs", [])], stat)


def single(results: dict[str, Any], name: str, stat: str) -> float:
    """atp's figure of a part measured once (W3, W4)."""
    return get((results.get(name) or {}).get("atp"), stat)


def api_median(results: dict[str, Any], key: str) -> float:
    return med([r.get("api") or {} for r in results.get("runs", [])], key)


SUMMARY: tuple[tuple[str, Callable[[dict[str, Any]], float]], ...] = (
    *(
        (f"W1 fair, c={c}, {name} (tasks/s)", lambda r, k=f"{s}-c{c}": w1_median(r, k))
        for c in (10, 100)
        for s, name in (("atp", "atp"), ("bullmq", "BullMQ"), ("celery", "Celery"))
    ),
    ("W1 atp, SDK Worker c=1000, async no-op (tasks/s)", lambda r: w1_median(r, "atp-c1000-noop")),
    ("W1 atp, bare gRPC consumers (tasks/s)", lambda r: w1_median(r, "atp-grpc")),
    (
        "Enqueue one at a time, atp (tasks/s)",
        lambda r: runs_median(r, "enqueue", "atp", "sequential_per_s"),
    ),
    (
        "Enqueue one at a time, BullMQ (tasks/s)",
        lambda r: runs_median(r, "enqueue", "bullmq", "sequential_per_s"),
    ),
    (
        "Enqueue 100 in flight, atp (tasks/s)",
        lambda r: runs_median(r, "enqueue", "atp", "concurrent_per_s"),
    ),
    ("W3 atp, restart after SIGKILL (s)", lambda r: single(r, "w3", "restart_s")),
    ("W3 atp, released after SIGKILL (s)", lambda r: single(r, "w3", "released_s")),
    ("W2 lateness p50, atp SDK Worker (ms)", lambda r: runs_median(r, "w2", "atp", "p50")),
    ("W2 lateness p99, atp SDK Worker (ms)", lambda r: runs_median(r, "w2", "atp", "p99")),
    ("W2 lateness p99, Celery (ms)", lambda r: runs_median(r, "w2", "celery", "p99")),
    ("W6 lateness p99 under 1k/s, atp (ms)", lambda r: w6_median(r, "p99")),
    ("API Enqueue, 1 server process (calls/s)", lambda r: api_median(r, "unary_1_server")),
    ("API Enqueue, 2 server processes (calls/s)", lambda r: api_median(r, "unary_2_servers")),
    ("API EnqueueBatch, 1 server process (tasks/s)", lambda r: api_median(r, "batch_1_server")),
    ("API EnqueueBatch, 2 server processes (tasks/s)", lambda r: api_median(r, "batch_2_servers")),
    (
        "API Retrieve + AckBatch, 1 server process (tasks/s)",
        lambda r: api_median(r, "retrieve_ack_per_s"),
    ),
    ("W4 atp, bytes per pending task", lambda r: single(r, "w4", "bytes_per_task")),
    (
        "W7 atp, 3-step chains completed (runs/s)",
        lambda r: w7_figure(runs_of(r), "atp", "throughput", "runs_per_s"),
    ),
    (
        "W7 atp, hand-off p99 (ms)",
        lambda r: w7_figure(runs_of(r), "atp", "handoff", "handoff_p99_ms"),
    ),
    (
        "W7 atp, bytes per waiting run",
        lambda r: w7_figure(runs_of(r), "atp", "memory", "bytes_per_run"),
    ),
)


def summary(results: dict[str, Any]) -> dict[str, float | None]:
    """The headline figures of one bench run, by label (what a later run compares against)."""
    out: dict[str, float | None] = {}
    for label, figure in SUMMARY:
        value = figure(results)
        out[label] = None if math.isnan(value) else round(value, 2)
    return out


def before_after(results: dict[str, Any], baseline: dict[str, Any]) -> list[str]:
    """This run's headline figures next to earlier runs' (loadtest/baseline.json: a list of
    `runs`, oldest first, each with a `label`, an `about` line and its `figures`; or one run's
    `about` and `figures`)."""
    runs = baseline.get("runs") or ([baseline] if baseline.get("figures") else [])
    if not runs:
        return []
    now = summary(results)
    labels = [str(r.get("label") or "before") for r in runs]
    rows = []
    for label, value in now.items():
        fmt = ms if "(ms)" in label or "(s)" in label else rate
        after = NAN if value is None else float(value)
        old = [_figure(r, label) for r in runs]
        shown = [fmt(v) if not math.isnan(v) else "n/a" for v in old]
        rows.append([label, *shown, fmt(after), *(ratio(after, v) for v in old)])
    about = [f"- {name}: {r.get('about', '')}" for name, r in zip(labels, runs, strict=True)]
    header = ["figure (medians)", *labels, "now", *(f"now / {name}" for name in labels)]
    return ["## Before and after", "", *about, "", *table(header, rows), ""]


def _figure(run: dict[str, Any], label: str) -> float:
    value = run.get("figures", {}).get(label)
    return NAN if value is None else float(value)


def render(results: dict[str, Any], baseline: dict[str, Any] | None = None) -> str:
    runs = results.get("runs", [])
    lines = [*header(results), *targets(results), ""]
    for section in (
        w1_section(runs),
        enqueue_section(runs),
        w3_section(results.get("w3") or {}),
        w2_section(runs),
        w6_section(runs),
        w7_section(runs),
        api_section(runs),
        w4_section(results.get("w4") or {}),
        w5_section(results.get("w5")),
        fsync_section(results.get("fsync")),
        durability_section(results.get("durability")),
        cluster_section(results.get("cluster")),
    ):
        if section:
            lines += [*section, ""]
    lines += before_after(results, baseline or {})
    lines += evidence(results)
    lines += profile_section(results.get("profile"))
    lines += method()
    return "\n".join(lines).rstrip() + "\n"
