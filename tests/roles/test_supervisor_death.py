"""A SIGKILLed supervisor takes its children with it (the embedded Redis included) within 1 s;
a start on a data dir whose Redis or children still run is refused naming the pid; a restart
after the SIGKILL comes up on the same data with every acknowledged task."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis

from appliance.api._proto import queue_pb2 as pb
from appliance.api._proto import queue_pb2_grpc as pb_grpc
from tests.redis_server import free_port
from tests.roles.supervisor_harness import Supervisor, pid_alive
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
ROLES = ("server", "scheduler", "watchdog", "worker", "console")
ATP_CHILDREN = ("server-1", "scheduler-1", "watchdog-1", "worker-1", "console-1")


@pytest.fixture
def supervisors() -> Iterator[list[Supervisor]]:
    started: list[Supervisor] = []
    yield started
    for sup in started:
        sup.cleanup()


@pytest.fixture
def start_all(tmp_path: Path, supervisors: list[Supervisor]) -> Any:
    """`--role=all` with the embedded Redis in tmp_path/data and stand-ins that would outlive
    their parent (`stay`) unless its death signal ends them."""

    def start(name: str = "supervisor", behaviour: str = "stay") -> Supervisor:
        sup = Supervisor(
            tmp_path,
            ["all"],
            dict.fromkeys(ROLES, behaviour),
            settings={"workers": 1, "data_dir": str(tmp_path / "data")},
            name=name,
        )
        supervisors.append(sup)
        return sup

    return start


def errors(sup: Supervisor) -> list[str]:
    return sup.messages("error")


def test_every_child_and_the_redis_exit_within_1s_of_a_sigkilled_supervisor(
    start_all: Any, tmp_path: Path
) -> None:
    sup = start_all()
    sup.wait_ready(*ATP_CHILDREN)
    pids = {name: c["pid"] for name, c in sup.children().items()}
    assert set(pids) == {"redis", *ATP_CHILDREN}
    url = f"unix://{tmp_path / 'data' / 'redis' / 'redis.sock'}?db=0"
    client = redis.Redis.from_url(url)
    client.set("acknowledged", "before the kill")
    client.close()

    sup.proc.send_signal(signal.SIGKILL)
    sup.proc.wait(5)
    killed = time.monotonic()
    assert wait_for(lambda: not any(pid_alive(p) for p in pids.values()), 1.0, every=0.01), {
        n: p for n, p in pids.items() if pid_alive(p)
    }
    assert time.monotonic() - killed < 1.0

    again = start_all("second-run")  # same data dir: not refused, and the data is there
    again.wait_ready(*ATP_CHILDREN)
    client = redis.Redis.from_url(url)
    try:
        assert client.get("acknowledged") == b"before the kill"
    finally:
        client.close()
    assert again.terminate() == 0


def test_a_second_start_is_refused_in_one_line_naming_the_running_supervisor(
    start_all: Any,
) -> None:
    first = start_all(behaviour="sleep")
    first.wait_ready(*ATP_CHILDREN)
    second = start_all("second", behaviour="sleep")
    assert second.wait() == 78
    (line,) = errors(second)
    assert "in use by another atp" in line and f"supervisor pid {first.proc.pid}" in line, line
    assert f"redis pid {first.children()['redis']['pid']}" in line
    assert first.get("/readyz")[0] == 200
    assert first.terminate() == 0


HOLDER = """
import fcntl, json, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, json.dumps({"supervisor": int(sys.argv[2]), "children": {"redis": os.getpid()}})
         .encode())
print("locked", flush=True)
time.sleep(60)
"""


def test_a_start_is_refused_naming_the_pid_of_a_child_that_outlived_its_supervisor(
    start_all: Any, tmp_path: Path
) -> None:
    """A child that inherited the lock from a supervisor now gone (simulated: a process holding
    the lock, recorded as that supervisor's Redis) keeps the data dir taken, by its pid."""
    lock = tmp_path / "data" / "redis" / "atp.lock"
    lock.parent.mkdir(parents=True)
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(lock), gone.stdout.strip()],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        sup = start_all()
        assert sup.wait() == 78
        (line,) = errors(sup)
        assert f"redis pid {holder.pid} still running" in line, line
        assert "supervisor pid" not in line  # that one is gone
        assert not list(sup.state_dir.iterdir())  # nothing was started
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
    again = start_all("after")
    again.wait_ready(*ATP_CHILDREN)
    assert again.terminate() == 0


