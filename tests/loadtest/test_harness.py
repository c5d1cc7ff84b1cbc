"""The bench harness's own logic: statistics, start records, report rendering, profile
parsing. No Redis and no processes: these are pure functions (loadtest/ is not a package, so
its directory is put on sys.path)."""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "loadtest"))

import bench
import harness
import load
import profiling
import report
import scale_bench


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert harness.percentile(values, 50) == 50.0
    assert harness.percentile(values, 99) == 99.0
    assert harness.percentile(values, 100) == 100.0
    assert harness.percentile([3.0, 1.0, 2.0], 0) == 1.0
    assert math.isnan(harness.percentile([], 50))


def test_median_skips_nan() -> None:
    assert harness.median([3.0, 1.0, 2.0]) == 2.0
    assert harness.median([4.0, 1.0, math.nan, 2.0, 3.0]) == 2.5
    assert math.isnan(harness.median([math.nan]))


def test_due_times_are_distinct_whole_ms_over_the_spread() -> None:
    due = harness.due_times(2000, 1_000_000.4, 10_000)
    assert len(set(due)) == 2000
    assert due[0] == 1_000_000.0 and due[-1] < 1_010_000.4
    assert all(d == int(d) for d in due)


def test_lateness_counts_early_never_run_and_repeats() -> None:
    expected = [100.0, 200.0, 300.0, 400.0]
    records = [(100.0, 101.0), (200.0, 199.5), (300.0, 305.0), (300.0, 303.0), (999.0, 1000.0)]
    got = harness.lateness(records, expected)
    assert got["early"] == 1  # 200 started at 199.5
    assert got["never_run"] == 1  # 400
    assert got["repeats"] == 1  # 300 twice; its first start (303) counts
    assert got["unexpected"] == 1  # 999
    assert got["max"] == 3.0
    assert got["p50"] == 1.0


def test_processing_rate_spans_first_to_last_start() -> None:
    records = [(0.0, 1000.0 + i) for i in range(1001)]  # one start per ms for 1 s
    assert harness.processing_rate(records) == pytest.approx(1000.0)
    assert math.isnan(harness.processing_rate(records[:1]))


def test_records_round_trip_and_count(tmp_path: Path) -> None:
    path = tmp_path / "starts.rec"
    recorder = harness.Recorder(path)
    for due in (1.0, 2.0, 3.0):
        recorder.record(due)
    recorder.close()
    assert harness.count_records(path) == 3
    assert [due for due, _ in harness.read_records(path)] == [1.0, 2.0, 3.0]
    assert harness.wait_for_records(path, 3, timeout_s=0.1)
    assert not harness.wait_for_records(path, 4, timeout_s=0.05)
    assert harness.count_records(tmp_path / "missing") == 0


def test_run_time_parsing() -> None:
    assert load.seconds("30") == 30
    assert load.seconds("30s") == 30
    assert load.seconds("1h30m") == 5400
    with pytest.raises(Exception, match="bad run time"):
        load.seconds("10x")


def test_profile_summary_of_collapsed_stacks() -> None:
    raw = "\n".join(
        [
            "main (appliance/cli.py:1);Store.ack_many (appliance/store/store.py:10);"
            "pack_command (redis/asyncio/connection.py:5) 6",
            "main (appliance/cli.py:1);Store.ack_many (appliance/store/store.py:12) 2",
            "main (appliance/cli.py:1);select (selectors.py:468) 2",
        ]
    )
    got = profiling.summarize(raw)
    assert got["samples"] == 10
    assert got["self"][0] == ("pack_command (redis/asyncio/connection.py)", 0.6)
    assert ("Store.ack_many (appliance/store/store.py)", 0.8) in got["inclusive"]
    assert got["redis_py"] == pytest.approx(0.6)


def _w1(rate: float, conc: int) -> dict[str, Any]:
    return {"process_per_s": rate, "processed": 100, "tasks": 100, "concurrency": conc}


