"""Where atp's processes spend their time: py-spy samples one `atp --role=server` while
(a) consumers drain due tasks (W1 processing: Retrieve batches + AckBatch) and
(b) EnqueueBatch calls create tasks and (c) unary Enqueue calls do, then (d) the SDK Worker's
process (W1's fair setting: concurrency 10, a sync INCR handler) and the server together while
it drains a backlog, at W1's fair concurrency 10 and 100, with the CPU per task of the worker,
the server and the Redis meanwhile, and (e) the handler alone in as many threads without a queue
(loadtest/handler_floor.py, the floor of W1's fair setting); the top costs are printed as JSON.

    python loadtest/profile.py --py-spy PATH [--seconds S]

py-spy is a standalone sampler (a binary in a wheel; `just bench` installs it into the bench
venv, never into the project). It reads the server's stacks from outside, so the server runs
unmodified. Native frames (the grpc core's C and Cython code) are not resolved: they show as
self time of the Python frame that called into them (Handle._run, Thread.run).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import atp_driver as drv
from harness import count_records, cpu_seconds, redis_server

TOP = 12
RATE_HZ = 250
PREFILL = 200_000
UNARY_PER_S = 1500  # about what 2 client processes reach here; sampling ends first if slower
FAIR_CONCURRENCY = (10, 100)  # W1's fair settings
HERE = Path(__file__).resolve().parent
BOILERPLATE = ("appliance/cli.py", "appliance/roles.py", "appliance/__main__.py", "<module>")


def summarize(raw: str, top: int = TOP) -> dict[str, Any]:
    """py-spy's raw output (collapsed stacks 'f1;f2;f3 N') -> top self and inclusive shares."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_short(f) for f in stack.split(";")]
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    if total == 0:
        return {"samples": 0, "self": [], "inclusive": []}
    entry = [
        f
        for f, _ in inclusive.most_common()
        if "appliance/" in f and not any(skip in f for skip in BOILERPLATE)
    ]
    return {
        "samples": total,
        "self": [(f, n / total) for f, n in own.most_common(top)],
        "inclusive": [(f, inclusive[f] / total) for f in entry[:top]],
        "functions": {f: round(n / total, 4) for f, n in inclusive.items() if n / total >= 0.003},
        "redis_py": sum(n for f, n in own.items() if "redis/" in f) / total,
        "asyncio": sum(n for f, n in own.items() if "asyncio/" in f or "selectors" in f) / total,
    }


