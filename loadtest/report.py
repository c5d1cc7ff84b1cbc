"""Renders docs/BENCHMARKS.md from the figures loadtest/bench.py collected: medians of the runs,
ratios against each peer from the same bench run, the targets of issue 6 met or missed, and the
server profile's top costs. Pure functions over plain dicts; stdlib only.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from harness import median

PEERS = ("celery", "arq", "bullmq")
PEER_NAMES = {"celery": "Celery", "arq": "arq", "bullmq": "BullMQ"}
ATP_W1 = {
    "atp-sdk-1": "atp, SDK Worker, 1 server process",
    "atp-sdk-2": "atp, SDK Worker, 2 server processes",
    "atp-grpc-1": "atp, bare gRPC consumers, 1 server process",
    "atp-grpc-2": "atp, bare gRPC consumers, 2 server processes",
}
PEER_CONFIG = {
    "celery": "Celery worker (prefork, 2 processes = CPUs, prefetch 4), apply_async one by one",
    "arq": "arq worker (defaults: max_jobs 10, poll_delay 0.5 s), enqueue_job 50 at a time",
    "bullmq": "BullMQ Worker (concurrency 10), Queue.addBulk of 1,000",
}
W2_NAMES = {
    "atp": "atp, SDK Worker",
    "atp-grpc": "atp, bare gRPC consumers (4 long polls)",
}
NAN = math.nan


def get(data: Any, *path: str) -> float:
    """data[p0][p1]... as a float, nan when missing, failed or null."""
    for key in path:
        if not isinstance(data, dict) or key not in data or "error" in data:
            return NAN
        data = data[key]
    return float(data) if isinstance(data, int | float) and not isinstance(data, bool) else NAN


def med(items: Iterable[Any], *path: str) -> float:
    return median([get(item, *path) for item in items])


def rate(value: float) -> str:
    return "failed" if math.isnan(value) else f"{value:,.0f}"


def ms(value: float) -> str:
    return "failed" if math.isnan(value) else f"{value:.1f}"


def quotient(a: float, b: float) -> float:
    return a / b if b else NAN


def ratio(ours: float, theirs: float) -> str:
    if math.isnan(ours) or math.isnan(theirs) or theirs == 0:
        return "n/a"
    return f"{ours / theirs:.1f}x"


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return out


def each_run(runs: Sequence[dict[str, Any]], fmt: Callable[[float], str], *path: str) -> str:
    return ", ".join(fmt(get(r, *path)) for r in runs)


# -- sections ----------------------------------------------------------------------------


def w1_section(runs: Sequence[dict[str, Any]]) -> list[str]:
    rows = []
    for key, label in [*ATP_W1.items(), *((p, PEER_CONFIG[p]) for p in PEERS)]:
        w1 = [r["w1"].get(key, {}) for r in runs]
        done = [get(x, "processed") for x in w1]
        note = "" if all(d >= 20_000 for d in done) else f" (drain bounded: {min(done):,.0f} run)"
        rows.append(
            [
                label,
                rate(med(w1, "enqueue_per_s")),
                rate(med(w1, "process_per_s")) + note,
                ", ".join(rate(get(x, "process_per_s")) for x in w1),
            ]
        )
    lines = ["## W1 throughput: 20,000 no-op tasks enqueued, then one worker process drains them"]
    lines += [""]
    lines += table(
        ["system", "enqueue tasks/s", "processing tasks/s (median)", "processing, each run"], rows
    )
    lines += ["", "Processing, atp against each peer (ratio of the medians above):", ""]
    peers = [PEER_NAMES[p] for p in PEERS]
    ratio_rows = []
    for key, label in ATP_W1.items():
        ours = med([r["w1"].get(key, {}) for r in runs], "process_per_s")
        ratio_rows.append(
            [label]
            + [ratio(ours, med([r["w1"].get(p, {}) for r in runs], "process_per_s")) for p in PEERS]
        )
    lines += table(["", *peers], ratio_rows)
    return lines


def w2_rows(items: Sequence[dict[str, Any]]) -> list[str]:
    return [
        ms(med(items, "p50")),
        ms(med(items, "p95")),
        ms(med(items, "p99")),
        ms(med(items, "max")),
        _total(items, "early"),
        _total(items, "never_run"),
    ]


def _total(items: Sequence[dict[str, Any]], key: str) -> str:
    values = [get(i, key) for i in items]
    if any(math.isnan(v) for v in values):
        return "failed"
    return f"{sum(values):,.0f}"


def w2_section(runs: Sequence[dict[str, Any]]) -> list[str]:
    rows = []
    for key in ("atp", "atp-grpc", *PEERS):
        items = [r["w2"].get(key, {}) for r in runs]
        rows.append([W2_NAMES.get(key) or PEER_NAMES[key], *w2_rows(items)])
    lines = [
        "## W2 precision: idle workers, 2,000 tasks due uniformly over the next 10 s",
        "",
        "Lateness = handler start - due time, in ms (medians of the runs; early starts and "
        "never-run tasks summed over all runs).",
        "",
    ]
    lines += table(["system", "p50", "p95", "p99", "max", "early", "never run"], rows)
    p99 = med([r["w2"].get("atp", {}) for r in runs], "p99")
    lines += ["", "atp's p99 against each peer's (lower is better; peer / atp):", ""]
    lines += table(
        [PEER_NAMES[p] for p in PEERS],
        [[ratio(med([r["w2"].get(p, {}) for r in runs], "p99"), p99) for p in PEERS]],
    )
    return lines


def w3_section(runs: Sequence[dict[str, Any]]) -> list[str]:
    w3 = [r.get("w3") or {} for r in runs]
    rows = [
        ("Enqueue (unary), 1 server process", "unary_1_server", "calls/s"),
        ("Enqueue (unary), 2 server processes", "unary_2_servers", "calls/s"),
        ("EnqueueBatch of 1,000, 1 server process", "batch_1_server", "tasks/s"),
        ("EnqueueBatch of 1,000, 2 server processes", "batch_2_servers", "tasks/s"),
        ("Retrieve 500 + AckBatch, 1 server process", "retrieve_ack_per_s", "tasks/s"),
        ("Retrieve 500 + AckBatch, 2 server processes", "retrieve_ack_2_servers_per_s", "tasks/s"),
    ]
    lines = ["## W3 API rates (atp)", ""]
    lines += table(
        ["call", "median", "unit", "each run"],
        [[label, rate(med(w3, key)), unit, each_run(w3, rate, key)] for label, key, unit in rows],
    )
    lines += [
        "",
        "Unary Enqueue: 2 client processes with 64 calls in flight each. EnqueueBatch: 4 calls "
        "in flight, 100-byte payloads. Retrieve+Ack: 4 consumers, Retrieve of 500 with "
        "wait_ms 0, then one AckBatch.",
    ]
    return lines


def w4_section(w4: dict[str, Any]) -> list[str]:
    rows = []
    for key in ("atp", *PEERS):
        name = key if key == "atp" else PEER_NAMES[key]
        figures = w4.get(key)
        rows.append(
            [name, rate(get(figures, "bytes_per_task")), rate(get(figures, "beyond_payload"))]
        )
    lines = [
        "## W4 memory: Redis bytes per pending task (100,000 tasks, 100-byte payload, due in 2 h)",
        "",
        "`INFO memory` used_memory after minus before, divided by 100,000 (one run: the figure "
        "is deterministic).",
        "",
    ]
    return lines + table(["system", "bytes per task", "beyond the payload"], rows)


def w5_section(w5: dict[str, Any] | None) -> list[str]:
    lines = ["## W5 scale: W2 and a drain with 1,000,000 tasks pending in the future", ""]
    if not w5 or "error" in w5:
        return [*lines, f"Not measured: {(w5 or {}).get('error', 'skipped')}"]
    runs = w5.get("runs", [])
    rows = []
    for label, path, fmt in (
        ("W2 lateness p50 (ms)", ("w2", "p50"), ms),
        ("W2 lateness p99 (ms)", ("w2", "p99"), ms),
        ("W2 lateness max (ms)", ("w2", "max"), ms),
        ("Retrieve+Ack drain of 17,000 due tasks (tasks/s)", ("drain", "per_s"), rate),
        (
            "Retrieve of 10 due tasks, one call at a time: p50 latency (ms)",
            ("drain", "probe_p50_ms"),
            ms,
        ),
        ("Retrieve call latency p50 during the drain (ms)", ("drain", "fetch_p50_ms"), ms),
    ):
        empty = med(runs, f"empty_{path[0]}", path[1])
        backlog = med(runs, f"backlog_{path[0]}", path[1])
        rows.append([label, fmt(empty), fmt(backlog), ratio(backlog, empty)])
    early = sum(get(r, "backlog_w2", "early") + get(r, "empty_w2", "early") for r in runs)
    never = sum(get(r, "backlog_w2", "never_run") + get(r, "empty_w2", "never_run") for r in runs)
    lines += [
        f"The backlog was loaded with EnqueueBatch at {rate(get(w5, 'backlog_enqueue_per_s'))} "
        f"tasks/s ({get(w5, 'backlog_load_s'):.0f} s); then {len(runs)} rounds, each measuring "
        "an empty topic and the backlog's topic on the same server and Redis.",
        "",
    ]
    header = ["figure (median of the rounds)", "empty topic", "1,000,000 pending", "ratio"]
    lines += table(header, rows)
    lines += ["", f"Early starts: {early:.0f}; never run: {never:.0f} (all rounds)."]
    return lines


def profile_section(profile: dict[str, Any] | None) -> list[str]:
    lines = ["## Profile of atp's processes (py-spy)", ""]
    if not profile or "error" in profile:
        return [*lines, f"Not measured: {(profile or {}).get('error', 'skipped')}"]
    for key, title in (
        ("w1_processing", "Server, W1 processing (4 consumers: Retrieve 500 + AckBatch)"),
        ("enqueue_batch", "Server, EnqueueBatch of 1,000 (4 in flight)"),
        ("enqueue_unary", "Server, unary Enqueue (2 client processes, 64 in flight each)"),
        ("sdk_worker", "SDK Worker process draining a backlog (no-op async handler)"),
    ):
        prof = profile.get(key) or {}
        lines += [
            f"### {title}: {rate(get(prof, 'rate_per_s'))} tasks/s while sampled, "
            f"{get(prof, 'samples'):,.0f} samples",
            "",
            f"Self time in redis-py: {100 * get(prof, 'redis_py'):.0f}%; in asyncio and the "
            f"selector: {100 * get(prof, 'asyncio'):.0f}% (the grpc core's Cython callbacks run "
            "inside asyncio's Handle._run and count there).",
            "",
        ]
        lines += table(
            ["self time", "function"],
            [[f"{100 * s:.1f}%", f"`{f}`"] for f, s in prof.get("self", [])],
        )
        lines += [""]
        lines += table(
            ["inclusive", "atp function"],
            [[f"{100 * s:.1f}%", f"`{f}`"] for f, s in prof.get("inclusive", [])],
        )
        lines += [""]
    return lines


def targets(results: dict[str, Any]) -> list[str]:
    runs = results.get("runs", [])
    w1 = {k: med([r["w1"].get(k, {}) for r in runs], "process_per_s") for k in ATP_W1}
    best_key = max(w1, key=lambda k: -1 if math.isnan(w1[k]) else w1[k])
    sdk_key = max(("atp-sdk-1", "atp-sdk-2"), key=lambda k: -1 if math.isnan(w1[k]) else w1[k])
    bull = med([r["w1"].get("bullmq", {}) for r in runs], "process_per_s")
    celery = med([r["w1"].get("celery", {}) for r in runs], "process_per_s")
    w2 = [r["w2"].get("atp", {}) for r in runs]
    p99 = med(w2, "p99")
    early, never = _total(w2, "early"), _total(w2, "never_run")
    w2g = [r["w2"].get("atp-grpc", {}) for r in runs]
    w3 = [r.get("w3") or {} for r in runs]
    batch = max(med(w3, "batch_1_server"), med(w3, "batch_2_servers"))
    beyond = get(results.get("w4", {}).get("atp"), "beyond_payload")
    w5runs = (results.get("w5") or {}).get("runs", [])
    w5 = {
        name: quotient(med(w5runs, f"backlog_{part}", stat), med(w5runs, f"empty_{part}", stat))
        for name, part, stat in (
            ("p99", "w2", "p99"),
            ("drain", "drain", "per_s"),
            ("probe", "drain", "probe_p50_ms"),
        )
    }
    # worse by more than 10%: later (p99, probe latency) or slower (drain rate)
    w5_ok = w5["p99"] <= 1.1 and w5["drain"] >= 0.9 and w5["probe"] <= 1.1

    def verdict(ok: bool) -> str:
        return "met" if ok else "**missed**"

    def w1_row(key: str) -> list[str]:
        ours = w1[key]
        return [
            f"W1 processing >= BullMQ (stretch 1.5x) and >= 10x Celery: {ATP_W1[key]}",
            f"{rate(ours)}/s = {ratio(ours, bull)} BullMQ, {ratio(ours, celery)} Celery",
            verdict(ours >= bull and ours >= 10 * celery)
            + (" (stretch met)" if ours >= 1.5 * bull else ""),
        ]

    rows = [w1_row(sdk_key)]
    if best_key != sdk_key:
        rows.append(w1_row(best_key))
    rows += [
        [
            "W2 p99 lateness <= 2 ms, 0 early, 0 never run (SDK Worker)",
            f"p99 {ms(p99)} ms, {early} early, {never} never run "
            f"(bare gRPC consumers: p99 {ms(med(w2g, 'p99'))} ms, "
            f"{_total(w2g, 'early')} early, {_total(w2g, 'never_run')} never run)",
            verdict(p99 <= 2.0 and early == "0" and never == "0"),
        ],
        ["EnqueueBatch >= 50,000 tasks/s", f"{rate(batch)} tasks/s", verdict(batch >= 50_000)],
        [
            "W4 <= 250 bytes per pending task beyond the payload",
            f"{rate(beyond)} bytes",
            verdict(beyond <= 250),
        ],
        [
            "W5 within 10% of the empty backlog",
            f"backlog / empty: W2 p99 {w5['p99']:.2f}x, drain rate {w5['drain']:.2f}x, "
            f"Retrieve latency {w5['probe']:.2f}x",
            verdict(w5_ok),
        ],
    ]
    return ["## Targets (issue 6)", "", *table(["target", "measured (medians)", "verdict"], rows)]


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


def header(results: dict[str, Any]) -> list[str]:
    m = results.get("machine", {})
    load = " / ".join(f"{x:.1f}" for x in m.get("load_before", ())) or "?"
    load_after = " / ".join(f"{x:.1f}" for x in m.get("load_after", ())) or "?"
    return [
        "# atp benchmarks",
        "",
        "Generated by `just bench` (loadtest/bench.py, loadtest/report.py); do not edit by hand. "
        "How the harness works: [loadtest/README.md](../loadtest/README.md).",
        "",
        f"Measured {m.get('date', '?')} at atp {code_state(m)} "
        f"in {m.get('minutes', '?')} min on a **shared, noisy machine**: {m.get('cpus', '?')} "
        f"cores ({m.get('cpu', '?')}), {m.get('memory_gib', '?')} GiB, {m.get('os', '?')}; other "
        "engineers' test suites ran on the same 2 cores during the run (load average "
        f"{load} before, {load_after} after). Absolute figures are therefore low and noisy; the "
        "ratios compare systems measured in the same run, interleaved run by run.",
        "",
        f"Software: Python {m.get('python', '?')}, grpcio {m.get('grpcio', '?')}, "
        f"{m.get('redis', 'redis ?')}, Node {m.get('node', '?')}; peers Celery "
        f"{m.get('celery', '?')} (kombu {m.get('kombu', '?')}), arq {m.get('arq', '?')}, "
        f"BullMQ {m.get('bullmq', '?')}.",
        "",
        "Every system gets its own fresh `redis-server` on a free loopback port with the same "
        "settings (AOF on, appendfsync everysec, no RDB snapshots, no automatic AOF rewrite, "
        "`hash-max-listpack-value 1024` as docs/OPERATIONS.md asks of atp's Redis), "
        "one system at a time; all processes are ended by pid afterwards. Figures are medians of "
        f"{len(results.get('runs', []))} runs unless a section says otherwise.",
        "",
        "Command: `" + str(results.get("command", "just bench")).strip() + "`",
        "",
    ]


def method() -> list[str]:
    return [
        "## How each figure is taken",
        "",
        "- Every handler is a no-op that appends one 16-byte start record (due time, start "
        "time) with one `O_APPEND` write to a file shared by the worker's processes; the same "
        "for every system (loadtest/harness.py). The record file is how the harness knows that "
        "the drain is done and when each task started.",
        "- W1: the producer enqueues 20,000 tasks with each system's own fastest producer API "
        "(atp: EnqueueBatch of 1,000, 4 in flight), then one worker process starts; processing "
        "rate = tasks / (last handler start - first handler start), so the worker's boot is "
        "not counted. The arq drain is bounded at 40 s (its default poll delay caps it near "
        "200/s); its rate is taken over what ran.",
        "- W2: the worker starts and idles (2 s for atp, 4 s for the peers), then 2,000 tasks "
        "are enqueued due uniformly over 10 s starting 1.5 s later (absolute due times: atp "
        "`execute_at_ms`, Celery `eta`, arq `_defer_until`, BullMQ `timestamp` + `delay`); "
        "lateness is the handler's start minus the due time; early = negative; never run = "
        "not started 3 s after the last due time.",
        "- atp's worker process is `loadtest/atp_worker.py`: the SDK `Worker` (concurrency "
        "1000, batch 250: up to 4 Retrieves in flight while the topic has a backlog, one long "
        "poll while idle; async handler) or bare gRPC consumers (4 loops of Retrieve 250 with "
        "wait_ms 5000, handlers inline, one AckBatch). atp's tasks stay in Redis under a "
        "lease while they run; Celery's ETA tasks wait in the worker's memory, unacknowledged.",
        "",
    ]


def w1_median(results: dict[str, Any], key: str) -> float:
    return med([r["w1"].get(key, {}) for r in results.get("runs", [])], "process_per_s")


def w2_median(results: dict[str, Any], key: str, stat: str) -> float:
    return med([r["w2"].get(key, {}) for r in results.get("runs", [])], stat)


def w3_median(results: dict[str, Any], key: str) -> float:
    return med([r.get("w3") or {} for r in results.get("runs", [])], key)


SUMMARY: tuple[tuple[str, Callable[[dict[str, Any]], float]], ...] = (
    *(
        (f"W1 processing, {label} (tasks/s)", functools.partial(w1_median, key=key))
        for key, label in ATP_W1.items()
    ),
    ("W1 processing, BullMQ (tasks/s)", lambda r: w1_median(r, "bullmq")),
    ("W1 processing, Celery (tasks/s)", lambda r: w1_median(r, "celery")),
    ("W2 lateness p50, atp SDK Worker (ms)", lambda r: w2_median(r, "atp", "p50")),
    ("W2 lateness p99, atp SDK Worker (ms)", lambda r: w2_median(r, "atp", "p99")),
    ("W2 lateness p99, atp bare gRPC consumers (ms)", lambda r: w2_median(r, "atp-grpc", "p99")),
    ("W2 lateness p99, Celery (ms)", lambda r: w2_median(r, "celery", "p99")),
    ("W3 Enqueue, 1 server process (calls/s)", lambda r: w3_median(r, "unary_1_server")),
    ("W3 Enqueue, 2 server processes (calls/s)", lambda r: w3_median(r, "unary_2_servers")),
    ("W3 EnqueueBatch, 1 server process (tasks/s)", lambda r: w3_median(r, "batch_1_server")),
    ("W3 EnqueueBatch, 2 server processes (tasks/s)", lambda r: w3_median(r, "batch_2_servers")),
    (
        "W3 Retrieve + AckBatch, 1 server process (tasks/s)",
        lambda r: w3_median(r, "retrieve_ack_per_s"),
    ),
    ("W4 atp, bytes per pending task", lambda r: get(r.get("w4", {}).get("atp"), "bytes_per_task")),
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
        fmt = ms if "(ms)" in label else rate
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
    lines += before_after(results, baseline or {})
    for section in (
        w1_section(runs),
        w2_section(runs),
        w3_section(runs),
        w4_section(results.get("w4", {})),
        w5_section(results.get("w5")),
        profile_section(results.get("profile")),
    ):
        lines += [*section, ""]
    lines += method()
    lines += findings(results)
    return "\n".join(lines).rstrip() + "\n"


def share(profile: dict[str, Any] | None, scenario: str, *names: str) -> str:
    """The summed inclusive share of the named functions in one profile ('n/a' when absent);
    name disjoint functions only (nested frames would count twice)."""
    funcs = ((profile or {}).get(scenario) or {}).get("functions", {})
    found = [funcs[n] for n in names if n in funcs]
    return f"{100 * sum(found):.0f}%" if found else "n/a"


def self_share(profile: dict[str, Any] | None, scenario: str, name: str) -> str:
    """One function's self time in one profile (from its top list; 'n/a' when not there)."""
    for frame, value in ((profile or {}).get(scenario) or {}).get("self", []):
        if frame == name:
            return f"{100 * value:.0f}%"
    return "n/a"