def _results(atp_rate: float, bull_rate: float, restart_s: float = 0.5) -> dict[str, Any]:
    w1 = {
        "atp-c10": _w1(atp_rate, 10),
        "atp-c100": _w1(atp_rate * 2, 100),
        "bullmq-c10": _w1(bull_rate, 10),
        "bullmq-c100": _w1(bull_rate, 100),
        "celery-c10": _w1(100.0, 10),
        "arq-c10": {"error": "exit 1: boom"},
        "atp-c1000-noop": _w1(20_000.0, 1000),
    }
    late = {"p50": 1.0, "p95": 1.5, "p99": 1.9, "max": 3.0, "early": 0.0, "never_run": 0.0}
    enqueue = {
        "atp": {
            "sequential_per_s": 6000.0,
            "batched_per_s": 80_000.0,
            "concurrent_per_s": 20_000.0,
            "concurrent_1000_per_s": 60_000.0,
        },
        "bullmq": {
            "sequential_per_s": 5000.0,
            "batched_per_s": 40_000.0,
            "concurrent_per_s": 9000.0,
        },
        "celery": {"sequential_per_s": 2000.0, "batched_per_s": None, "concurrent_per_s": None},
    }
    run = {
        "w1": w1,
        "enqueue": enqueue,
        "w2": {"atp": late, "bullmq": {**late, "p99": 95.0}},
        "w6": {**late, "p99": 4.0, "background_sent_per_s": 1000.0, "background_done": 10_000},
        "api": {},
    }
    w3 = {
        "atp": {
            "tasks": 40,
            "interrupted": 10,
            "released_s": 0.05,
            "restart_s": restart_s,
            "recovered_s": 3.5,
            "all_done_s": 9.0,
            "not_recovered": 0,
            "unfinished": 0,
            "completed_twice": 0,
            "cap_s": 120.0,
            "concurrency": 10,
            "sleep_s": 3.0,
        },
        "celery": {
            "tasks": 40,
            "interrupted": 10,
            "restart_s": None,
            "recovered_s": None,
            "all_done_s": None,
            "not_recovered": 10,
            "unfinished": 40,
            "completed_twice": 0,
            "cap_s": 120.0,
            "concurrency": 10,
            "sleep_s": 3.0,
        },
    }
    return {
        "runs": [run, run, run],
        "w3": w3,
        "w4": {"atp": {"beyond_payload": 200.0}},
        "command": "x",
    }


def _row(text: str, start: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(start))


def test_report_targets_are_computed_from_the_figures() -> None:
    text = report.render(_results(atp_rate=3000.0, bull_rate=2000.0))
    c10 = _row(text, "| W1, concurrency 10")
    assert "atp 3,000/s, BullMQ 2,000/s: 1.50x" in c10 and c10.endswith("| met (stretch met) |")
    assert _row(text, "| W1, concurrency 100").endswith("| met |")  # 6,000 / 2,000 = 3.00x
    assert "1.20x" in _row(text, "| Sequential enqueue") and "| met |" in text
    w3 = "restarted 0.50 s after the SIGKILL (released by the server after 0.05 s); 0 lost"
    assert w3 in _row(text, "| W3:")
    assert "released the interrupted tasks 0.05 s after the SIGKILL" in text
    assert _row(text, "| W2 (SDK Worker").endswith("| met |")
    w6 = _row(text, "| Due-to-start latency")
    assert "p99 4.0 ms" in w6 and w6.endswith("| **missed** |")
    assert _row(text, "| Concurrent enqueue").endswith("| met |")  # 60,000 tasks/s
    assert "1,000 `AsyncClient.enqueue()` calls in flight: 60,000 tasks/s" in text
    assert "| atp / BullMQ | 1.50x | 3.00x |" in text  # the fair W1's ratios
    assert "| atp / Celery | 30.0x | n/a |" in text
    assert "| Celery | 10 | not within 120 s | not within 120 s |" in text  # W3
    assert "failed" in text  # arq's failed step shows as failed, the rest still renders
    assert "50.0x" in text  # BullMQ's W2 p99 against atp's
    missed = report.render(_results(atp_rate=1000.0, bull_rate=2000.0, restart_s=31.0))
    assert _row(missed, "| W1, concurrency 10").endswith("| **missed** |")
    assert _row(missed, "| W3:").endswith("| **missed** |")
    assert "wait behind the 30 tasks still pending" in missed  # released at once, queued behind


def _sdk_profile(frame: str, rate: float, cpu: dict[str, float]) -> dict[str, Any]:
    return {
        "samples": 100,
        "self": [(frame, 0.5)],
        "rate_per_s": rate,
        "cpu_us_per_task": cpu,
        "worker_system_us": 40.0,
    }


