"""The one-file binary end to end: `dist/atp --role=all` with the embedded Redis, an http
topic's POST arriving at a local server, a clean drain on SIGTERM, and a delayed task that
survives a restart on the same data dir. Runs the frozen binary with an empty environment."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import yaml

from appliance.proto import queue_pb2 as pb
from appliance.proto import queue_pb2_grpc as pb_grpc
from tests.executors.webhook import Recorder
from tests.redis_server import free_port
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
BINARY = ROOT / "dist" / "atp"
DRAIN_S = 10
# The build (PyInstaller, in the module fixture) takes 1-2 min alone and more on a busy machine:
# the per-test default (120 s) would cut it; the build's own limit is 600 s.
pytestmark = pytest.mark.timeout(720)


@pytest.fixture(scope="module")
def binary() -> Path:
    """Build dist/atp (`just binary`) once per run, from the working tree."""
    just = ROOT / ".venv" / "bin" / "just"
    out = subprocess.run(
        [str(just) if just.exists() else "just", "binary"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return BINARY


class Appliance:
    def __init__(self, binary: Path, data_dir: Path, config: Path) -> None:
        self.grpc = f"127.0.0.1:{free_port()}"
        self.http = f"127.0.0.1:{free_port()}"
        self.log_path = data_dir.parent / f"atp-{time.monotonic_ns()}.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        args = [
            str(binary),
            "--role=all",
            "--workers=1",
            f"--data-dir={data_dir}",
            f"--config={config}",
            f"--grpc-addr={self.grpc}",
            f"--http-addr={self.http}",
            f"--drain-timeout-ms={DRAIN_S * 1000}",
        ]
        self.proc = subprocess.Popen(
            args, env={}, stdout=self.log, stderr=self.log, cwd=data_dir.parent
        )
        self.started = time.monotonic()

    def ready(self, timeout: float = 60) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://{self.http}/readyz", timeout=2) as reply:
                    if reply.status == 200:
                        return time.monotonic() - self.started
            except OSError:
                pass
            assert self.proc.poll() is None, self.output()
            time.sleep(0.1)
        raise AssertionError(f"not ready in {timeout}s: {self.output()[-3000:]}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> tuple[int, float]:
        start = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(DRAIN_S * 2 + 10)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)
            self.log.close()
        return code, time.monotonic() - start


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Path, Path, Recorder]]:
    with Recorder() as hook:
        config = tmp_path / "atp.yaml"
        config.write_text(
            yaml.safe_dump({"topics": {"hooks": {"executor": "http", "url": hook.url + "/ok"}}})
        )
        data = tmp_path / "data"
        data.mkdir()
        yield data, config, hook


def test_binary_runs_all_roles_and_keeps_tasks_across_a_restart(binary: Path, setup) -> None:  # type: ignore[no-untyped-def]
    data, config, hook = setup
    first = Appliance(binary, data, config)
    try:
        print(f"cold start to ready: {first.ready():.2f} s")
        with grpc.insecure_channel(first.grpc) as channel:
            stub = pb_grpc.DelayQueueServiceStub(channel)
            stub.Enqueue(pb.EnqueueRequest(topic="hooks", payload='{"n": 1}', id="now"))
            assert wait_for(
                lambda: any(r["headers"].get("X-Atp-Task-Id") == "now" for r in hook.requests)
            ), first.output()[-3000:]
            stub.Enqueue(
                pb.EnqueueRequest(topic="hooks", payload='{"n": 2}', id="later", delay_ms=4000)
            )
        health = json.loads(
            urllib.request.urlopen(f"http://{first.http}/healthz", timeout=2).read()
        )
        assert {c["role"] for c in health["children"]} >= {
            "redis",
            "server",
            "scheduler",
            "watchdog",
            "worker",
            "console",
        }
        # the console's templates and vendored htmx travel inside the binary (package data)
        page = urllib.request.urlopen(f"http://{first.http}/console/?q=hooks&sort=dead", timeout=5)
        assert 'data-topic="hooks"' in page.read().decode()
        script = urllib.request.urlopen(
            f"http://{first.http}/console/static/htmx.min.js", timeout=5
        )
        assert script.read().startswith(b"var htmx=")
        for name in ("cytoscape.min.js", "cytoscape-dagre.min.js", "uPlot.iife.min.js"):
            url = f"http://{first.http}/console/static/{name}"  # the graphs' and charts' libraries
            assert len(urllib.request.urlopen(url, timeout=5).read()) > 10_000, name
    finally:
        code, took = first.stop()
    assert code == 0, first.output()[-3000:]
    assert took < DRAIN_S
    assert not any(r["headers"].get("X-Atp-Task-Id") == "later" for r in hook.requests)

    second = Appliance(binary, data, config)
    try:
        second.ready()
        assert wait_for(
            lambda: any(r["headers"].get("X-Atp-Task-Id") == "later" for r in hook.requests)
        ), second.output()[-3000:]
    finally:
        code, _ = second.stop()
    assert code == 0


def test_binary_runs_with_an_empty_environment(binary: Path) -> None:
    out = subprocess.run(
        [str(binary), "--role=bogus"], env={}, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 78 and "role" in out.stderr
    assert os.access(binary, os.X_OK)


def test_binary_children_die_with_a_sigkilled_supervisor(binary: Path, setup) -> None:  # type: ignore[no-untyped-def]
    """The one-file binary's supervisor (the Python process under PyInstaller's bootloader, as
    the data dir lock records it) SIGKILLed: every child is gone within 1 s; a restart works."""
    data, config, _ = setup
    first = Appliance(binary, data, config)
    try:
        first.ready()
        health = json.loads(
            urllib.request.urlopen(f"http://{first.http}/healthz", timeout=2).read()
        )
        pids = [int(c["pid"]) for c in health["children"]]
        supervisor = json.loads((data / "redis" / "atp.lock").read_text())["supervisor"]
        os.kill(supervisor, signal.SIGKILL)
        assert wait_for(lambda: not any(_running(p) for p in pids), 1.0, every=0.01), [
            p for p in pids if _running(p)
        ]
    finally:
        first.stop()
    second = Appliance(binary, data, config)
    try:
        second.ready()
    finally:
        code, _ = second.stop()
    assert code == 0, second.output()[-3000:]


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"
