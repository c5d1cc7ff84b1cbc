"""The workload tables of docs/BENCHMARKS.md (W1 fair and its extra rows, enqueue, W2, W3,
W4, W5, W6, API rates, the profile) and the helpers they share: medians of the runs, ratios,
'failed' for a step that failed. Pure functions over the plain dicts loadtest/bench.py
collects; stdlib only. loadtest/report.py puts them together with the targets.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from harness import median

API_RUNS = 1  # the API rates are measured in this many runs (the first): bench.py

PEERS = ("celery", "arq", "bullmq")
SYSTEMS = ("atp", *PEERS)
W3_SYSTEMS = (*SYSTEMS, "rq", "saq")
NAMES = {
    "atp": "atp",
    "celery": "Celery",
    "arq": "arq",
    "bullmq": "BullMQ",
    "rq": "RQ",
    "saq": "SAQ",
}
FAIR_CONCURRENCY = (10, 100)
W1_WORKERS = {
    "atp": "SDK `Worker(addr, concurrency=N)`, a plain `def` handler",
    "celery": "`celery worker -c N` (prefork, its default pool, at 10; threads at 100), a "
    "plain `def` task",
    "arq": "arq worker, `max_jobs = N`, an `async def` job (arq runs only async jobs)",
    "bullmq": "`new Worker(..., {concurrency: N})`, an async processor",
}
W1_EXTRA = {
    "atp-c1000-noop": "atp, SDK Worker, concurrency 1000, an `async def` handler doing nothing",
    "atp-grpc": "atp, bare gRPC consumers (4 loops of Retrieve 250 + AckBatch), no handler work",
}
ENQUEUE_CALLS = {
    "atp": ("`Client.enqueue()`", "`Client.enqueue_many()` of 1,000", "`AsyncClient.enqueue()`"),
    "celery": ("`apply_async()`", "", ""),
    "arq": ("`enqueue_job()`", "", "`enqueue_job()`"),
    "bullmq": ("`queue.add()`", "`queue.addBulk()` of 1,000", "`queue.add()`"),
}
ENQUEUE_KINDS = ("sequential", "batched", "concurrent")
W2_NAMES = {"atp": "atp, SDK Worker", "atp-grpc": "atp, bare gRPC consumers (4 long polls)"}
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
    return a / b if b and not math.isnan(b) else NAN


def ratio(ours: float, theirs: float) -> str:
    if math.isnan(ours) or math.isnan(theirs) or theirs == 0:
        return "n/a"
    value = ours / theirs
    # two decimals below 10x, so a ratio just under a target (1.97x) does not read as met (2.0x)
    return f"{value:.2f}x" if value < 10 else f"{value:.1f}x"


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return out


def each_run(runs: Sequence[dict[str, Any]], fmt: Callable[[float], str], *path: str) -> str:
    return ", ".join(fmt(get(r, *path)) for r in runs)


def part(runs: Sequence[dict[str, Any]], name: str, key: str) -> list[Any]:
    """Each run's result of one step (`{}` where the run has none)."""
    return [(r.get(name) or {}).get(key, {}) for r in runs]


def total(items: Sequence[dict[str, Any]], key: str) -> str:
    values = [get(i, key) for i in items]
    if not values or any(math.isnan(v) for v in values):
        return "failed"
    return f"{sum(values):,.0f}"


def shown(runs: Sequence[dict[str, Any]], name: str, keys: Iterable[str]) -> list[str]:
    """The keys measured in at least one run (so --systems/--only leave no empty rows)."""
    return [k for k in keys if any((r.get(name) or {}).get(k) for r in runs)]


# -- W1 ----------------------------------------------------------------------------------


def w1_rate(runs: Sequence[dict[str, Any]], key: str) -> float:
    return med(part(runs, "w1", key), "process_per_s")


def w1_cell(runs: Sequence[dict[str, Any]], key: str) -> str:
    items = part(runs, "w1", key)
    done = [get(x, "processed") for x in items]
    tasks = [get(x, "tasks") for x in items]
    bounded = any(d < t for d, t in zip(done, tasks, strict=True) if not math.isnan(d))
    note = f" (drain bounded: {min(done):,.0f} ran)" if bounded else ""
    return rate(med(items, "process_per_s")) + note


