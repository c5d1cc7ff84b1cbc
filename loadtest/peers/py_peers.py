"""Celery's, arq's and BullMQ's side of `just bench`: one workload (w1, enqueue, w2, w3 or w4)
against a fresh redis-server, with each peer's own producer API and one worker command,
printing one JSON object. Run by the bench venv's Python (.bench/venv), never the project's:

    .bench/venv/bin/python loadtest/peers/py_peers.py celery|arq|bullmq w1 --concurrency 10
    .bench/venv/bin/python loadtest/peers/py_peers.py celery|arq|bullmq enqueue|w2|w3|w4
    .bench/venv/bin/python loadtest/peers/py_peers.py rq|saq w3

Worker commands (defaults, bar Celery's cluster chatter switched off; N = --concurrency):
  celery -A celery_app worker -c N --pool P --without-gossip --without-mingle --without-heartbeat
                                    (P: prefork for N <= 10, threads above; BENCH_CELERY_POOL)
  arq arq_app.WorkerSettings        (max_jobs N)
  node bullmq_worker.cjs            (a Worker with concurrency N)
  rq worker-pool -n N bench         (W3 only)
  saq saq_app.settings              (W3 only; concurrency N)
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
    COUNTER_KEY,
    W7_DRAIN_LIMIT_S,
    W7_GAP_MS,
    W7_STEPS,
    Proc,
    RedisServer,
    chain_result,
    count_records,
    crash_run,
    drain_result,
    due_times,
    lateness,
    mark,
    now_ms,
    processing_rate,
    read_records,
    redis_command,
    redis_server,
    sized,
    used_memory,
    wait_for_records,
)

W2_LEAD_MS, W2_GRACE_MS = 1_500, 3_000
W4_TASKS, W4_PAYLOAD = 100_000, 100
ENQUEUE_INFLIGHT = 100  # concurrent enqueue: calls in flight from one process
FAR_FUTURE_S = 2 * 3600
BOOT_S = 4.0  # a peer's worker is up and idle after this


def at(due_ms: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(due_ms / 1000, tz=dt.UTC)


class Peer:
    name = ""

    def __init__(self, redis: RedisServer) -> None:
        self.redis = redis

    def worker_argv(self, concurrency: int) -> list[str]:
        raise NotImplementedError

    def enqueue(self, count: int, payload: str = "", delay_s: float = 0.0, job: str = "") -> None:
        """`count` tasks due now (or in delay_s) with each peer's fastest producer call."""
        raise NotImplementedError

    def enqueue_at(self, due: Sequence[float]) -> None:
        raise NotImplementedError

    def enqueue_rates(self, short: bool) -> dict[str, Any]:
        """One at a time, batched, concurrent (100 in flight): tasks/s; None where the peer
        has no such API."""
        raise NotImplementedError

    def enqueue_numbered(self, count: int) -> None:
        """W3's sleeping tasks, numbered 0..count-1."""
        raise NotImplementedError

    def start_worker(self, records: Path, concurrency: int = 10, **env: str) -> Proc:
        env = {
            **os.environ,
            "BENCH_REDIS_URL": self.redis.url,
            "BENCH_RECORDS": str(records),
            "BENCH_CONCURRENCY": str(concurrency),
            **env,
        }
        argv = self.worker_argv(concurrency)
        return Proc(argv, env=env, cwd=str(HERE), log=records.with_suffix(".log"))

    @contextmanager
    def worker(self, records: Path, concurrency: int = 10) -> Iterator[Proc]:
        proc = self.start_worker(records, concurrency)
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

        self.app = celery_app
        self.task = celery_app.noop_task

    @staticmethod
    def pool(concurrency: int) -> str:
        """prefork (Celery's default pool) up to 10 processes; threads above: a hundred forked
        processes on 2 cores drained at less than half the threads pool's rate here."""
        return os.environ.get("BENCH_CELERY_POOL") or (
            "prefork" if concurrency <= 10 else "threads"
        )

    def worker_argv(self, concurrency: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "celery_app",
            "worker",
            f"--concurrency={concurrency}",
            f"--pool={self.pool(concurrency)}",
            "--loglevel=WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]

    def enqueue(self, count: int, payload: str = "", delay_s: float = 0.0, job: str = "") -> None:
        task = self.app.incr_task if job == "incr" else self.task
        countdown = delay_s or None
        for _ in range(count):
            task.apply_async(args=(0.0, payload), countdown=countdown)

    def enqueue_at(self, due: Sequence[float]) -> None:
        for d in due:
            self.task.apply_async(args=(d, ""), eta=at(d))

    def enqueue_rates(self, short: bool) -> dict[str, Any]:
        count = sized("seq_tasks", short)
        self.enqueue(sized("enqueue_warmup", short), "x" * 100)  # not counted
        start = time.perf_counter()
        self.enqueue(count, "x" * 100)
        seq = count / (time.perf_counter() - start)
        return {"sequential_per_s": seq, "batched_per_s": None, "concurrent_per_s": None}

    def enqueue_numbered(self, count: int) -> None:
        for n in range(count):
            self.app.sleep_task.apply_async(args=(float(n),))

    def chains(self, numbers: Sequence[int]) -> None:
        """W7: a Celery `chain` of 3 INCR steps per number, each marked with run and step."""
        from celery import chain

        for n in numbers:
            chain(*(self.app.incr_task.si(mark(n, k)) for k in range(W7_STEPS))).apply_async()


class ArqPeer(Peer):
    name = "arq"
    inflight = 50  # enqueue_job calls awaited together (arq has no bulk enqueue)

    def worker_argv(self, concurrency: int) -> list[str]:
        return [str(Path(sys.executable).with_name("arq")), "arq_app.WorkerSettings"]

    async def _pool(self) -> Any:
        from arq import create_pool
        from arq.connections import RedisSettings

        return await create_pool(RedisSettings.from_dsn(self.redis.url))

    async def _send(
        self, jobs: Sequence[tuple[float, str, dt.datetime | None, float]], name: str = "noop"
    ) -> None:
        pool = await self._pool()
        try:
            for i in range(0, len(jobs), self.inflight):
                await asyncio.gather(
                    *(
                        pool.enqueue_job(
                            name,
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

    def enqueue(self, count: int, payload: str = "", delay_s: float = 0.0, job: str = "") -> None:
        asyncio.run(self._send([(0.0, payload, None, delay_s)] * count, job or "noop"))

    def enqueue_at(self, due: Sequence[float]) -> None:
        asyncio.run(self._send([(d, "", at(d), 0.0) for d in due]))

    async def _rates(self, short: bool) -> dict[str, Any]:
        pool = await self._pool()
        payload = "x" * 100
        try:
            for _ in range(sized("enqueue_warmup", short)):  # not counted
                await pool.enqueue_job("noop", 0.0, payload)
            count = sized("seq_tasks", short)
            start = time.perf_counter()
            for _ in range(count):
                await pool.enqueue_job("noop", 0.0, payload)
            seq = count / (time.perf_counter() - start)
            count, left = sized("concurrent_tasks", short), sized("concurrent_tasks", short)

            async def caller() -> None:
                nonlocal left
                while left > 0:
                    left -= 1
                    await pool.enqueue_job("noop", 0.0, payload)

            start = time.perf_counter()
            await asyncio.gather(*(caller() for _ in range(ENQUEUE_INFLIGHT)))
            conc = count / (time.perf_counter() - start)
        finally:
            await pool.aclose()
        return {"sequential_per_s": seq, "batched_per_s": None, "concurrent_per_s": conc}

    def enqueue_rates(self, short: bool) -> dict[str, Any]:
        return asyncio.run(self._rates(short))

    def enqueue_numbered(self, count: int) -> None:
        async def send() -> None:
            pool = await self._pool()
            try:
                for n in range(count):
                    await pool.enqueue_job("sleep", float(n))
            finally:
                await pool.aclose()

        asyncio.run(send())


class RqPeer(Peer):
    """RQ, W3 only: `rq worker-pool -n N` (N workers, each forking a work horse per job)."""

    name = "rq"

    def worker_argv(self, concurrency: int) -> list[str]:
        rq = str(Path(sys.executable).with_name("rq"))
        return [rq, "worker-pool", "-u", self.redis.url, "-n", str(concurrency), "bench"]

    def start_worker(self, records: Path, concurrency: int = 10, **env: str) -> Proc:
        return super().start_worker(records, concurrency, PYTHONPATH=str(HERE), **env)

    def enqueue_numbered(self, count: int) -> None:
        from redis import Redis
        from rq import Queue

        queue = Queue("bench", connection=Redis.from_url(self.redis.url))
        for n in range(count):
            queue.enqueue("rq_app.sleep", float(n))


class SaqPeer(Peer):
    """SAQ, W3 only: `saq saq_app.settings` (concurrency N)."""

    name = "saq"

    def worker_argv(self, concurrency: int) -> list[str]:
        return [str(Path(sys.executable).with_name("saq")), "saq_app.settings"]

    def enqueue_numbered(self, count: int) -> None:
        from saq import Queue

        async def send() -> None:
            queue = Queue.from_url(self.redis.url)
            await queue.connect()
            try:
                for n in range(count):
                    await queue.enqueue("sleep", number=float(n))
            finally:
                await queue.disconnect()

        asyncio.run(send())


PEERS: dict[str, type[Peer]] = {"celery": CeleryPeer, "arq": ArqPeer, "rq": RqPeer, "saq": SaqPeer}
W3_ONLY = ("rq", "saq")  # measured in W3 only (the issue cites them for crash recovery)


def w1(peer: Peer, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Enqueue the tasks (the peer's fastest producer call), then one worker process at
    --concurrency drains them with --handler (incr: record, then one Redis INCR)."""
    tasks = sized("w1_tasks", args.short)
    start = time.perf_counter()
    peer.enqueue(tasks, job=args.handler)
    rate_in = tasks / (time.perf_counter() - start)
    records = tmp / "w1.rec"
    with peer.worker(records, args.concurrency):
        done = wait_for_records(records, tasks, sized("w1_drain_limit_s", args.short) + BOOT_S)
    result = drain_result(rate_in, records, done)
    return {**result, "tasks": tasks, **_w1_facts(peer.redis, args)}


def _w1_facts(redis: RedisServer, args: argparse.Namespace) -> dict[str, Any]:
    counted = redis_command(redis.port, "GET", COUNTER_KEY)
    return {
        "concurrency": args.concurrency,
        "handler": args.handler,
        "incr_count": int(counted) if isinstance(counted, bytes) else 0,
    }


def w2(peer: Peer, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    records = tmp / "w2.rec"
    count, spread = sized("w2_tasks", args.short), sized("w2_spread_ms", args.short)
    with peer.worker(records):
        time.sleep(BOOT_S)
        due = due_times(count, now_ms() + W2_LEAD_MS, spread)
        peer.enqueue_at(due)
        wait_for_records(records, count, max((max(due) + W2_GRACE_MS - now_ms()) / 1000, 0.1))
        time.sleep(0.2)
    return lateness(read_records(records), due)


def w3(peer: Peer, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    """A worker SIGKILLed mid-run (harness.crash_run): the same tasks, concurrency and cap as
    atp's W3, each peer's worker with its defaults (Celery: acks_late and
    reject_on_worker_lost on the task, as its docs ask for crash safety)."""
    tasks, conc = sized("w3_tasks", args.short), sized("w3_concurrency", args.short)
    sleep_s, cap_s = sized("w3_sleep_s", args.short), sized("w3_cap_s", args.short)
    starts, finishes = tmp / "w3-starts.rec", tmp / "w3-finishes.rec"
    peer.enqueue_numbered(tasks)
    env = {"BENCH_FINISHES": str(finishes), "BENCH_SLEEP_S": str(sleep_s)}

    def start() -> Proc:
        return peer.start_worker(starts, conc, BENCH_HANDLER="sleep", **env)

    result = crash_run(start, starts, finishes, tasks, conc, sleep_s, cap_s)
    return {**result, "concurrency": conc, "sleep_s": sleep_s}


def enqueue_rates(peer: Peer, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    return peer.enqueue_rates(args.short)


def w4(peer: Peer, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    tasks = 5_000 if args.short else W4_TASKS
    peer.enqueue(1, "x", FAR_FUTURE_S)  # the queue's own keys exist before
    time.sleep(0.5)
    before = used_memory(peer.redis.port)
    peer.enqueue(tasks, "p" * W4_PAYLOAD, FAR_FUTURE_S)
    time.sleep(0.5)
    per_task = (used_memory(peer.redis.port) - before) / tasks
    return {"bytes_per_task": per_task, "beyond_payload": per_task - W4_PAYLOAD}


def w7(peer: Peer, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Celery's W7 (loadtest/workflow_bench.py is atp's): chains enqueued before the worker
    starts, then chains started W7_GAP_MS apart on a running worker (after 5 warm-up ones)."""
    if not isinstance(peer, CeleryPeer):
        raise SystemExit(f"w7: {peer.name} has no chain (celery and bullmq only)")
    runs, paced = sized("w7_runs", args.short), sized("w7_handoff_runs", args.short)
    peer.chains(range(runs))
    records = tmp / "w7-throughput.rec"
    with peer.worker(records, args.concurrency):
        wait_for_records(records, runs * W7_STEPS, W7_DRAIN_LIMIT_S + BOOT_S)
    out = {"throughput": chain_result(read_records(records), runs)}
    records, first = tmp / "w7-handoff.rec", 1_000_000
    with peer.worker(records, args.concurrency):
        peer.chains(range(first - 5, first))
        wait_for_records(records, 5 * W7_STEPS, BOOT_S + 30)
        skip = count_records(records)
        began = time.perf_counter()
        for i in range(paced):
            time.sleep(max(began + i * W7_GAP_MS / 1000 - time.perf_counter(), 0))
            peer.chains([first + i])
        wait_for_records(records, skip + paced * W7_STEPS, W7_DRAIN_LIMIT_S)
    out["handoff"] = chain_result(read_records(records)[skip:], paced)
    return out


WORKLOADS = {"w1": w1, "enqueue": enqueue_rates, "w2": w2, "w3": w3, "w4": w4, "w7": w7}
NODE_LIMIT_S = 300.0


def node_dir() -> Path:
    """Absolute: the W3 worker runs in this directory, `just bench` passes a relative one."""
    return Path(os.environ.get("BENCH_NODE_DIR", HERE.parents[1] / ".bench" / "node")).resolve()


class BullmqPeer(Peer):
    """BullMQ's W3: its jobs added by bullmq_driver.cjs, its worker bullmq_worker.cjs (the
    other workloads run whole in Node: bullmq() below)."""

    name = "bullmq"

    def worker_argv(self, concurrency: int) -> list[str]:
        return ["node", str(HERE / "bullmq_worker.cjs")]

    def start_worker(self, records: Path, concurrency: int = 10, **env: str) -> Proc:
        env = {"NODE_PATH": str(node_dir() / "node_modules"), **env}
        return super().start_worker(
            records, concurrency, BENCH_REDIS_PORT=str(self.redis.port), **env
        )

    def enqueue_numbered(self, count: int) -> None:
        node(self.redis, Path(tempfile.gettempdir()), "w3-enqueue", {"BENCH_TASKS": str(count)})


def node(redis: RedisServer, tmp: Path, workload: str, env: dict[str, str]) -> dict[str, Any]:
    """bullmq_driver.cjs's one workload; its JSON result."""
    import subprocess

    full_env = {
        **os.environ,
        "NODE_PATH": str(node_dir() / "node_modules"),
        "BENCH_REDIS_PORT": str(redis.port),
        "BENCH_TMP": str(tmp),
        **env,
    }
    out = subprocess.run(
        ["node", str(HERE / "bullmq_driver.cjs"), workload],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=NODE_LIMIT_S,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"bullmq_driver.cjs {workload}: {out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def bullmq(
    workload: str, redis: RedisServer, tmp: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """BullMQ's workloads run in Node (bullmq_driver.cjs, its worker bullmq_worker.cjs); the
    statistics are computed here, by the same code as for every other system."""
    if workload == "w3":
        return w3(BullmqPeer(redis), tmp, args)
    if workload == "w7":
        return _bullmq_w7(redis, tmp, args)
    env = {
        "BENCH_CONCURRENCY": str(args.concurrency),
        "BENCH_HANDLER": args.handler if workload == "w1" else "noop",
        "BENCH_TASKS": str(sized("w1_tasks", args.short)),
        "BENCH_ENQUEUE": json.dumps(
            {
                "sequential": sized("seq_tasks", args.short),
                "batched": sized("batch_tasks", args.short),
                "concurrent": sized("concurrent_tasks", args.short),
                "inflight": ENQUEUE_INFLIGHT,
                "warmup": sized("enqueue_warmup", args.short),
            }
        ),
    }
    result = node(redis, tmp, workload, env)
    if workload == "w1":
        recs = read_records(result.pop("records"))
        result.update(process_per_s=processing_rate(recs), processed=len(recs))
        result.update(tasks=sized("w1_tasks", args.short), **_w1_facts(redis, args))
    elif workload == "w2":
        result = lateness(read_records(result["records"]), [float(d) for d in result["due"]])
    return result


def _bullmq_w7(redis: RedisServer, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    """BullMQ's W7: FlowProducer chains (bullmq_driver.cjs w7), the same figures."""
    runs, paced = sized("w7_runs", args.short), sized("w7_handoff_runs", args.short)
    sizes = {"runs": runs, "handoff_runs": paced, "gap_ms": W7_GAP_MS}
    env = {
        "BENCH_CONCURRENCY": str(args.concurrency),
        "BENCH_HANDLER": "incr",
        "BENCH_W7": json.dumps({**sizes, "limit_ms": W7_DRAIN_LIMIT_S * 1000}),
    }
    files = node(redis, tmp, "w7", env)
    return {
        "throughput": chain_result(read_records(files["throughput"]), runs),
        "handoff": chain_result(read_records(files["handoff"])[files["skip"] :], paced),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("peer", choices=[*sorted(PEERS), "bullmq"])
    p.add_argument("workload", choices=sorted(WORKLOADS))
    p.add_argument("--concurrency", type=int, default=10, help="W1: the worker's")
    p.add_argument("--handler", choices=("incr", "noop"), default="incr", help="W1's handler")
    p.add_argument("--short", action="store_true", help="small sizes: a smoke test")
    p.add_argument("--show-logs", action="store_true")
    args = p.parse_args()
    if args.peer in W3_ONLY and args.workload != "w3":
        p.error(f"{args.peer} is measured in w3 only")
    with tempfile.TemporaryDirectory(prefix="atp-bench-") as tmp, redis_server() as redis:
        if args.peer == "bullmq":
            result = bullmq(args.workload, redis, Path(tmp), args)
        else:
            result = WORKLOADS[args.workload](PEERS[args.peer](redis), Path(tmp), args)
        if args.show_logs:
            for log in Path(tmp).glob("*.log"):
                sys.stderr.write(f"--- {log.name}\n{log.read_text()[-3000:]}\n")
    clean = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in result.items()}
    print(json.dumps(clean))


if __name__ == "__main__":
    main()