def test_missed_w1_targets_name_each_concurrencys_own_profile_cpu_and_handler_floor() -> None:
    results = _results(atp_rate=1000.0, bull_rate=2000.0)
    floor = {"rate_per_s": 2500.0, "cpu_us_per_task": {"handler": 50.0, "redis": 20.0}}
    results["profile"] = {
        "sdk_worker": _sdk_profile("c10_frame (x.py)", 900.0, {"worker": 150.0, "redis": 50.0}),
        "sdk_server": _sdk_profile("server10 (y.py)", 900.0, {}),
        "sdk_worker_c100": _sdk_profile("c100_frame (x.py)", 1800.0, {"worker": 120.0}),
        "sdk_server_c100": _sdk_profile("server100 (y.py)", 1800.0, {}),
        "handler_floor_c10": floor,
        "handler_floor_c100": {**floor, "rate_per_s": 2000.0},
    }
    text = report.render(results)
    c10 = _row(text, "- **W1, concurrency 10,")
    c100 = _row(text, "- **W1, concurrency 100,")
    assert "c10_frame" in c10 and "c100_frame" not in c10
    assert "c100_frame" in c100 and "c10_frame" not in c100
    assert "worker 150, redis 50: 200 µs in all" in c10  # 2e6 / 200 = 10,000 tasks/s at most
    assert "at most 10,000 tasks/s" in c10 and "the Worker process spends 100 µs" in c10
    assert "1.5x BullMQ (3,000 tasks/s) is above what the handler alone reaches" in c100
    assert "nan" not in c100  # no Redis figure in its profile: none named
    assert "### SDK Worker process, concurrency 100" in text


def test_report_says_not_measured_for_what_was_left_out() -> None:
    text = report.render({"runs": [{"w1": {"atp-c10": _w1(500.0, 10)}}], "parts": ["w1"]})
    assert _row(text, "| W1, concurrency 10").endswith("| not measured |")
    assert "## W2" not in text and "## W3" not in text  # no empty sections
    assert "parts run: w1" in text


def test_report_get_handles_missing_and_errors() -> None:
    assert report.get({"a": {"b": 2}}, "a", "b") == 2.0
    assert math.isnan(report.get({"error": "x"}, "a"))
    assert math.isnan(report.get({"a": None}, "a"))
    assert report.ratio(3.0, 0.0) == "n/a"


def test_recovery_figures_around_the_kill() -> None:
    kill = 10_000.0
    starts = [(0.0, 9_000.0), (1.0, 9_000.0), (2.0, 8_000.0), (0.0, 10_400.0), (3.0, 10_500.0)]
    finishes = [(2.0, 9_500.0), (0.0, 13_400.0), (3.0, 13_500.0), (3.0, 13_600.0)]
    got = harness.recovery(starts, finishes, kill, tasks=4, cap_s=120.0)
    assert got["interrupted"] == 2  # 0 and 1 (2 finished before the kill)
    assert got["restart_s"] != got["restart_s"]  # 1 never started again: nan
    assert got["not_recovered"] == 1 and got["unfinished"] == 1
    assert got["completed_twice"] == 1  # 3
    starts.append((1.0, 10_200.0))
    finishes.append((1.0, 13_200.0))
    got = harness.recovery(starts, finishes, kill, tasks=4, cap_s=120.0)
    assert got["restart_s"] == pytest.approx(0.4) and got["recovered_s"] == pytest.approx(3.4)
    assert got["all_done_s"] == pytest.approx(3.5) and got["unfinished"] == 0


def test_summary_and_before_after_against_a_baseline() -> None:
    results = _results(atp_rate=3000.0, bull_rate=2000.0)
    figures = report.summary(results)
    assert figures["W1 fair, c=10, BullMQ (tasks/s)"] == 2000.0
    assert figures["W3 atp, restart after SIGKILL (s)"] == 0.5
    assert figures["API Enqueue, 1 server process (calls/s)"] is None  # not measured
    baseline = {"about": "the run before", "figures": {"W1 fair, c=10, BullMQ (tasks/s)": 1000}}
    text = report.render(results, baseline)
    assert "## Before and after" in text and "the run before" in text
    assert "| W1 fair, c=10, BullMQ (tasks/s) | 1,000 | 2,000 | 2.00x |" in text
    assert "## Before and after" not in report.render(results, {})
    two = {
        "runs": [
            {"label": "first", "about": "the first run", "figures": {}},
            {"label": "second", "about": "x", "figures": {"W1 fair, c=10, BullMQ (tasks/s)": 500}},
        ]
    }
    text = report.render(results, two)
    assert "- first: the first run" in text
    assert "| figure (medians) | first | second | now | now / first | now / second |" in text
    assert "| W1 fair, c=10, BullMQ (tasks/s) | n/a | 500 | 2,000 | n/a | 4.00x |" in text