def w1_each(runs: Sequence[dict[str, Any]], key: str) -> str:
    return each_run(part(runs, "w1", key), rate, "process_per_s")


def w1_section(runs: Sequence[dict[str, Any]]) -> list[str]:
    systems = [s for s in SYSTEMS if shown(runs, "w1", [f"{s}-c{c}" for c in FAIR_CONCURRENCY])]
    if not systems and not shown(runs, "w1", W1_EXTRA):
        return []
    tasks = med(part(runs, "w1", "atp-c10"), "tasks")
    lines = [
        "## W1 throughput, fair: the same worker concurrency and handler work for every system",
        "",
        f"{rate(tasks) if not math.isnan(tasks) else 'The'} tasks enqueued, then one worker "
        "process drains them. The handler records its start and does one Redis `INCR` on a "
        "counter key of the system's own Redis: a plain synchronous `def` for atp and Celery "
        "(what users write), an `async def` for arq (it runs nothing else) and an async "
        "processor (ioredis `incr`) for BullMQ. Processing tasks/s, medians of the runs:",
        "",
    ]
    header = ["system, worker", *(f"concurrency {c}" for c in FAIR_CONCURRENCY)]
    header += [f"each run, c={c}" for c in FAIR_CONCURRENCY]
    rows = []
    for s in systems:
        keys = [f"{s}-c{c}" for c in FAIR_CONCURRENCY]
        row = [f"{NAMES[s]}: {W1_WORKERS[s]}", *(w1_cell(runs, k) for k in keys)]
        row += [each_run(part(runs, "w1", k), rate, "process_per_s") for k in keys]
        rows.append(row)
    lines += table(header, rows)
    lines += ["", "atp against each peer (ratio of the medians, same run):", ""]
    peer_rows = [
        [f"atp / {NAMES[p]}"]
        + [ratio(w1_rate(runs, f"atp-c{c}"), w1_rate(runs, f"{p}-c{c}")) for c in FAIR_CONCURRENCY]
        for p in systems
        if p != "atp"
    ]
    lines += table(["", *(f"concurrency {c}" for c in FAIR_CONCURRENCY)], peer_rows)
    extra = shown(runs, "w1", W1_EXTRA)
    if extra:
        lines += [
            "",
            "Separate rows, not the headline (other settings than the fair table's):",
            "",
        ]
        lines += table(
            ["atp worker", "processing tasks/s (median)", "each run"],
            [
                [
                    W1_EXTRA[k],
                    w1_cell(runs, k),
                    each_run(part(runs, "w1", k), rate, "process_per_s"),
                ]
                for k in extra
            ],
        )
    return lines


# -- enqueue -----------------------------------------------------------------------------


def enqueue_section(runs: Sequence[dict[str, Any]]) -> list[str]:
    if not shown(runs, "enqueue", SYSTEMS):
        return []
    lines = [
        "## Enqueue from one process",
        "",
        "Each system's own producer API from one process, 100-byte payloads, after 200 calls "
        "not counted: one call at a time (each awaited before the next), batched, and "
        "concurrent (100 calls in flight on one client). Tasks/s, medians of the runs; n/a: "
        "the system has no such API. atp's figures come from loadtest/enqueue_bench.py's "
        "functions (the SDK's public calls).",
        "",
    ]
    rows = []
    for s in shown(runs, "enqueue", SYSTEMS):
        items = part(runs, "enqueue", s)
        cells = []
        for call, key in zip(
            ENQUEUE_CALLS[s], ("sequential", "batched", "concurrent"), strict=True
        ):
            value = med(items, f"{key}_per_s")
            cells.append("n/a" if not call else f"{rate(value)} ({call})")
        rows.append([NAMES[s], *cells, each_run(items, rate, "sequential_per_s")])
    header = ["system", "one at a time", "batched", "100 in flight", "one at a time, each run"]
    lines += table(header, rows)
    atp = part(runs, "enqueue", "atp")
    ratio_rows = [
        [f"atp / {NAMES[p]}"]
        + [
            ratio(med(atp, f"{k}_per_s"), med(part(runs, "enqueue", p), f"{k}_per_s"))
            for k in ("sequential", "batched", "concurrent")
        ]
        for p in shown(runs, "enqueue", PEERS)
    ]
    if ratio_rows:
        lines += ["", *table(["", "one at a time", "batched", "100 in flight"], ratio_rows)]
    many = med(atp, "concurrent_1000_per_s")
    if not math.isnan(many):
        lines += [
            "",
            f"atp with 1,000 `AsyncClient.enqueue()` calls in flight: {rate(many)} tasks/s.",
        ]
    return lines