def test_a_start_is_refused_while_some_redis_serves_the_data_dir_socket(
    start_all: Any, tmp_path: Path
) -> None:
    """A redis-server left on the data dir's socket without the lock (started by hand, or by an
    older atp) is found by its socket and named by the pid it reports."""
    directory = tmp_path / "data" / "redis"
    directory.mkdir(parents=True)
    sock = directory / "redis.sock"
    stray = subprocess.Popen(
        [
            "redis-server",
            "--port",
            "0",
            "--unixsocket",
            str(sock),
            "--save",
            "",
            "--dir",
            str(directory),
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        assert wait_for(sock.exists, 10)
        sup = start_all()
        assert sup.wait() == 78
        (line,) = errors(sup)
        assert f"redis-server (pid {stray.pid})" in line and str(sock) in line, line
    finally:
        stray.kill()
        stray.wait()


def test_the_lock_file_names_every_child_while_they_run(start_all: Any, tmp_path: Path) -> None:
    sup = start_all(behaviour="sleep")
    sup.wait_ready(*ATP_CHILDREN)
    lock = tmp_path / "data" / "redis" / "atp.lock"
    pids = {name: c["pid"] for name, c in sup.children().items()}
    assert wait_for(lambda: json.loads(lock.read_text())["children"] == pids, 3)
    assert json.loads(lock.read_text())["supervisor"] == sup.proc.pid
    fd = os.open(lock, os.O_RDWR)
    try:
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)
    assert sup.terminate() == 0


def test_real_appliance_sigkilled_leaves_no_process_and_restarts_with_every_task(
    tmp_path: Path,
) -> None:
    """`atp --role=all --data-dir D`: SIGKILL the supervisor, every child is gone within 1 s,
    a restart on D serves every task that was acknowledged before the kill."""
    grpc_addr, http_addr = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    argv = [
        sys.executable, "-m", "appliance", "--role=all", "--workers=1",
        f"--data-dir={tmp_path / 'data'}", f"--grpc-addr={grpc_addr}",
        f"--http-addr={http_addr}",
    ]  # fmt: skip
    log = open(tmp_path / "atp.log", "ab")  # noqa: SIM115 - closed below
    started: list[subprocess.Popen[bytes]] = []
    pids: list[int] = []

    def start() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=log)
        started.append(proc)
        assert wait_for(lambda: _ready(http_addr), 60), (tmp_path / "atp.log").read_text()
        return proc

    try:
        first = start()
        pids += _child_pids(http_addr)
        assert len(pids) == 6  # redis, server, scheduler, watchdog, worker, console
        with grpc.insecure_channel(grpc_addr) as channel:
            stub = pb_grpc.DelayQueueServiceStub(channel)
            for i in range(50):
                stub.Enqueue(pb.EnqueueRequest(topic="kept", payload=str(i), id=f"k{i}"))
        first.send_signal(signal.SIGKILL)
        first.wait(5)
        assert wait_for(lambda: not any(pid_alive(p) for p in pids), 1.0, every=0.01), [
            p for p in pids if pid_alive(p)
        ]
        second = start()
        pids += _child_pids(http_addr)
        with grpc.insecure_channel(grpc_addr) as channel:
            stub = pb_grpc.DelayQueueServiceStub(channel)
            states = [stub.GetTask(pb.GetTaskRequest(id=f"k{i}")).state for i in range(50)]
        assert states == [pb.PENDING] * 50
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0
    finally:
        for proc in started:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
        for pid in pids:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
        log.close()


def _ready(http_addr: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://{http_addr}/readyz", timeout=2) as reply:
            return reply.status == 200
    except OSError:
        return False


def _child_pids(http_addr: str) -> list[int]:
    import urllib.request

    with urllib.request.urlopen(f"http://{http_addr}/healthz", timeout=2) as reply:
        return [int(c["pid"]) for c in json.loads(reply.read())["children"]]


WATCHER = """
import sys, time
from appliance.supervisor import lifeline
assert lifeline.watch_parent() is not None
print("watching", flush=True)
time.sleep(60)
"""


def test_a_child_watches_the_supervisor_pid_even_when_it_is_not_its_parent(tmp_path: Path) -> None:
    """With the one-file binary a bootloader sits between the supervisor and the role: the role
    watches ATP_SUPERVISOR_PID and dies within 1 s of it, whoever its parent is."""
    supervisor = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    env = {**os.environ, "ATP_SUPERVISOR_PID": str(supervisor.pid)}
    child = subprocess.Popen(
        [sys.executable, "-c", WATCHER], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "watching\n"
        supervisor.kill()
        supervisor.wait()
        assert child.wait(1.0) == -signal.SIGKILL
    finally:
        for proc in (supervisor, child):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if child.stdout is not None:
            child.stdout.close()