def test_code_state_says_when_the_product_code_moved() -> None:
    same = {"code_before": "abc t1/p1", "code_after": "def t1/p1"}  # a docs commit only
    assert report.code_state(same) == "commit `abc`"
    moved = {"code_before": "abc t1/p1", "code_after": "def t2/p1"}
    assert "changed during the run" in report.code_state(moved)
    dirty = {"code_before": "abc t1/p1+changes", "code_after": "abc t1/p1+changes"}
    assert "uncommitted" in report.code_state(dirty)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"  # a zombie is dead


def test_kill_reaches_a_grandchild_that_left_the_group(tmp_path: Path) -> None:
    """W3's SIGKILL must reach every process of a worker, as RQ's work horses leave its
    process group; stop() must not leave such a process behind either."""
    pid_file = tmp_path / "grandchild"
    code = (
        "import os, subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import os, time; os.setsid(); "
        "time.sleep(60)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(60)\n"
    )
    for end in ("kill", "stop"):
        pid_file.unlink(missing_ok=True)
        proc = harness.Proc([sys.executable, "-c", code])
        for _ in range(200):
            if pid_file.exists() and pid_file.read_text():
                break
            time.sleep(0.05)
        grandchild = int(pid_file.read_text())
        assert _alive(grandchild)
        proc.kill() if end == "kill" else proc.stop(timeout_s=1.0)
        for _ in range(100):
            if not _alive(grandchild):
                break
            time.sleep(0.05)
        assert not _alive(grandchild), end


def test_bench_selectors_name_parts_and_systems() -> None:
    parts = bench._names(bench.PARTS)
    assert parts("W1, w3") == ["w1", "w3"]
    with pytest.raises(argparse.ArgumentTypeError, match="w9"):
        parts("w1,w9")
    args = argparse.Namespace(systems=["atp", "rq", "bullmq"], only=["w3"], short=True)
    chosen = bench.Bench(args)
    assert chosen.systems() == ["atp", "bullmq"]  # RQ and SAQ are measured in W3 alone
    assert chosen.systems(w3=True) == ["atp", "bullmq", "rq"]
    assert chosen.atp("w1")[-1] == "--short" and chosen.wants("w3") and not chosen.wants("w1")


def test_the_fsync_cost_is_rendered_from_its_figures() -> None:
    doc = report.render({"runs": [], "fsync": {"everysec": 2000.0, "always": 1500.0}})
    assert "## Durability: `--redis-fsync always` vs `everysec`" in doc
    assert "| always | 1,500 | 0.75x |" in doc
    assert "Durability" not in report.render({"runs": []})


def test_chain_result_counts_runs_handoffs_incomplete_and_twice() -> None:
    """W7: records marked run*4+step; hand-offs are step-to-step starts of complete runs."""
    recs = [(harness.mark(0, k), 1000.0 + 2 * k) for k in range(3)]  # hand-offs 2, 2 ms
    recs += [(harness.mark(1, k), 1010.0 + 5 * k) for k in range(3)]  # 5, 5 ms
    recs += [(harness.mark(1, 2), 1030.0)]  # a step started twice: its first start counts
    recs += [(harness.mark(2, 0), 1040.0)]  # incomplete
    got = harness.chain_result(recs, 3)
    assert (got["complete"], got["twice"], got["handoffs"]) == (2, 1, 4)
    assert got["handoff_p50_ms"] == 2.0 and got["handoff_max_ms"] == 5.0
    assert got["runs_per_s"] == pytest.approx(2 / 0.040)


