"""The supervisor's pure parts: the state table, backoff and exit decisions, role expansion, and
the import rule (appliance/supervisor imports neither redis nor grpc, directly or not)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.config import Settings
from appliance.supervisor.arbiter import expand_roles, self_command
from appliance.supervisor.process import ChildSpec, Process, RestartPolicy
from appliance.supervisor.states import (
    HALTED_STATES,
    LIVE_STATES,
    SIGNALLABLE_STATES,
    TRANSITIONS,
    WANTED_UP_STATES,
    InvalidTransition,
    ProcessState,
    change_state,
)

S = ProcessState
SUPERVISOR = Path(__file__).resolve().parents[2] / "appliance" / "supervisor"
POLICY = RestartPolicy(start_secs=1.0, backoff_base_s=0.5, backoff_cap_s=3.0, max_fast_failures=3)


def a_process() -> Process:
    return Process(ChildSpec("worker-1", "worker", ("true",)), POLICY)


def started(at: float = 0.0) -> Process:
    """A process moved to STARTING by hand: the exit decisions need no real child."""
    p = a_process()
    change_state(p, S.STARTING)
    p.started_at = at
    return p


# -- the state table -----------------------------------------------------------------------------


def test_every_state_has_a_row_and_every_target_is_a_state() -> None:
    assert set(TRANSITIONS) == set(ProcessState)
    assert all(targets <= set(ProcessState) for targets in TRANSITIONS.values())


def test_every_state_but_stopped_is_reachable_and_only_fatal_is_terminal() -> None:
    reachable = set().union(*TRANSITIONS.values())
    assert reachable == set(ProcessState)  # STOPPED too: after a stop
    assert [s for s, targets in TRANSITIONS.items() if not targets] == [S.FATAL]


def test_change_state_refuses_a_move_not_in_the_table() -> None:
    p = a_process()
    with pytest.raises(InvalidTransition, match="STOPPED -> RUNNING"):
        change_state(p, S.RUNNING)
    assert p.state is S.STOPPED
    change_state(p, S.STARTING)
    assert p.state is S.STARTING


def test_named_groups() -> None:
    assert {S.STARTING, S.RUNNING, S.STOPPING} == LIVE_STATES
    assert SIGNALLABLE_STATES < LIVE_STATES
    assert WANTED_UP_STATES.isdisjoint(HALTED_STATES)
    assert HALTED_STATES.isdisjoint(LIVE_STATES)
    assert S.EXITED not in LIVE_STATES | WANTED_UP_STATES | HALTED_STATES  # transient only
    assert ProcessState.RUNNING == "RUNNING"  # a str enum: JSON as-is


# -- backoff and exit decisions ------------------------------------------------------------------


def test_backoff_doubles_per_fast_failure_up_to_the_cap() -> None:
    assert [POLICY.delay(n) for n in range(6)] == [0.5, 0.5, 1.0, 2.0, 3.0, 3.0]


def test_fast_failures_back_off_then_go_fatal_with_the_last_exit_code() -> None:
    p = started()
    p.on_exit(1, now=0.1)
    assert (p.state, p.fast_failures, p.restart_at) == (S.BACKOFF, 1, pytest.approx(0.6))
    change_state(p, S.STARTING)
    p.started_at = 1.0
    p.on_exit(2, now=1.1)
    assert (p.state, p.restart_at) == (S.BACKOFF, pytest.approx(2.1))
    change_state(p, S.STARTING)
    p.started_at = 2.1
    p.on_exit(3, now=2.2)
    assert p.state is S.FATAL
    assert p.fatal_reason == "exited 3 times in a row within 1s of starting; last exit code 3"


def test_an_exit_after_running_resets_the_streak() -> None:
    p = started()
    p.fast_failures = 2
    p.poll(now=1.5)
    assert p.state is S.RUNNING
    p.on_exit(-9, now=60.0)
    assert (p.state, p.fast_failures, p.restart_at) == (S.BACKOFF, 0, 60.5)
    assert p.last_exit == -9


def test_exit_78_is_fatal_at_once() -> None:
    p = started()
    p.on_exit(78, now=5.0)
    assert p.state is S.FATAL
    assert p.fatal_reason == "exited with code 78 (bad config)"


def test_a_probe_holds_starting_until_it_answers() -> None:
    answers = iter([False, True])
    p = Process(ChildSpec("redis", "redis", ("redis-server",)), POLICY, lambda: next(answers))
    change_state(p, S.STARTING)
    p.poll(now=1.5)
    assert p.state is S.STARTING
    assert p.next_wakeup(now=1.5) == pytest.approx(1.55)
    p.poll(now=1.6)
    assert p.state is S.RUNNING


def test_a_command_that_cannot_run_counts_as_a_failed_start() -> None:
    p = Process(ChildSpec("worker-1", "worker", ("/nonexistent/atp",)), POLICY)
    p.spawn(now=0.0)
    assert (p.state, p.last_exit, p.pid) == (S.BACKOFF, 127, None)


# -- roles ---------------------------------------------------------------------------------------


def test_all_expands_to_every_role_with_counts() -> None:
    names = [n for n, _ in expand_roles(Settings(servers=2, workers=3), ["all"])]
    assert names == [
        "server-1",
        "server-2",
        "scheduler-1",
        "watchdog-1",
        "worker-1",
        "worker-2",
        "worker-3",
        "console-1",
    ]


def test_a_role_list_keeps_the_canonical_order_and_workers_default_to_cpus() -> None:
    chosen = expand_roles(Settings(workers=0), ["worker,server", "server"])
    assert chosen[0] == ("server-1", "server")
    assert len([r for _, r in chosen if r == "worker"]) == (os.cpu_count() or 1)


def test_an_unknown_role_is_refused() -> None:
    with pytest.raises(ValueError, match="bogus"):
        expand_roles(Settings(), ["server,bogus"])


def test_self_command_reruns_this_program() -> None:
    assert self_command() == [sys.executable, "-m", "appliance"]


# -- the import rule -----------------------------------------------------------------------------

FORBIDDEN = {"redis", "grpc", "grpc_health", "grpc_reflection", "google", "hiredis"}


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_the_supervisor_imports_neither_redis_nor_grpc() -> None:
    allowed_appliance = {"appliance.config", "appliance.errors", "appliance.keys", "appliance.logs"}
    for path in sorted(SUPERVISOR.glob("*.py")):
        for name in imported_modules(path):
            assert name.split(".")[0] not in FORBIDDEN, (path.name, name)
            if name.startswith("appliance."):
                assert name in allowed_appliance or name.startswith("appliance.supervisor"), (
                    path.name,
                    name,
                )


def test_importing_the_supervisor_loads_no_redis_or_grpc() -> None:
    code = (
        "import sys, appliance.supervisor.arbiter, appliance.supervisor.http;"
        "print(sorted({m.split('.')[0] for m in sys.modules} & set(sys.argv[1:])))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, *FORBIDDEN], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