# -- W3 ----------------------------------------------------------------------------------


def seconds(value: float, cap: float) -> str:
    if math.isnan(value):
        return f"not within {cap:.0f} s" if not math.isnan(cap) else "failed"
    return f"{value:.1f} s"


def w3_section(w3: dict[str, Any]) -> list[str]:
    lines = ["## W3 a worker SIGKILLed mid-run", ""]
    measured = [s for s in W3_SYSTEMS if w3.get(s)]
    if not measured:
        return []
    first = next((w3[s] for s in measured if "error" not in w3[s]), {})
    lines += [
        f"{get(first, 'tasks'):.0f} tasks of {get(first, 'sleep_s'):.0f} s each, one worker "
        f"process at concurrency {get(first, 'concurrency'):.0f}; half a task into its first "
        "wave every process of the worker gets SIGKILL and a fresh worker starts at once. "
        "Interrupted: started and not finished before the kill. Times are from the SIGKILL; "
        f"each system is given {get(first, 'cap_s'):.0f} s. One run per system, all systems "
        "at the same time, each on its own Redis (the figures are timeouts, not CPU).",
        "",
    ]
    rows = []
    for s in measured:
        r = w3[s]
        cap = get(r, "cap_s")
        if "error" in r:
            rows.append([NAMES[s], "failed", "", "", "", "", "", ""])
            continue
        rows.append(
            [
                NAMES[s] + (f" (lease {get(r, 'lease_s'):.0f} s)" if get(r, "lease_s") > 0 else ""),
                f"{get(r, 'interrupted'):.0f}",
                seconds(get(r, "restart_s"), cap),
                seconds(get(r, "recovered_s"), cap),
                seconds(get(r, "all_done_s"), cap),
                f"{get(r, 'not_recovered'):.0f}",
                f"{get(r, 'unfinished'):.0f}",
                f"{get(r, 'completed_twice'):.0f}",
            ]
        )
    header = [
        "system",
        "interrupted",
        "all interrupted started again",
        "all interrupted finished",
        "all tasks finished",
        "interrupted not finished",
        "tasks never finished",
        "tasks completed twice",
    ]
    lines += table(header, rows)
    released = get(w3.get("atp"), "released_s")
    if not math.isnan(released):
        lines += [
            "",
            f"atp's server released the interrupted tasks {released:.2f} s after the SIGKILL "
            "(GetTask polled every 20 ms: no longer running under the dead worker's lease).",
        ]
    lines += [
        "",
        "Workers: atp's SDK Worker with a plain `def` handler (`time.sleep`) against "
        "`atp --role=server,watchdog`; Celery's task with `acks_late=True, "
        "reject_on_worker_lost=True` (what its docs ask for crash safety; by default it "
        "acknowledges on receipt and loses the task); arq's, BullMQ's, RQ's (`rq worker-pool "
        "-n 10`, a work horse forked per job) and SAQ's defaults. The SIGKILL reaches every "
        "process of the worker, as when its container dies.",
    ]
    return lines


# -- W2, W6 ------------------------------------------------------------------------------


def late_cells(items: Sequence[dict[str, Any]]) -> list[str]:
    return [
        ms(med(items, "p50")),
        ms(med(items, "p95")),
        ms(med(items, "p99")),
        ms(med(items, "max")),
        total(items, "early"),
        total(items, "never_run"),
    ]


def w2_section(runs: Sequence[dict[str, Any]]) -> list[str]:
    keys = shown(runs, "w2", ("atp", "atp-grpc", *PEERS))
    if not keys:
        return []
    rows = [[W2_NAMES.get(k) or NAMES[k], *late_cells(part(runs, "w2", k))] for k in keys]
    lines = [
        "## W2 precision: idle workers, 2,000 tasks due uniformly over the next 10 s",
        "",
        "Lateness = handler start - due time, in ms (medians of the runs; early starts and "
        "never-run tasks summed over all runs). atp's SDK Worker runs its default data path.",
        "",
    ]
    lines += table(["system", "p50", "p95", "p99", "max", "early", "never run"], rows)
    p99 = med(part(runs, "w2", "atp"), "p99")
    peers = [p for p in keys if p in PEERS]
    if peers:
        lines += ["", "atp's p99 against each peer's (lower is better; peer / atp):", ""]
        lines += table(
            [NAMES[p] for p in peers],
            [[ratio(med(part(runs, "w2", p), "p99"), p99) for p in peers]],
        )
    return lines


