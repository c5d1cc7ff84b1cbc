"""The container image built from the Dockerfile (`just image`: buildah, a debootstrapped
Debian base, no Docker engine) and run as `docker run IMAGE` would run it: its own entrypoint,
cmd, user and volume, with only the addresses moved to free loopback ports (buildah's chroot
isolation shares the host's network). `atp --role=all` runs as the image's unprivileged user
with the embedded Redis writing to the volume; from the host, /readyz answers and a delayed
task enqueued over gRPC reaches an http endpoint; the HEALTHCHECK command passes in the
container (and fails once atp is gone); SIGTERM drains with exit 0. Slow (`just image-test`)."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import yaml

from appliance.proto import queue_pb2 as pb
from appliance.proto import queue_pb2_grpc as pb_grpc
from tests.executors.webhook import Recorder
from tests.image.buildah import Container, ImageConfig
from tests.waiting import wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(1800),  # the build: minutes on a busy 2-core machine
    pytest.mark.skipif(shutil.which("buildah") is None, reason="buildah is not installed"),
]

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "atp:latest"
DELAY_MS = 3000
DRAIN_S = 10


@pytest.fixture(scope="module")
def image() -> ImageConfig:
    """`just image` once per run (the base image too, when missing); prints how long it took."""
    just = ROOT / ".venv" / "bin" / "just"
    started = time.monotonic()
    out = subprocess.run(
        [str(just) if just.exists() else "just", "image", IMAGE],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    print(f"\njust image: {time.monotonic() - started:.0f} s")
    return ImageConfig.of(IMAGE)


@dataclass
class Run:
    """One `docker run -e ... -v VOLUME:DATA_DIR -v ETC:/etc/atp/test IMAGE`, by parts."""

    box: Container
    env: dict[str, str]
    volume: Path  # the host side of the image's data volume
    etc: Path  # the host side of /etc/atp/test (the config file)
    log: Path  # what the container prints


@pytest.fixture
def run(image: ImageConfig) -> Iterator[Run]:
    env = {
        "ATP_GRPC_ADDR": f"127.0.0.1:{_port()}",
        "ATP_HTTP_ADDR": f"127.0.0.1:{_port()}",
        "ATP_CONFIG": "/etc/atp/test/atp.yaml",
        "ATP_DRAIN_TIMEOUT_MS": str(DRAIN_S * 1000),
    }
    # Not under pytest's tmp_path: a concurrent pytest run prunes old base temp dirs, and the
    # mounts would point at deleted directories.
    top = Path(tempfile.mkdtemp(prefix="atp-image-"))
    volume, etc = top / "volume", top / "etc"
    volume.mkdir()
    etc.mkdir()
    uid = int(image.user.partition(":")[0])
    os.chown(volume, uid, uid)  # like a fresh named volume: owned by the image's user
    box = Container(IMAGE, env, {volume: image.env["ATP_DATA_DIR"], etc: "/etc/atp/test"})
    try:
        yield Run(box, env, volume, etc, top / "container.log")
    finally:
        box.remove()
        shutil.rmtree(top, ignore_errors=True)


def test_the_image_declares_an_unprivileged_user_a_data_volume_and_a_healthcheck(
    image: ImageConfig,
) -> None:
    assert image.user not in {"", "0", "root"}
    assert image.env["ATP_DATA_DIR"] in image.volumes
    assert image.entrypoint + image.cmd == ["atp", "--role=all"]
    assert image.healthcheck[:1] == ["CMD"] and image.healthcheck_argv() == ["atp", "healthcheck"]


def test_docker_run_role_all_serves_a_delayed_task_passes_its_healthcheck_and_drains(
    image: ImageConfig, run: Run
) -> None:
    uid = int(image.user.partition(":")[0])
    with Recorder() as hook:
        (run.etc / "atp.yaml").write_text(
            yaml.safe_dump({"topics": {"hooks": {"executor": "http", "url": hook.url + "/ok"}}})
        )
        log_path = run.log
        with open(log_path, "wb") as log:
            started = time.monotonic()
            proc = run.box.start(image.entrypoint + image.cmd, log)
            try:
                ready = _ready(run.env["ATP_HTTP_ADDR"], proc, log_path)
                print(f"container start to /readyz: {ready - started:.1f} s")
                _check_processes(run, uid, proc)
                _check_delayed_task(run.env["ATP_GRPC_ADDR"], hook, log_path)
                check = run.box.run(image.healthcheck_argv())
                assert check.returncode == 0, check.stdout + check.stderr
                assert run.env["ATP_HTTP_ADDR"] in check.stdout  # it asked this container's atp
                lock = json.loads((run.volume / "redis" / "atp.lock").read_text())
                stop = time.monotonic()
                os.kill(lock["supervisor"], signal.SIGTERM)  # what `docker stop` sends
                code = proc.wait(DRAIN_S * 2 + 10)
            finally:
                if proc.poll() is None:
                    run.box.kill(proc)
    output = log_path.read_text(errors="replace")
    assert code == 0, output[-3000:]
    assert "supervisor exits with 0" in output
    print(f"SIGTERM to exit: {time.monotonic() - stop:.1f} s")
    assert (run.volume / "redis" / "appendonlydir").is_dir()  # the AOF outlives the container
    assert run.box.run(image.healthcheck_argv()).returncode != 0  # and the check sees it gone


def _ready(http_addr: str, proc: subprocess.Popen[bytes], log_path: Path) -> float:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{http_addr}/readyz", timeout=2) as reply:
                if reply.status == 200:
                    return time.monotonic()
        except OSError:
            pass
        assert proc.poll() is None, log_path.read_text(errors="replace")[-3000:]
        time.sleep(0.2)
    raise AssertionError(f"no /readyz in 90 s: {log_path.read_text(errors='replace')[-3000:]}")


def _check_processes(run: Run, uid: int, proc: subprocess.Popen[bytes]) -> None:
    """The atp that answers is this container's; every process of it runs as the image's user;
    Redis keeps its data on the volume."""
    with urllib.request.urlopen(f"http://{run.env['ATP_HTTP_ADDR']}/healthz", timeout=5) as reply:
        children = json.loads(reply.read())["children"]
    assert {c["role"] for c in children} >= {"redis", "server", "scheduler", "watchdog", "worker"}
    ours = set(run.box.processes(proc))
    lock_path = run.volume / "redis" / "atp.lock"
    assert lock_path.exists(), run.log.read_text(errors="replace")[-3000:]
    supervisor = json.loads(lock_path.read_text())["supervisor"]
    for pid in [supervisor, *(int(c["pid"]) for c in children)]:
        assert pid in ours, f"pid {pid} is not in this container: {sorted(ours)}"
        assert _uid(pid) == uid, (pid, Path(f"/proc/{pid}/cmdline").read_bytes())
    redis_pid = next(int(c["pid"]) for c in children if c["role"] == "redis")
    assert "/var/lib/atp/redis/redis.sock" in Path(f"/proc/{redis_pid}/cmdline").read_text()
    assert (run.volume / "redis" / "appendonlydir").is_dir()


def _check_delayed_task(grpc_addr: str, hook: Recorder, log_path: Path) -> None:
    with grpc.insecure_channel(grpc_addr) as channel:
        stub = pb_grpc.DelayQueueServiceStub(channel)
        sent = time.monotonic()
        reply = stub.Enqueue(
            pb.EnqueueRequest(topic="hooks", payload='{"n": 1}', id="later", delay_ms=DELAY_MS),
            timeout=10,
        )
        assert reply.success, reply.error_message
        assert wait_for(lambda: hook.requests, timeout=DELAY_MS / 1000 + 20), log_path.read_text(
            errors="replace"
        )[-3000:]
        took = time.monotonic() - sent
        assert took >= DELAY_MS / 1000 - 0.1, took
        assert hook.requests[0]["headers"].get("X-Atp-Task-Id") == "later"
        assert wait_for(
            lambda: stub.GetTask(pb.GetTaskRequest(id="later", topic="hooks")).state == pb.SUCCEEDED
        )
    print(f"delayed task ({DELAY_MS} ms) delivered after {took:.2f} s")


def _port() -> int:
    """A free loopback port below the ephemeral range (32768+): the container binds it seconds
    after it is picked, and on a busy machine an outgoing connection may take an ephemeral one."""
    while True:
        port = random.randrange(20000, 32000)
        with socket.socket() as s, contextlib.suppress(OSError):
            s.bind(("127.0.0.1", port))
            return port


def _uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for pid {pid}")
