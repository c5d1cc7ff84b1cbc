"""`just load`: locust, headless and bounded, with the gRPC users of loadtest/locustfile.py.

    python loadtest/load.py [--host ADDR] [--local-role all|server]
                            [--profile producer|worker|mixed] [--users N] [--spawn-rate R]
                            [--run-time 30s] [--csv PREFIX] [-- locust args]

With --host it loads that address and starts nothing. Without it, it starts a local appliance
on free loopback ports, loads it, and ends it by the pid it started:

- `--local-role all` (the default): what a user runs, `atp --role=all` (`python -m appliance`),
  i.e. the supervisor with its embedded Redis (AOF, unix socket) in a throwaway data dir and
  every role (server, scheduler, watchdog, worker). Its readiness is the supervisor's /readyz
  (Redis answers and every child is RUNNING, the server's gRPC port accepting). At the end the
  supervisor gets SIGTERM and drains its children in stages; SIGKILL to its process group
  only if it is still there after a bound. The data dir is removed afterwards.

  The built-in workers do not compete with locust's WorkerUser: `--role=all` always runs
  worker processes (`--workers 0` means one per CPU, not none), so it is started with
  `--workers 1` and no topics configured — no `--config` and no ATP_* variables passed on (a
  developer's ATP_CONFIG, ATP_TOPICS or ATP_REDIS_URL would change what is measured). A worker
  with no topics registers no handler and never calls Retrieve, so every task locust's
  producers enqueue is fetched and acked by locust's WorkerUser alone and the acked/s figure
  is the API's, not the built-in executors'. The one idle worker process costs next to
  nothing; the scheduler (no schedules) and the watchdog run as they do for a user.
- `--local-role server`: a fresh redis-server and `atp --role=server` alone (what
  `just bench` measures), both ended by pid afterwards.

Locust prints its request statistics with latency percentiles, and the locustfile adds tasks
enqueued/acked per second.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

PROFILES = {
    "producer": ["ProducerUser"],
    "worker": ["WorkerUser"],
    "mixed": ["ProducerUser", "WorkerUser"],
}
GRACE_S = 60  # beyond --run-time before locust is ended by force
READY_S = 60.0  # the local appliance answers /readyz within this, or the run fails
DRAIN = "10s"  # the local supervisor's drain timeout (it SIGKILLs children still there after)
STOP_S = 30.0  # after SIGTERM, how long the supervisor gets before SIGKILL to its group


def seconds(value: str) -> int:
    """Locust's run-time syntax: 30, 30s, 5m, 1h, 1h30m."""
    total, number = 0, ""
    units = {"s": 1, "m": 60, "h": 3600}
    for ch in value.strip():
        if ch.isdigit():
            number += ch
        elif ch in units and number:
            total, number = total + int(number) * units[ch], ""
        else:
            raise argparse.ArgumentTypeError(f"bad run time {value!r}")
    return total + (int(number) if number else 0)


@contextlib.contextmanager
def target(host: str, local_role: str = "all") -> Iterator[str]:
    if host:
        yield host
        return
    if local_role == "all":
        with role_all() as address:
            yield address
        return
    from atp_driver import appliance, server_pid
    from harness import redis_server

    with redis_server() as redis, appliance(redis, 1) as address:
        print(
            f"[load] started atp --role=server pid {server_pid(address)} on {address}"
            f" (redis-server {redis.url})",
            flush=True,
        )
        yield address