def w6_section(runs: Sequence[dict[str, Any]]) -> list[str]:
    items = [r.get("w6") or {} for r in runs]
    if not any(items):
        return []
    lines = [
        "## W6 due-to-start latency under a steady 1,000 tasks/s load (atp)",
        "",
        "One SDK Worker (concurrency 100, the sync INCR handler) serves two topics: one fed "
        "1,000 tasks/s due at once (`enqueue_many` of 10 every 10 ms, for the whole "
        "measurement), and one whose 2,000 tasks are due uniformly over 10 s, as in W2. "
        "Lateness of the latter, ms:",
        "",
    ]
    lines += table(
        ["p50", "p95", "p99", "max", "early", "never run", "load sent (tasks/s)", "load done"],
        [
            [
                *late_cells(items),
                rate(med(items, "background_sent_per_s")),
                each_run(items, rate, "background_done"),
            ]
        ],
    )
    return lines


# -- API rates, W4, W5, profile ----------------------------------------------------------


def api_section(runs: Sequence[dict[str, Any]]) -> list[str]:
    """The API rates, of the runs that measure them (the first API_RUNS: a later run's
    missing figures are not a failure)."""
    api = [r.get("api") or {} for r in runs[:API_RUNS]]
    if not any(api):
        return []
    rows = [
        ("Enqueue (unary), 1 server process", "unary_1_server", "calls/s"),
        ("Enqueue (unary), 2 server processes", "unary_2_servers", "calls/s"),
        ("EnqueueBatch of 1,000, 1 server process", "batch_1_server", "tasks/s"),
        ("EnqueueBatch of 1,000, 2 server processes", "batch_2_servers", "tasks/s"),
        ("Retrieve 500 + AckBatch, 1 server process", "retrieve_ack_per_s", "tasks/s"),
        ("Retrieve 500 + AckBatch, 2 server processes", "retrieve_ack_2_servers_per_s", "tasks/s"),
    ]
    lines = ["## API rates (atp, raw gRPC)", ""]
    if API_RUNS == 1:
        lines += table(
            ["call", "rate", "unit"],
            [[label, rate(med(api, key)), unit] for label, key, unit in rows],
        )
    else:
        lines += table(
            ["call", "median", "unit", "each run"],
            [
                [label, rate(med(api, key)), unit, each_run(api, rate, key)]
                for label, key, unit in rows
            ],
        )
    lines += [
        "",
        f"Measured in {'run 1' if API_RUNS == 1 else f'runs 1-{API_RUNS}'} only: no target "
        "rests on these rates. "
        "Unary Enqueue: 2 client processes with 64 calls in flight each, generated stubs (no "
        "SDK). EnqueueBatch: 4 calls in flight, 100-byte payloads. Retrieve+Ack: 4 consumers, "
        "Retrieve of 500 with wait_ms 0, then one AckBatch.",
    ]
    return lines


def w4_section(w4: dict[str, Any]) -> list[str]:
    if not w4:
        return []
    rows = []
    for key in [s for s in SYSTEMS if s in w4]:
        figures = w4.get(key)
        rows.append(
            [NAMES[key], rate(get(figures, "bytes_per_task")), rate(get(figures, "beyond_payload"))]
        )
    lines = [
        "## W4 memory: Redis bytes per pending task (100,000 tasks, 100-byte payload, due in 2 h)",
        "",
        "`INFO memory` used_memory after minus before, divided by the tasks (one run: the "
        "figure is deterministic).",
        "",
    ]
    lines += table(["system", "bytes per task", "beyond the payload"], rows)
    history = w4.get("atp") or {}
    if not math.isnan(get(history, "history_bytes_per_task")):
        lines += [
            "",
            f"atp's task event history (docs/adr/0017): "
            f"{rate(get(history, 'history_bytes_per_task'))} bytes per task that was leased, "
            f"nacked, leased again and acked ({rate(get(history, 'history_events_per_task'))} "
            "events with the enqueue), a field of the task's record that expires with it; "
            "a pending task never leased has none (the figure above).",
        ]
    return lines


