"""`just load`: locust, headless and bounded, with the gRPC users of loadtest/locustfile.py.

    python loadtest/load.py [--host ADDR] [--profile producer|worker|mixed] [--users N]
                            [--spawn-rate R] [--run-time 30s] [--csv PREFIX] [-- locust args]

Without --host it starts a fresh redis-server and `atp --role=server` on free loopback ports,
and ends both by pid afterwards. Locust prints its request statistics with latency
percentiles, and the locustfile adds tasks enqueued/acked per second.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

PROFILES = {
    "producer": ["ProducerUser"],
    "worker": ["WorkerUser"],
    "mixed": ["ProducerUser", "WorkerUser"],
}
GRACE_S = 60  # beyond --run-time before locust is ended by force


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
def target(host: str) -> Iterator[str]:
    if host:
        yield host
        return
    from atp_driver import appliance
    from harness import redis_server

    with redis_server() as redis, appliance(redis, 1) as address:
        print(f"[load] started atp --role=server on {address} (redis {redis.url})", flush=True)
        yield address


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--host", default="", help="atp gRPC address; empty: start a local one")
    p.add_argument("--profile", choices=sorted(PROFILES), default="mixed")
    p.add_argument("--users", "-u", type=int, default=20)
    p.add_argument("--spawn-rate", "-r", type=float, default=10)
    p.add_argument("--run-time", "-t", default="30s")
    p.add_argument("--csv", default="", help="also write locust's CSV files with this prefix")
    args, extra = p.parse_known_args()
    limit = seconds(args.run_time)
    if not 0 < limit <= 3600:
        p.error("--run-time must be between 1 s and 1 h")
    with target(args.host) as address:
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