@contextlib.contextmanager
def role_all() -> Iterator[str]:
    """`atp --role=all` with the embedded Redis in a throwaway data dir, one idle worker
    process (no topics) and a clean ATP_* environment, on free loopback ports; yields its
    gRPC address once /readyz says ready, and ends it by its pid afterwards."""
    from harness import free_port

    tmp = Path(tempfile.mkdtemp(prefix="atp-load-"))
    address, http = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    argv = [
        sys.executable,
        "-m",
        "appliance",
        "--role=all",
        "--workers=1",
        f"--grpc-addr={address}",
        f"--http-addr={http}",
        f"--data-dir={tmp / 'data'}",
        f"--drain-timeout={DRAIN}",
        "--log-level=warning",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATP_")}
    log_path = tmp / "atp.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    children: dict[str, int] = {}
    try:
        children = wait_ready(http, proc, log_path)
        listed = ", ".join(f"{name} pid {pid}" for name, pid in children.items())
        print(
            f"[load] started atp --role=all pid {proc.pid} on {address} (embedded Redis in"
            f" {tmp / 'data'}; children: {listed})",
            flush=True,
        )
        yield address
    finally:
        children.update(child_pids(http))  # restarted ones too, while the supervisor answers
        code = stop(proc, children.values())
        print(f"[load] atp --role=all pid {proc.pid} ended: {code}", flush=True)
        shutil.rmtree(tmp, ignore_errors=True)


def child_pids(http: str) -> dict[str, int]:
    """The supervisor's children from its /healthz: {name: pid}; {} when it does not answer."""
    try:
        with urllib.request.urlopen(f"http://{http}/healthz", timeout=2) as reply:
            kids = json.loads(reply.read())["children"]
    except (OSError, ValueError, KeyError):
        return {}
    return {str(c["name"]): int(c["pid"]) for c in kids if c.get("pid")}


def wait_ready(http: str, proc: subprocess.Popen[bytes], log_path: Path) -> dict[str, int]:
    """Until the supervisor's /readyz answers 200; then its children's pids (/healthz).
    Raises with the log's tail when it exits or does not get ready within READY_S."""
    deadline = time.monotonic() + READY_S
    while time.monotonic() < deadline and proc.poll() is None:
        with contextlib.suppress(OSError):  # not listening yet, or 503 (not ready)
            with urllib.request.urlopen(f"http://{http}/readyz", timeout=2) as ready:
                ok = ready.status == 200
            if ok and (children := child_pids(http)):
                return children
        time.sleep(0.2)
    tail = log_path.read_text(errors="replace")[-3000:]
    state = "exited" if proc.poll() is not None else f"not ready after {READY_S:.0f} s"
    raise RuntimeError(f"atp --role=all {state}; its log ends:\n{tail}")


def stop(proc: subprocess.Popen[bytes], children: Iterable[int] = ()) -> str:
    """SIGTERM to the supervisor's pid (it drains its children in stages and reaps them), up
    to STOP_S; after that SIGKILL to it and to its children (each leads its own process
    group, by the pids the supervisor reported). How it ended, in words."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    try:
        return f"exit code {proc.wait(STOP_S)}"
    except subprocess.TimeoutExpired:
        pass
    for pgid in (proc.pid, *children):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    proc.wait(10)
    return f"SIGKILL after {STOP_S:.0f} s"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--host", default="", help="atp gRPC address; empty: start a local one")
    p.add_argument(
        "--local-role",
        choices=("all", "server"),
        default="all",
        help="without --host: atp --role=all with its embedded Redis (default), or"
        " atp --role=server with a fresh redis-server",
    )
    p.add_argument("--profile", choices=sorted(PROFILES), default="mixed")
    p.add_argument("--users", "-u", type=int, default=20)
    p.add_argument("--spawn-rate", "-r", type=float, default=10)
    p.add_argument("--run-time", "-t", default="30s")
    p.add_argument("--csv", default="", help="also write locust's CSV files with this prefix")
    args, extra = p.parse_known_args()
    limit = seconds(args.run_time)
    if not 0 < limit <= 3600:
        p.error("--run-time must be between 1 s and 1 h")
    with target(args.host, args.local_role) as address:
        argv = [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(HERE / "locustfile.py"),
            "--headless",
            "--only-summary",
            "--host",
            address,
            "--users",
            str(args.users),
            "--spawn-rate",
            str(args.spawn_rate),
            "--run-time",
            args.run_time,
            "--stop-timeout",
            "5",
            *(["--csv", args.csv] if args.csv else []),
            *[e for e in extra if e != "--"],
            *PROFILES[args.profile],
        ]
        proc = subprocess.Popen(argv, start_new_session=True)
        try:
            return proc.wait(limit + GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            print("[load] locust overran its run time and was ended", file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(main())