def _short(frame: str) -> str:
    """'Store.enqueue (/x/appliance/store/store.py:118)' -> 'Store.enqueue
    (appliance/store/store.py)': no line number (the lines of one function add up) and no
    machine-specific directories."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    if "site-packages/" in path:
        path = path.rsplit("site-packages/", 1)[1]
    elif "/appliance/" in path:
        path = "appliance/" + path.rsplit("/appliance/", 1)[1]
    else:
        path = re.sub(r".*/lib/python3\.\d+/", "", path)
        path = re.sub(r".*/loadtest/", "loadtest/", path)
    return f"{name} ({path})"


def record(py_spy: str, pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    argv = [py_spy, "record", "--pid", str(pid), "--format", "raw", "--output", str(out)]
    argv += ["--rate", str(RATE_HZ), "--duration", str(int(seconds)), "--nonblocking"]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def profiled(
    py_spy: str, pid: int, seconds: float, tmp: Path, name: str, load: Callable[[], float]
) -> dict[str, Any]:
    """Run `load()` (bounded by `seconds` itself) while py-spy samples `pid`, then summarize."""
    out = tmp / f"{name}.txt"
    spy = record(py_spy, pid, seconds, out)
    rate = load()
    _, err = spy.communicate(timeout=seconds + 60)
    if not out.exists():
        raise RuntimeError(f"py-spy wrote nothing: {err.decode()[-500:]}")
    summary = summarize(out.read_text())
    summary["rate_per_s"] = rate
    return summary


def worker_profile(
    py_spy: str, address: str, redis: Any, seconds: float, tmp: Path, concurrency: int
) -> dict[str, dict[str, Any]]:
    """py-spy on the SDK Worker's process (loadtest/atp_worker.py: W1's fair setting, the sync
    INCR handler at `concurrency`) and, at the same time, on the server, while the worker
    drains a backlog; with the CPU each process (and the Redis) spent per task meanwhile."""
    topic = f"p3-c{concurrency}"
    drv.enqueue(address, drv.requests(topic, PREFILL))
    records = tmp / f"{topic}.rec"
    out, server_out = tmp / f"{topic}-worker.txt", tmp / f"{topic}-server.txt"
    fair = ["--handler=incr", f"--concurrency={concurrency}", f"--redis-url={redis.url}"]
    with drv.worker(address, topic, records, "sdk", *fair) as proc:
        time.sleep(1.0)  # started, connected and draining
        pids = {"worker": proc.pid, "server": drv.server_pid(address), "redis": redis.proc.pid}
        spy = record(py_spy, proc.pid, seconds, out)
        server_spy = record(py_spy, pids["server"], seconds, server_out)
        cpu, system = (
            {name: cpu_seconds(pid) for name, pid in pids.items()},
            cpu_seconds(proc.pid, True),
        )
        first, start = count_records(records), time.monotonic()
        _, err = spy.communicate(timeout=seconds + 60)
        server_spy.communicate(timeout=60)
        done = count_records(records) - first
        rate = done / (time.monotonic() - start)
        cpu = {
            name: (cpu_seconds(pid) - cpu[name]) / max(done, 1) * 1e6 for name, pid in pids.items()
        }
        system = (cpu_seconds(proc.pid, True) - system) / max(done, 1) * 1e6
    got: dict[str, dict[str, Any]] = {}
    suffix = "" if concurrency == 10 else f"_c{concurrency}"
    for name, path in (("sdk_worker", out), ("sdk_server", server_out)):
        if not path.exists():
            raise RuntimeError(f"py-spy wrote nothing: {err.decode()[-500:]}")
        got[name + suffix] = {**summarize(path.read_text()), "rate_per_s": rate}
    got["sdk_worker" + suffix].update(cpu_us_per_task=cpu, worker_system_us=system)
    return got


def handler_floor(redis: Any, concurrency: int) -> dict[str, Any]:
    """loadtest/handler_floor.py: the INCR handler alone in `concurrency` threads, no queue."""
    argv = [sys.executable, str(HERE / "handler_floor.py"), f"--redis-url={redis.url}"]
    argv += [f"--redis-pid={redis.proc.pid}", f"--concurrency={concurrency}"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=True)
    return dict(json.loads(done.stdout))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--py-spy", default="py-spy")
    p.add_argument("--seconds", type=float, default=10.0)
    args = p.parse_args()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="atp-profile-") as tmpdir:
        tmp = Path(tmpdir)
        with redis_server() as redis, drv.appliance(redis, 1, tmp / "server.log") as address:
            pid = drv.server_pid(address)

            # W1 processing: a backlog of due tasks big enough to keep the drain busy.
            drv.enqueue(address, drv.requests("p1", PREFILL))

            def process() -> float:
                got = asyncio.run(
                    drv.with_stub(
                        address, lambda s: drv.drain(s, "p1", PREFILL, limit_s=args.seconds)
                    )
                )
                return float(got["per_s"])

            def enqueue() -> float:
                rates = []
                stop = time.monotonic() + args.seconds
                while time.monotonic() < stop:
                    rates.append(drv.enqueue(address, drv.requests("p2", 20_000, "x" * 100), 4))
                return sum(rates) / len(rates)

            results["w1_processing"] = profiled(args.py_spy, pid, args.seconds, tmp, "w1", process)
            results["enqueue_batch"] = profiled(
                args.py_spy, pid, args.seconds, tmp, "enqueue", enqueue
            )
            results["enqueue_unary"] = profiled(
                args.py_spy,
                pid,
                args.seconds,
                tmp,
                "unary",
                lambda: drv.unary_rate(address, 2, int(args.seconds * UNARY_PER_S)),
            )
            for concurrency in FAIR_CONCURRENCY:
                results.update(
                    worker_profile(args.py_spy, address, redis, args.seconds, tmp, concurrency)
                )
                results[f"handler_floor_c{concurrency}"] = handler_floor(redis, concurrency)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
