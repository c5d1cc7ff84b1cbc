"""Celery's, arq's and BullMQ's side of `just bench`: one workload (w1, w2 or w4) against a fresh
redis-server, with each peer's own producer API and one worker command, printing one JSON
object. Run by the bench venv's Python (.bench/venv), never the project's:

    .bench/venv/bin/python loadtest/peers/py_peers.py celery|arq|bullmq w1|w2|w4

Worker commands (defaults, bar Celery's cluster chatter switched off):
  celery -A celery_app worker --without-gossip --without-mingle --without-heartbeat
  arq arq_app.WorkerSettings
  node bullmq_worker.cjs            (a Worker with concurrency 10)
Imports only the peer's package and loadtest/harness.py.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from harness import (  # noqa: E402
    Proc,
    RedisServer,
    drain_result,
    due_times,
    lateness,
    now_ms,
    processing_rate,
    read_records,
    redis_server,
    used_memory,
    wait_for_records,
)

W1_TASKS, W1_DRAIN_LIMIT_S = 20_000, 40.0
W2_TASKS, W2_SPREAD_MS, W2_LEAD_MS, W2_GRACE_MS = 2_000, 10_000, 1_500, 3_000
W4_TASKS, W4_PAYLOAD = 100_000, 100
FAR_FUTURE_S = 2 * 3600
BOOT_S = 4.0  # a peer's worker is up and idle after this


def at(due_ms: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(due_ms / 1000, tz=dt.UTC)


class Peer:
    name = ""

    def __init__(self, redis: RedisServer) -> None:
        self.redis = redis

    def worker_argv(self) -> list[str]:
        raise NotImplementedError

    def enqueue(self, count: int, payload: str = "", delay_s: float = 0.0) -> None:
        raise NotImplementedError

    def enqueue_at(self, due: Sequence[float]) -> None:
        raise NotImplementedError

    @contextmanager
    def worker(self, records: Path) -> Iterator[Proc]:
        env = {**os.environ, "BENCH_REDIS_URL": self.redis.url, "BENCH_RECORDS": str(records)}
        proc = Proc(self.worker_argv(), env=env, cwd=str(HERE), log=records.with_suffix(".log"))
        try:
            yield proc
        finally:
            proc.stop(10)


class CeleryPeer(Peer):
    name = "celery"

    def __init__(self, redis: RedisServer) -> None:
        super().__init__(redis)
        os.environ["BENCH_REDIS_URL"] = redis.url
        import celery_app

        self.task = celery_app.noop_task

    def worker_argv(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "celery_app",
            "worker",
            "--loglevel=WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]

    def enqueue(self, count: int, payload: str = "", delay_s: float = 0.0) -> None:
        countdown = delay_s or None
        for _ in range(count):
            self.task.apply_async(args=(0.0, payload), countdown=countdown)

    def enqueue_at(self, due: Sequence[float]) -> None:
        for d in due:
            self.task.apply_async(args=(d, ""), eta=at(d))


class ArqPeer(Peer):
    name = "arq"
    inflight = 50  # enqueue_job calls awaited together (arq has no bulk enqueue)

    def worker_argv(self) -> list[str]:
        return [str(Path(sys.executable).with_name("arq")), "arq_app.WorkerSettings"]

    async def _send(self, jobs: Sequence[tuple[float, str, dt.datetime | None, float]]) -> None:
        from arq import create_pool
        from arq.connections import RedisSettings

        pool = await create_pool(RedisSettings.from_dsn(self.redis.url))
        try:
            for i in range(0, len(jobs), self.inflight):
                await asyncio.gather(
                    *(
                        pool.enqueue_job(
                            "noop",
                            due,
                            payload,
                            _defer_until=when,
                            _defer_by=dt.timedelta(seconds=delay) if delay else None,
                        )
                        for due, payload, when, delay in jobs[i : i + self.inflight]
                    )
                )
        finally:
            await pool.aclose()

    def enqueue(self, count: int, payload: str = "", delay_s: float = 0.0) -> None:
        asyncio.run(self._send([(0.0, payload, None, delay_s)] * count))

    def enqueue_at(self, due: Sequence[float]) -> None:
        asyncio.run(self._send([(d, "", at(d), 0.0) for d in due]))


PEERS: dict[str, type[Peer]] = {"celery": CeleryPeer, "arq": ArqPeer}


def w1(peer: Peer, tmp: Path) -> dict[str, Any]:
    start = time.perf_counter()
    peer.enqueue(W1_TASKS)
    rate_in = W1_TASKS / (time.perf_counter() - start)
    records = tmp / "w1.rec"
    with peer.worker(records):
        done = wait_for_records(records, W1_TASKS, W1_DRAIN_LIMIT_S + BOOT_S)
    return drain_result(rate_in, records, done)


def w2(peer: Peer, tmp: Path) -> dict[str, Any]:
    records = tmp / "w2.rec"
    with peer.worker(records):
        time.sleep(BOOT_S)
        due = due_times(W2_TASKS, now_ms() + W2_LEAD_MS, W2_SPREAD_MS)
        peer.enqueue_at(due)
        wait_for_records(records, W2_TASKS, max((max(due) + W2_GRACE_MS - now_ms()) / 1000, 0.1))
        time.sleep(0.2)
    return lateness(read_records(records), due)


def w4(peer: Peer, tmp: Path) -> dict[str, Any]:
    peer.enqueue(1, "x", FAR_FUTURE_S)  # the queue's own keys exist before
    time.sleep(0.5)
    before = used_memory(peer.redis.port)
    peer.enqueue(W4_TASKS, "p" * W4_PAYLOAD, FAR_FUTURE_S)
    time.sleep(0.5)
    per_task = (used_memory(peer.redis.port) - before) / W4_TASKS
    return {"bytes_per_task": per_task, "beyond_payload": per_task - W4_PAYLOAD}


WORKLOADS = {"w1": w1, "w2": w2, "w4": w4}
NODE_LIMIT_S = 300.0


def bullmq(workload: str, redis: RedisServer, tmp: Path) -> dict[str, Any]:
    """BullMQ's workloads run in Node (bullmq_driver.cjs, its worker bullmq_worker.cjs); the
    statistics are computed here, by the same code as for every other system."""
    import subprocess

    node_dir = Path(os.environ.get("BENCH_NODE_DIR", HERE.parents[1] / ".bench" / "node"))
    env = {
        **os.environ,
        "NODE_PATH": str(node_dir / "node_modules"),
        "BENCH_REDIS_PORT": str(redis.port),
        "BENCH_TMP": str(tmp),
    }
    out = subprocess.run(
        ["node", str(HERE / "bullmq_driver.cjs"), workload],
        env=env,
        capture_output=True,
        text=True,
        timeout=NODE_LIMIT_S,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"bullmq_driver.cjs {workload}: {out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    if workload == "w1":
        recs = read_records(result.pop("records"))
        result.update(process_per_s=processing_rate(recs), processed=len(recs))
    elif workload == "w2":
        result = lateness(read_records(result["records"]), [float(d) for d in result["due"]])
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("peer", choices=[*sorted(PEERS), "bullmq"])
    p.add_argument("workload", choices=sorted(WORKLOADS))
    p.add_argument("--show-logs", action="store_true")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="atp-bench-") as tmp, redis_server() as redis:
        if args.peer == "bullmq":
            result = bullmq(args.workload, redis, Path(tmp))
        else:
            result = WORKLOADS[args.workload](PEERS[args.peer](redis), Path(tmp))
        if args.show_logs:
            for log in Path(tmp).glob("*.log"):
                sys.stderr.write(f"--- {log.name}\n{log.read_text()[-3000:]}\n")
    clean = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in result.items()}
    print(json.dumps(clean))


if __name__ == "__main__":
    main()
