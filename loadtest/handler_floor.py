"""The floor of W1's fair setting in Python: the INCR handler alone, no queue. `--concurrency`
threads (as the SDK Worker runs sync handlers) each take the next number under a lock and run
loadtest/atp_worker.py's incr handler (a start record, one Redis INCR) until `--tasks` ran;
prints the rate and the CPU per task of this process and of the Redis, as one JSON object.

    python loadtest/handler_floor.py --redis-url URL --redis-pid PID [--concurrency N]

No atp process takes part: what the Worker adds (the stream, the hand-off to the threads, the
settles) and what the server and claim/ack scripts add come on top of these figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from atp_worker import incr_handler
from harness import Recorder, cpu_seconds

from appliance.model import Task


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--redis-url", required=True)
    p.add_argument("--redis-pid", type=int, required=True)
    p.add_argument("--concurrency", type=int, default=10)
    p.add_argument("--tasks", type=int, default=30_000)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="atp-floor-") as tmp:
        recorder = Recorder(Path(tmp) / "floor.rec")
        handler = incr_handler(args, recorder)
        task = Task("floor", "floor", "", int(time.time() * 1000), 0, 0)
        left, lock = [args.tasks], threading.Lock()

        def loop() -> None:
            while True:
                with lock:
                    if left[0] <= 0:
                        return
                    left[0] -= 1
                handler(task)

        threads = [threading.Thread(target=loop) for _ in range(args.concurrency)]
        own, redis, start = (
            cpu_seconds(os.getpid()),
            cpu_seconds(args.redis_pid),
            time.perf_counter(),
        )
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - start
        own, redis = cpu_seconds(os.getpid()) - own, cpu_seconds(args.redis_pid) - redis
        recorder.close()
    print(
        json.dumps(
            {
                "rate_per_s": args.tasks / seconds,
                "concurrency": args.concurrency,
                "cpu_us_per_task": {
                    "handler": own / args.tasks * 1e6,
                    "redis": redis / args.tasks * 1e6,
                },
            }
        )
    )


if __name__ == "__main__":
    main()