def findings(results: dict[str, Any]) -> list[str]:
    """What bounds each figure and what to change, with the profile's shares filled in. The
    product code is other engineers' (this harness only measures it): these are proposals."""
    prof = results.get("profile")

    def w1(*names: str) -> str:
        return share(prof, "w1_processing", *names)

    def enq(*names: str) -> str:
        return share(prof, "enqueue_batch", *names)

    def sdk(*names: str) -> str:
        return share(prof, "sdk_worker", *names)

    runs = results.get("runs", [])

    def late(key: str, stat: str) -> float:
        return med([r["w2"].get(key, {}) for r in runs], stat)

    def w3(key: str) -> float:
        return med([r.get("w3") or {} for r in runs], key)

    enqueue_fn = "QueueServicer.Enqueue (appliance/api/servicer.py)"
    thread_fn = "Thread.run (threading.py)"
    servicer, convert = "(appliance/api/servicer.py)", "(appliance/api/convert.py)"
    runtime = "(appliance/worker/runtime.py)"
    packing = "AbstractConnection.pack_commands (redis/asyncio/connection.py)"
    w4_beyond = rate(get(results.get("w4", {}).get("atp"), "beyond_payload"))
    items = [
        "Shares are of the sampled process's busy time (py-spy, inclusive unless said "
        "otherwise), from the profile above. Done after the first run's profile (column "
        "'round 2' of Before and after): one `ack.lua` call per AckBatch and topic, EVALSHA "
        "queued without redis-py's `SCRIPT EXISTS` round trip, server-made ids that name their "
        "topic (no id index), `enqueue.lua` with three arguments per task, "
        "`hash-max-listpack-value 1024`, a heartbeat timer instead of a task per delivery. "
        "Done after round 2's profile (this run): a task never leased is one packed field of "
        "its topic's `new` HASH instead of a HASH of its own, with 22-character ids "
        "(docs/adr/0004-pending-record-layout.md; W4); the long poll sleeps to the microsecond "
        "of the Redis clock and yields for the last ~1 ms instead of rounding its epoll "
        "timeout up (W2); Retrieve builds each `pb.Task` once, straight from claim.lua's "
        "integer fields, with no `model.Task` in between; claim.lua reads a batch's packed "
        "records with one HMGET and adds its leases with one ZADD; the SDK Worker keeps up to "
        "4 Retrieves in flight while a topic has a backlog (one long poll while idle), up to 2 "
        "AckBatch calls, one lease sweep for all handlers instead of a timer each, cached "
        "metric children, and asks whether tracing is on once per run instead of per task "
        "(OpenTelemetry reads the environment on every ask). What bounds the figures now, and "
        "what would move them:",
        "",
        "1. **Redis's share of W1**: claim.lua costs about 12 us of Redis time per task "
        "(measured with `INFO commandstats`: one HMGET per batch, then per task the unpacking "
        "and an 8-field HSET that writes the task HASH the first lease needs), ack.lua a few "
        "more; on 2 cores Redis, the server and the worker share the CPU, so Redis time is "
        "throughput. Change: lease tasks without rewriting their payload (the lease fields in "
        "a per-topic HASH keyed by id, the payload left in the packed record until the task "
        "is settled). Expected: claim.lua -40%, W1 +10-15% here.",
        f"2. **Retrieve's per-task protobuf**: `leased_to_pb` is "
        f"{w1(f'leased_to_pb {convert}')} "
        "of the server in W1 (one `pb.Task` with 13 fields per task). Change: serialize the "
        "reply's tasks from a template message, or let claim.lua return the seed's second "
        "fields too so no division runs in Python. Expected: -5% server time.",
        f"3. **A histogram observation per delivered task**: `_count_delivered` is "
        f"{w1(f'_count_delivered {servicer}')} of the server in W1. Change: bucket a batch's "
        "lateness values locally and add them to the histogram in one step. Expected: -3-5% "
        "server time in W1.",
        f"4. **AckBatch validates per ack**: `_lease` per (id, token) "
        f"({w1(f'_lease {servicer}')}) and the request's list comprehension "
        f"({w1(f'QueueServicer.AckBatch.<locals>.<listcomp> {servicer}')}). Change: check "
        "the topic once per distinct topic of the batch and let ack.lua's token comparison "
        "refuse malformed ones. Expected: AckBatch -25%.",
        f"5. **EnqueueBatch ({rate(w3('batch_1_server'))} tasks/s) is per-task Python**: "
        f"`convert.new_task` {enq(f'new_task {convert}')} (validation and a "
        "dataclass per task), redis-py packing the one big EVALSHA "
        f"({enq(packing)}). Change: validate the fields shared by a batch once, pass each "
        "task as one argument split in Lua. Expected: +30-50% (the 50,000 target is met).",
        f"6. **Unary Enqueue ({rate(w3('unary_1_server'))} calls/s) is bound by grpc's "
        "per-call machinery, not by atp's code**: the server's own Enqueue path "
        f"(`QueueServicer.Enqueue`) is {share(prof, 'enqueue_unary', enqueue_fn)} of its "
        "samples; grpc aio's Cython runs inside asyncio callbacks (`Handle._run` self time "
        f"{self_share(prof, 'enqueue_unary', 'Handle._run (asyncio/events.py)')}) and its "
        f"polling thread (`Thread.run` {self_share(prof, 'enqueue_unary', thread_fn)}). "
        "Change: the SDK coalesces concurrent `enqueue()` calls into one EnqueueBatch (as the "
        "Worker does for acks). Expected: concurrent SDK producers reach EnqueueBatch rates.",
        f"7. **The SDK Worker's per-task work** "
        f"({rate(get(prof, 'sdk_worker', 'rate_per_s'))} tasks/s while sampled): a frozen "
        "`model.Task` per task (`task_from_pb`: "
        f"{sdk('task_from_pb (appliance/client/common.py)')}), "
        f"an asyncio task per delivery (`_Session.start`: {sdk(f'_Session.start {runtime}')}; "
        f"`_Execution.run`: {sdk(f'_Execution.run {runtime}')}) and a future per ack. "
        "Change: run a Retrieve's batch of async handlers in one task, settle it together. "
        "Expected: the SDK Worker within ~25% of the bare consumers.",
        f"8. **W2 lateness**: p50/p99 {ms(late('atp', 'p50'))}/{ms(late('atp', 'p99'))} ms "
        f"with the SDK Worker and {ms(late('atp-grpc', 'p50'))}/{ms(late('atp-grpc', 'p99'))}"
        f" ms with bare consumers, Celery {ms(late('celery', 'p50'))}/"
        f"{ms(late('celery', 'p99'))} ms (its timers live in the worker's memory; atp's tasks "
        "stay in Redis under a lease until due). What is left is claim.lua's round trip, the "
        "reply to the worker and the handler's dispatch; the tail is the noisy box "
        "(scheduling delays of 1-4 ms show up as the max).",
        f"9. **W4 memory** ({w4_beyond} B beyond the payload): per task, the `new` HASH "
        "field (dict entry 32 B, bucket ~10 B, the id 32 B, the packed record in jemalloc's "
        "128-B class for a 100-byte payload) and the pending ZSET entry (skiplist node ~53 B, "
        "dict entry 32 B, the id 32 B, bucket ~10 B). Payloads whose record crosses a size "
        "class cost up to 32 B more; topic names longer than 5 characters move the id into "
        "the 48-B class (+32 B). Further savings would need a different due-time index than "
        "a ZSET (e.g. time buckets), at the cost of ordering within a bucket.",
        "10. **More server processes**: on 2 cores, Redis, the server processes, the worker "
        "and the load generators share the CPU, so a second server process gains little or "
        "loses (W3, W1); the per-task costs above are what move these figures here. On 4+ "
        "cores `--servers=N` scales the gRPC side (SO_REUSEPORT) until Redis's single thread "
        "binds.",
    ]
    return ["## What bounds the figures, and what to change", "", *items]
