"""The supervisor with real processes: restart with backoff, crash loop -> FATAL, exit 78 halts,
SIGTERM drains (SIGKILL after the deadline), /healthz and /readyz, a real `--role=server` child."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.redis_server import free_port
from tests.roles.supervisor_harness import Supervisor, pid_alive


@pytest.fixture
def supervisors(tmp_path: Path) -> Iterator[list[Supervisor]]:
    started: list[Supervisor] = []
    yield started
    for sup in started:
        sup.cleanup()


@pytest.fixture
def start(tmp_path: Path, supervisors: list[Supervisor]) -> Any:
    def start(roles: list[str], behaviours: dict[str, str], **kwargs: Any) -> Supervisor:
        sup = Supervisor(tmp_path, roles, behaviours, **kwargs)
        supervisors.append(sup)
        return sup

    return start


def spawn_times(sup: Supervisor, name: str) -> list[float]:
    return [e["t"] for e in sup.events(name) if e["event"] == "spawn"]


def test_a_crashed_child_is_restarted_with_growing_backoff(start: Any) -> None:
    sup = start(
        ["worker"],
        {"worker": "crash-then-sleep:2"},
        settings={"workers": 1},
        # start_secs: a crash counts as fast even when a loaded machine starts Python slowly
        # (at the default 1 s, a second child that took that long to crash passed for RUNNING)
        policy={"backoff_base_s": 0.3, "max_fast_failures": 4, "start_secs": 3.0},
    )
    children = sup.wait_running("worker-1")
    assert children["worker-1"]["restarts"] == 2
    assert children["worker-1"]["last_exit"] == 1
    t = spawn_times(sup, "worker-1")
    assert len(t) == 3
    first_gap, second_gap = t[1] - t[0], t[2] - t[1]
    assert first_gap >= 0.3  # the base delay ...
    assert second_gap >= 0.6  # ... doubled after the second fast failure in a row
    assert second_gap - first_gap >= 0.2
    assert any("worker-1 exited with exit code 1" in m for m in sup.messages("warning"))
    assert sup.terminate() == 0


def test_a_crash_loop_goes_fatal_and_the_supervisor_exits_1_with_the_reason(start: Any) -> None:
    sup = start(
        ["server", "worker"],
        {"server": "sleep", "worker": "crash:3"},
        settings={"workers": 1},
        # start_secs: a crash counts as fast even when a loaded machine starts Python slowly
        policy={"max_fast_failures": 3, "start_secs": 10.0},
    )
    assert sup.wait(20) == 1
    assert len(spawn_times(sup, "worker-1")) == 3  # gave up after 3 fast failures in a row
    errors = sup.messages("error")
    assert any(
        "worker-1 is FATAL" in m and "3 times in a row" in m and "exit code 3" in m for m in errors
    ), errors
    assert [e["event"] for e in sup.events("server-1")] == ["spawn", "term"]  # others stopped


def test_exit_78_halts_at_once_without_a_restart(start: Any) -> None:
    sup = start(
        ["server", "worker"], {"server": "sleep", "worker": "crash:78"}, settings={"workers": 1}
    )
    assert sup.wait(20) == 78
    assert len(spawn_times(sup, "worker-1")) == 1
    assert "worker-1 is FATAL: exited with code 78 (bad config)" in sup.messages("error")
    assert [e["event"] for e in sup.events("server-1")] == ["spawn", "term"]


def test_sigterm_drains_every_child_and_exits_0(start: Any) -> None:
    sup = start(
        ["server", "worker"], {"server": "sleep", "worker": "sleep"}, settings={"workers": 2}
    )
    children = sup.wait_running("server-1", "worker-1", "worker-2")
    assert sup.terminate() == 0
    for name, child in children.items():
        assert [e["event"] for e in sup.events(name)] == ["spawn", "term"], name
        assert not pid_alive(child["pid"])
    assert any("stopping (SIGTERM)" in m for m in sup.messages("info"))


def test_a_child_ignoring_sigterm_is_killed_at_the_drain_deadline(start: Any) -> None:
    sup = start(
        ["server", "worker"],
        {"server": "sleep", "worker": "ignore-term"},
        settings={"workers": 1, "drain_timeout_ms": 600},
    )
    children = sup.wait_running("server-1", "worker-1")
    began = time.monotonic()
    code = sup.terminate()
    took = time.monotonic() - began
    assert code == 1  # the drain was not clean
    assert 0.6 <= took < 5
    assert [e["event"] for e in sup.events("worker-1")] == ["spawn", "term-ignored"]
    assert [e["event"] for e in sup.events("server-1")] == ["spawn", "term"]
    assert not pid_alive(children["worker-1"]["pid"])
    assert any("worker-1" in m and "SIGKILL" in m for m in sup.messages("warning"))


def test_healthz_lists_every_child_and_readyz_needs_redis_and_all_running(
    start: Any, redis_url: str
) -> None:
    sup = start(
        ["server", "worker"],
        {"server": "sleep", "worker": "sleep"},
        settings={"workers": 2, "redis_url": redis_url},
    )
    sup.wait_running("server-1", "worker-1", "worker-2")
    code, body = sup.get("/healthz")
    assert code == 200
    assert body["status"] == "ok" and body["draining"] is False
    assert [(c["name"], c["role"], c["state"], c["restarts"]) for c in body["children"]] == [
        ("server-1", "server", "RUNNING", 0),
        ("worker-1", "worker", "RUNNING", 0),
        ("worker-2", "worker", "RUNNING", 0),
    ]
    assert all(isinstance(c["pid"], int) for c in body["children"])
    assert sup.get("/readyz") == (200, {"ready": True})
    assert sup.get("/nope")[0] == 404
    assert sup.terminate() == 0


def test_readyz_is_503_while_a_child_waits_to_restart(start: Any, redis_url: str) -> None:
    sup = start(
        ["server", "worker"],
        {"server": "sleep", "worker": "crash-then-sleep:1"},
        settings={"workers": 1, "redis_url": redis_url},
        policy={"backoff_base_s": 3.0},
    )
    sup.wait_until("worker-1 waits in BACKOFF", lambda: "worker-1 is BACKOFF" in _reason(sup))
    code, body = sup.get("/readyz")
    assert code == 503 and body["ready"] is False
    assert sup.terminate() == 0


def test_readyz_is_503_when_redis_does_not_answer(start: Any) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    sup = start(["server"], {"server": "sleep"}, settings={"redis_url": dead})
    sup.wait_running("server-1")
    code, body = sup.get("/readyz")
    assert code == 503
    assert "cannot reach Redis" in body["reason"]
    assert sup.terminate() == 0


def test_a_real_server_child_runs_from_self_command(start: Any, redis_url: str) -> None:
    """No stand-ins: the child is `python -m appliance --role=server <passthrough>`."""
    grpc_addr = f"127.0.0.1:{free_port()}"
    sup = start(
        ["server"],
        {},
        settings={"redis_url": redis_url, "grpc_addr": grpc_addr},
        policy={"start_secs": 1.0},
        passthrough=[f"--grpc-addr={grpc_addr}", f"--redis-url={redis_url}"],
    )
    sup.wait_until("ready", lambda: sup.get("/readyz")[0] == 200, timeout=30)
    pid = sup.children()["server-1"]["pid"]
    assert Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[1:4] == [
        b"-m",
        b"appliance",
        b"--role=server",
    ]
    assert sup.terminate(signal.SIGINT) == 0
    assert not pid_alive(pid)


def _reason(sup: Supervisor) -> str:
    return str(sup.get("/readyz")[1].get("reason", ""))