def test_w7_targets_are_computed_from_the_figures() -> None:
    def chains(runs_per_s: float, p99: float) -> dict[str, Any]:
        phase = {"runs": 10, "complete": 10, "twice": 0, "runs_per_s": runs_per_s}
        return {
            "throughput": phase,
            "handoff": {**phase, "handoff_p50_ms": 1.0, "handoff_p99_ms": p99, "handoff_max_ms": 9},
            "memory": {"bytes_per_run": 900.0, "waiting_runs": 1000},
        }

    w7 = {"atp": chains(700.0, 2.5), "celery": chains(300.0, 4.0), "bullmq": chains(800.0, 4.2)}
    text = report.render({"runs": [{"w7": w7}], "command": "x"})
    assert _row(text, "| W7 3-step chains completed/s: >= 2x Celery").endswith("| met |")
    bull = _row(text, "| W7 3-step chains completed/s: >= 1x BullMQ")
    assert "atp 700/s, BullMQ 800/s: 0.88x" in bull and bull.endswith("| **missed** |")
    assert _row(text, "| W7 hand-off p99 <= 3 ms").endswith("| 2.5 ms | met |")
    assert _row(text, "| W7 <= 1 KB per run waiting").endswith("| 900 bytes | met |")
    assert "| atp | a `Workflow` of 3 steps" in text and "| 700 | 1.0 | 2.5 | 9.0 | 0 | 0 |" in text
    assert "run 900 bytes" not in text and "1,000 runs, a 2-step workflow): 900 bytes" in text
    # the missed target (BullMQ) says what bounds it; the met ones say nothing
    assert "What bounds the missed W7 targets" in text and "- **W7 >= 1x BullMQ**: " in text
    assert "- **W7 >= 2x Celery**" not in text and "- **W7 hand-off p99**" not in text


def test_the_cluster_and_durability_figures_are_rendered() -> None:
    doc = report.render(
        {
            "runs": [],
            "cluster": {
                "masters_1": {"batch_per_s": 20000.0, "w1_per_s": 1000.0},
                "masters_3": {"batch_per_s": 24000.0, "w1_per_s": 1500.0},
                "topics": 12,
                "w1_concurrency": 100,
            },
            "durability": {
                "wait_us": 42.0,
                "local": {
                    "sequential_ms": 1.25,
                    "unary_per_s": 800.0,
                    "batch_per_s": 30000.0,
                    "retrieve_ack_per_s": 7000.0,
                },
                "replicated": {
                    "sequential_ms": 1.5,
                    "unary_per_s": 600.0,
                    "batch_per_s": 27000.0,
                    "retrieve_ack_per_s": 5600.0,
                },
            },
        }
    )
    assert "| EnqueueBatch of 1,000, 4 in flight (tasks/s) | 20,000 | 24,000 | 1.20x |" in doc
    assert "INCR handler (tasks/s) | 1,000 | 1,500 | 1.50x |" in doc
    assert "| Enqueue (unary), 2 clients x 64 in flight (calls/s) | 800 | 600 | 0.75x |" in doc
    assert "one at a time: 1.2 ms local, 1.5 ms replicated." in doc
    assert "SET+PING pipelines): 42 µs." in doc
    empty = report.render({"runs": []})
    assert "## Cluster" not in empty and "## Replicated durability" not in empty


def test_scale_bench_topics_spread_four_per_master() -> None:
    topics = scale_bench.spread_topics()
    shares = [scale_bench.slot(t) * 3 // 16384 for t in topics]
    assert sorted(shares) == [0] * 4 + [1] * 4 + [2] * 4


def test_the_worker_against_the_handler_floor_says_more_or_less() -> None:
    assert report.more_or_less(150.0, 142.0) == "8 µs per task more"
    assert report.more_or_less(124.0, 149.0) == "25 µs per task less"  # not "-25 µs more"


def test_the_api_rates_count_only_the_runs_that_measure_them() -> None:
    """Measured in the first run only: the later runs' missing rates are not failures."""
    keys = ("unary_1_server", "unary_2_servers", "batch_1_server", "batch_2_servers")
    rates = dict.fromkeys(keys, 1900.0) | {
        "retrieve_ack_per_s": 38000.0,
        "retrieve_ack_2_servers_per_s": 38000.0,
    }
    lines = "\n".join(report.api_section([{"api": rates}, {"api": None}, {"api": None}]))
    assert "| 1,900 | calls/s |" in lines and "failed" not in lines
    assert "run 1 only" in lines
    failed = "\n".join(report.api_section([{"api": {}}, {"api": rates}]))
    assert failed == ""  # nothing measured where it is measured: no section
