"""Runs the real supervisor (`arbiter.run`) in a child process with stand-in role commands.

The stand-ins are tiny Python scripts (CHILD below) that sleep, crash, exit 78 or ignore
SIGTERM, and log what happened to them as JSON lines in a state dir; they exit on their own
when their parent goes away, so a failed test leaves nothing behind (except `stay`, which
outlives its parent unless the supervisor's death signal ends it; cleanup() kills it by pid).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tests.redis_server import free_port

REPO = Path(__file__).resolve().parents[2]
FAST_POLICY = {
    "start_secs": 0.3,
    "backoff_base_s": 0.1,
    "backoff_cap_s": 1.0,
    "max_fast_failures": 3,
}

LAUNCHER = """
import json, sys
from appliance import logs
from appliance.config import Settings
from appliance.supervisor import arbiter
from appliance.supervisor.process import RestartPolicy

cfg = json.loads(sys.argv[1])

def factory(role, name):
    behaviour = cfg["behaviours"].get(name) or cfg["behaviours"][role]
    return [sys.executable, cfg["child"], behaviour, name, cfg["state_dir"]]

logs.setup("debug", "supervisor")
code = arbiter.run(
    Settings(**cfg["settings"]),
    cfg["roles"],
    cfg["passthrough"],
    factory if cfg["behaviours"] else None,
    policy=RestartPolicy(**cfg["policy"]),
)
sys.exit(code)
"""

CHILD = """
import json, os, signal, sys, time
behaviour, name, state_dir = sys.argv[1:4]
path = os.path.join(state_dir, name + ".jsonl")
env = {k: v for k, v in os.environ.items() if k.startswith("ATP_")}

def record(event, **extra):
    with open(path, "a") as f:
        f.write(json.dumps({"event": event, "pid": os.getpid(), "t": time.time(), **extra}) + "\\n")

def redis_ok():
    if "ATP_REDIS_URL" not in os.environ:
        return None
    import redis
    client = redis.Redis.from_url(os.environ["ATP_REDIS_URL"], socket_timeout=1)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()

with_redis = behaviour.startswith("redis")
spawns = 1
if os.path.exists(path):
    with open(path) as f:
        spawns += sum(1 for line in f if '"spawn"' in line)
termed = []
def on_term(signum, frame):
    termed.append(signum)
signal.signal(signal.SIGTERM, on_term)
record("spawn", env=env, **({"redis_ok": redis_ok()} if with_redis else {}))
kind, _, arg = behaviour.partition(":")
if kind == "crash" or (kind == "crash-then-sleep" and spawns <= int(arg)):
    time.sleep(0.05)
    sys.exit(int(arg) if kind == "crash" else 1)
parent = os.getppid()
while os.getppid() == parent or kind == "stay":
    if termed and kind != "ignore-term":
        record("term", **({"redis_ok": redis_ok()} if with_redis else {}))
        sys.exit(0)
    if termed == [signal.SIGTERM]:
        record("term-ignored")
        termed.append(0)
    time.sleep(0.02)
"""


class Supervisor:
    """`arbiter.run(...)` in a child process; `behaviours` maps a role or child name to one of
    sleep, crash:<code>, crash-then-sleep:<n>, ignore-term, redis (sleep + check Redis), stay
    (sleep, even once its parent is gone); empty
    behaviours mean the real `python -m appliance --role=...` children."""

    def __init__(
        self,
        tmp_path: Path,
        roles: list[str],
        behaviours: Mapping[str, str],
        settings: Mapping[str, Any] | None = None,
        policy: Mapping[str, Any] | None = None,
        passthrough: list[str] | None = None,
        name: str = "supervisor",
    ) -> None:
        self.tmp_path = tmp_path
        self.behaviours = dict(behaviours)
        self.state_dir = tmp_path / "state"
        self.state_dir.mkdir(exist_ok=True)
        child = tmp_path / "child.py"
        child.write_text(CHILD)
        self.http_addr = f"127.0.0.1:{free_port()}"
        cfg = {
            "roles": roles,
            "behaviours": dict(behaviours),
            "child": str(child),
            "state_dir": str(self.state_dir),
            "settings": {"http_addr": self.http_addr, "drain_timeout_ms": 3000, **(settings or {})},
            "policy": {**FAST_POLICY, **(policy or {})},
            "passthrough": passthrough or [],
        }
        self.log_path = tmp_path / f"{name}.log"
        self.pids: set[int] = set()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", LAUNCHER, json.dumps(cfg)],
                cwd=REPO,
                stdout=log,
                stderr=log,
            )

    # -- observing -----------------------------------------------------------------------------

    def get(self, path: str) -> tuple[int, dict[str, Any]]:
        try:
            with urllib.request.urlopen(f"http://{self.http_addr}{path}", timeout=2) as reply:
                return reply.status, json.loads(reply.read())
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, json.loads(exc.read())

    def children(self) -> dict[str, dict[str, Any]]:
        """name -> child info from /healthz (and remember every pid, for cleanup)."""
        _, body = self.get("/healthz")
        out = {c["name"]: c for c in body["children"]}
        self.pids.update(c["pid"] for c in out.values() if c["pid"])
        return out

    def wait_until(self, what: str, check: Callable[[], bool], timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(OSError):
                if check():
                    return
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError(f"timed out waiting until {what}:\n{self.output()[-3000:]}")
            time.sleep(0.05)

    def wait_running(self, *names: str, timeout: float = 15.0) -> dict[str, dict[str, Any]]:
        def all_running() -> bool:
            children = self.children()
            return all(self._up(n, children.get(n, {})) for n in names)

        self.wait_until(f"{', '.join(names)} are RUNNING", all_running, timeout)
        return self.children()

    def wait_ready(self, *names: str, timeout: float = 15.0) -> None:
        """/readyz says 200 and the named stand-ins have recorded their start."""
        self.wait_until("ready", lambda: self.get("/readyz")[0] == 200, timeout)
        self.wait_running(*names, timeout=timeout)

    def _up(self, name: str, child: dict[str, Any]) -> bool:
        """RUNNING, and (a stand-in) has recorded its start, so it handles SIGTERM by now."""
        if child.get("state") != "RUNNING":
            return False
        spawned = {e["pid"] for e in self.events(name) if e["event"] == "spawn"}
        return not self.behaviours or child["pid"] in spawned

    def events(self, name: str) -> list[dict[str, Any]]:
        path = self.state_dir / f"{name}.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def messages(self, level: str | None = None) -> list[str]:
        out = []
        for line in self.output().splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict) and (level is None or record.get("level") == level):
                    out.append(str(record.get("message")))
        return out

    # -- ending --------------------------------------------------------------------------------

    def wait(self, timeout: float = 15.0) -> int:
        return self.proc.wait(timeout)

    def terminate(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        with contextlib.suppress(OSError, ValueError, KeyError):
            self.children()
        self.proc.send_signal(sig)
        return self.wait(timeout)

    def cleanup(self) -> None:
        """Stop the supervisor if a test left it running; kill what it left behind, by pid."""
        if self.proc.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.terminate(timeout=10)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        for pid in self.pids:  # orphans now: kill only those still running our test's commands
            with contextlib.suppress(OSError):
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                if str(self.tmp_path).encode() in cmdline:
                    os.kill(pid, signal.SIGKILL)


def pid_alive(pid: int) -> bool:
    """Running (a zombie waiting for init to reap it has exited: not alive)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"
