"""The chaos harness's pure parts (scenario registry, report rows, log scan) and, marked slow,
one real scenario run that must leave no process behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from chaos.checker import Counts, Verdict, Violation
from chaos.harness import Outcome, log_errors, preflight, row, run_row, run_scenario, table
from chaos.runcheck import RunCounts, RunVerdict
from chaos.scenarios import QUICK, SCENARIOS


def test_the_quick_subset_includes_the_stream_worker_kill_and_the_advance_kill() -> None:
    assert QUICK == [
        "latency",
        "worker_kill",
        "redis_restart",
        "supervisor_kill",
        "stream_worker_kill",
        "lb_server_kill",
        "workflow_advance_kill",
    ]
    flows = [name for name, s in SCENARIOS.items() if s.options.workflows]
    assert flows == [
        "workflow_advance_kill",
        "workflow_advance_kill_many",
        "workflow_redis_restart",
        "workflow_lost_acks",
        "workflow_signal_race",
    ]
    assert all(SCENARIOS[n].options.servers >= 2 for n in flows)  # two advancers at least
    assert SCENARIOS["stream_worker_kill"].restart_within_ms == 1000
    assert all(s.name == name and s.run.__name__ == name for name, s in SCENARIOS.items())


def test_a_row_per_scenario_with_every_column(tmp_path: Path) -> None:
    counts = Counts(tasks=300, succeeded=259, dead=31, canceled=10, duplicates=4, explained=3)
    counts.interrupted, counts.restart_max_ms, counts.skipped = 5, 12, 7
    passed = Outcome(SCENARIOS["latency"], tmp_path, Verdict(counts, []), 3.25, 18.0)
    broken = Violation("fencing", "t1", "x")
    failed = Outcome(SCENARIOS["reset_peer"], tmp_path, Verdict(Counts(), [broken]), None, 20.0)
    errored = Outcome(SCENARIOS["slow"], tmp_path, None, error="boom")
    lines = table([passed, failed, errored]).splitlines()
    assert lines[0].count("|") == lines[1].count("|") == lines[2].count("|") == 18
    assert lines[3].count("|") == lines[4].count("|") == 18
    assert (
        "| latency | 300 | 259 | 31 | 10 | 0 | 0 | 0 | 4 (3) | 0 | 0 (7) | 12 ms (5) |" in lines[2]
    )
    assert lines[2].endswith("| 3.2 s | 18 s | pass |")
    assert "not drained" in row(failed) and row(failed).endswith("FAIL (1) |")
    assert row(errored).endswith("ERROR |")


def test_a_workflow_scenario_gets_a_row_in_the_runs_table(tmp_path: Path) -> None:
    counts = RunCounts(runs=150, succeeded=112, failed=31, canceled=7, steps=578, executions=541)
    counts.reruns, counts.on_failure_ran, counts.server_kills = 8, 31, 5
    counts.signals_in_time, counts.signals_racing, counts.signals_late, counts.timeouts = (
        26,
        1,
        8,
        22,
    )
    scenario = SCENARIOS["workflow_advance_kill"]
    passed = Outcome(scenario, tmp_path, Verdict(Counts(), []), 1.0, 31.0)
    passed.runs = RunVerdict(counts, [])
    broken = Outcome(scenario, tmp_path, Verdict(Counts(), []), 1.0, 31.0)
    broken.runs = RunVerdict(RunCounts(), [Violation("cancel-quiet", "run-1", "x")])
    lines = table([passed, broken]).splitlines()
    head = lines.index(next(line for line in lines if line.startswith("| workflow scenario")))
    assert lines[head].count("|") == lines[head + 1].count("|") == 16
    assert lines[head + 2] == (
        "| workflow_advance_kill | 150 | 112 | 31 | 7 | 0 | 578 | 541 (8) | 31 | 26 / 22 (1, 8)"
        " | 5 | 0 | 0 | 31 s | pass |"
    )
    assert passed.ok and not broken.ok and lines[head + 3].endswith("| 1 | 31 s | FAIL |")
    assert run_row(Outcome(scenario, tmp_path, None, error="boom")).endswith("ERROR |")


def test_error_log_lines_are_summed_per_process(tmp_path: Path) -> None:
    (tmp_path / "server.out").write_text(
        '{"level": "info", "message": "fine"}\n'
        '{"level": "error", "message": "Unclosed Pipeline client\\nclient: ..."}\n'
        '{"level": "error", "message": "Unclosed Pipeline client\\nclient: ..."}\n'
        "Traceback (most recent call last):\n"
    )
    (tmp_path / "toxiproxy.out").write_text('{"level": "error", "message": "upstream down"}\n')
    (notes,) = log_errors(tmp_path)
    assert notes.startswith("server: 3 error log line(s)")
    assert "'Unclosed Pipeline client'" in notes and "'Traceback'" in notes


@pytest.mark.slow
def test_a_scenario_runs_checks_and_leaves_no_process_behind(tmp_path: Path) -> None:
    problems = preflight()
    if problems:
        pytest.skip("; ".join(problems))
    before = set(_children())  # e.g. the session's redis-server fixture, when it runs
    outcome = run_scenario(SCENARIOS["latency"], tmp_path)
    assert outcome.ok, outcome.error or outcome.details
    assert (tmp_path / "latency" / "final.json").exists()
    assert set(_children()) - before == set()


def _children() -> list[int]:
    """Processes whose parent is this one (every child the harness starts), zombies included."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == os.getpid():
            found.append(int(entry))
    return found