def w5_section(w5: dict[str, Any] | None) -> list[str]:
    lines = ["## W5 scale: W2 and a drain with 1,000,000 tasks pending in the future", ""]
    if not w5:
        return []
    if "error" in w5:
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


PROFILES = (
    ("sdk_worker", "SDK Worker process, W1's fair setting (concurrency 10, sync INCR handler)"),
    ("sdk_server", "Server, at the same time (serving that SDK Worker)"),
    ("sdk_worker_c100", "SDK Worker process, concurrency 100, sync INCR handler"),
    ("sdk_server_c100", "Server, at the same time (serving that SDK Worker at concurrency 100)"),
    ("enqueue_unary", "Server, unary Enqueue (2 client processes, 64 in flight each)"),
    ("w1_processing", "Server, bare consumers (4 loops: Retrieve 500 + AckBatch)"),
    ("enqueue_batch", "Server, EnqueueBatch of 1,000 (4 in flight)"),
)


def profile_section(profile: dict[str, Any] | None) -> list[str]:
    lines = ["## Profile of atp's processes (py-spy)", ""]
    if not profile or "error" in profile:
        return [*lines, f"Not measured: {(profile or {}).get('error', 'skipped')}"]
    for key, title in PROFILES:
        prof = profile.get(key) or {}
        if not prof:
            continue
        lines += [
            f"### {title}: {rate(get(prof, 'rate_per_s'))} tasks/s while sampled, "
            f"{get(prof, 'samples'):,.0f} samples",
            "",
            f"Self time in redis-py: {100 * get(prof, 'redis_py'):.0f}%; in asyncio and the "
            f"selector: {100 * get(prof, 'asyncio'):.0f}% (the grpc core's Cython callbacks run "
            "inside asyncio's Handle._run and count there).",
            "",
        ]
        lines += cpu_lines(prof, profile, key)
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


def cpu_per_task(profile: dict[str, Any], concurrency: int) -> str:
    """'worker A, server B, Redis C: D us in all' of the SDK Worker profile at `concurrency`."""
    key = "sdk_worker" if concurrency == 10 else f"sdk_worker_c{concurrency}"
    cpu = (profile.get(key) or {}).get("cpu_us_per_task") or {}
    if not cpu:
        return ""
    parts = ", ".join(f"{name} {us:.0f}" for name, us in cpu.items())
    return f"{parts}: {sum(cpu.values()):.0f} µs in all"


def floor_text(profile: dict[str, Any], concurrency: int) -> str:
    """The handler alone in `concurrency` threads (loadtest/handler_floor.py), one phrase."""
    floor = profile.get(f"handler_floor_c{concurrency}") or {}
    if not floor:
        return ""
    cpu = floor.get("cpu_us_per_task") or {}
    return (
        f"{rate(get(floor, 'rate_per_s'))} tasks/s, {get(cpu, 'handler'):.0f} µs of CPU per "
        f"task in its process and {get(cpu, 'redis'):.0f} µs in Redis"
    )


def cpu_lines(prof: dict[str, Any], profile: dict[str, Any], key: str) -> list[str]:
    """Under an SDK Worker profile: CPU per task by process, and the handler-alone floor."""
    if not key.startswith("sdk_worker"):
        return []
    concurrency = 10 if key == "sdk_worker" else int(key.rsplit("_c", 1)[1])
    lines = []
    if cpu := cpu_per_task(profile, concurrency):
        lines += [f"CPU per task while sampled (µs, from /proc): {cpu}.", ""]
    if floor := floor_text(profile, concurrency):
        lines += [
            f"The handler alone in {concurrency} threads, no queue (loadtest/handler_floor.py, "
            f"the floor of this setting): {floor}.",
            "",
        ]
    return lines


def fsync_section(fsync: dict[str, Any] | None) -> list[str]:
    """What `--redis-fsync always` costs against the default `everysec` (issue 13 item 8)."""
    if not fsync:
        return []
    lines = ["## Durability: `--redis-fsync always` vs `everysec`", ""]
    if "error" in fsync:
        return [*lines, f"Not measured: {fsync['error']}"]
    every, always = get(fsync, "everysec"), get(fsync, "always")
    return [
        *lines,
        "Unary Enqueue calls per second into `atp --role=all` (embedded Redis, AOF), 32 callers "
        "in flight, one run each (loadtest/fsync_cost.py). `always` fsyncs the AOF before "
        "every reply; `everysec` once a second, so an OS or power crash may lose up to about 1 s "
        "of acknowledged writes (a process kill loses nothing; docs/OPERATIONS.md).",
        "",
        *table(
            ["--redis-fsync", "Enqueue/s", "vs everysec"],
            [["everysec", rate(every), "1.00x"], ["always", rate(always), ratio(always, every)]],
        ),
    ]


def cluster_section(cluster: dict[str, Any] | None) -> list[str]:
    """W1 and EnqueueBatch against one Redis and a 3-master Redis Cluster (issue 15)."""
    if not cluster:
        return []
    lines = ["## Cluster: 1 Redis vs a Redis Cluster of 3 masters (atp, 1 server process)", ""]
    if "error" in cluster:
        return [*lines, f"Not measured: {cluster['error']}"]
    one, three = cluster.get("masters_1"), cluster.get("masters_3")
    rows = [
        [
            label,
            rate(get(one, key)),
            rate(get(three, key)),
            ratio(get(three, key), get(one, key)),
        ]
        for label, key in (
            ("EnqueueBatch of 1,000, 4 in flight (tasks/s)", "batch_per_s"),
            (
                f"W1: SDK Worker, concurrency {get(cluster, 'w1_concurrency'):.0f}, INCR handler"
                " (tasks/s)",
                "w1_per_s",
            ),
        )
    ]
    return [
        *lines,
        f"The same load on both, spread round-robin over {get(cluster, 'topics'):.0f} topics, "
        "4 on each master's slots (a topic's keys share one hash tag: one topic lives on one "
        "master). One `atp --role=server` process, the cluster without replicas "
        "(loadtest/scale_bench.py).",
        "",
        *table(["", "1 Redis", "3 masters", "3 / 1"], rows),
        "",
        "On this 2-core machine the ratio is bounded by CPU, not by Redis: one atp server "
        "process (and the one worker process of W1) saturates a core before one Redis does, "
        "and the three masters share the same two cores with it. What a cluster adds here is "
        "the cluster client's cost (a pipeline split per master). Redis capacity grows with "
        "masters when each has a core of its own and enough server and worker processes feed "
        "them (docs/SCALING.md).",
    ]


def durability_section(durability: dict[str, Any] | None) -> list[str]:
    """What `--durability replicated` costs against `local` (issue 15)."""
    if not durability:
        return []
    lines = ["## Replicated durability: `--durability replicated` vs `local`", ""]
    if "error" in durability:
        return [*lines, f"Not measured: {durability['error']}"]
    local, replicated = durability.get("local"), durability.get("replicated")
    rows = [
        [
            label,
            rate(get(local, key)),
            rate(get(replicated, key)),
            ratio(get(replicated, key), get(local, key)),
        ]
        for label, key in (
            ("Enqueue (unary), 2 clients x 64 in flight (calls/s)", "unary_per_s"),
            ("EnqueueBatch of 1,000, 4 in flight (tasks/s)", "batch_per_s"),
            ("Retrieve 500 + AckBatch, 4 consumers (tasks/s)", "retrieve_ack_per_s"),
        )
    ]
    return [
        *lines,
        "One `atp --role=server` against a master with one replica (`--replicaof`, loopback). "
        "`replicated` ends every script call with `WAIT 1` on its connection "
        "(docs/adr/0013-durability.md): one replica round trip per call, not per task "
        "(loadtest/scale_bench.py).",
        "",
        *table(["", "local", "replicated", "replicated / local"], rows),
        "",
        f"Median latency of an Enqueue call made one at a time: {ms(get(local, 'sequential_ms'))}"
        f" ms local, {ms(get(replicated, 'sequential_ms'))} ms replicated. What `WAIT 1` adds"
        f" to one write at the Redis level (median of SET+WAIT minus SET+PING pipelines): "
        f"{rate(get(durability, 'wait_us'))} µs.",
    ]
