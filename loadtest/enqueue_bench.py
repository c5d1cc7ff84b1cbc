"""One-at-a-time and concurrent `enqueue()` rates of the SDK against a running atp server,
through the public SDK only (appliance.Client / AsyncClient).

    python loadtest/enqueue_bench.py HOST:PORT [--n 5000] [--in-flight 1000]

loadtest/bench.py imports `sequential_enqueue` and `concurrent_enqueue`; each returns tasks/s
(calls answered per second of wall time, after a short warm-up that is not counted).
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time
import uuid

from appliance import AsyncClient, Client

PAYLOAD = "x" * 100
WARMUP = 200


def sequential_enqueue(address: str, n: int, client: str = "sync", topic: str = "") -> float:
    """`n` calls one after another from one caller: `client` "sync" (Client) or "async"."""
    topic = topic or _topic()
    if client == "async":
        return asyncio.run(_async_rate(address, n, 1, topic))
    with Client(address) as c:
        for _ in range(WARMUP):
            c.enqueue(topic, PAYLOAD)
        started = time.perf_counter()
        for _ in range(n):
            c.enqueue(topic, PAYLOAD)
        return n / (time.perf_counter() - started)


def concurrent_enqueue(
    address: str, n: int, in_flight: int, client: str = "async", topic: str = ""
) -> float:
    """`n` calls with `in_flight` callers at once sharing one client: `client` "async"
    (asyncio tasks on one AsyncClient) or "sync" (threads on one Client)."""
    topic = topic or _topic()
    if client == "async":
        return asyncio.run(_async_rate(address, n, in_flight, topic))
    with Client(address) as c:
        for _ in range(WARMUP):
            c.enqueue(topic, PAYLOAD)
        per_caller = _split(n, in_flight)

        def caller(count: int) -> None:
            for _ in range(count):
                c.enqueue(topic, PAYLOAD)

        threads = [threading.Thread(target=caller, args=(k,)) for k in per_caller]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return n / (time.perf_counter() - started)


async def _async_rate(address: str, n: int, in_flight: int, topic: str) -> float:
    async with AsyncClient(address) as c:
        for _ in range(WARMUP):
            await c.enqueue(topic, PAYLOAD)

        async def caller(count: int) -> None:
            for _ in range(count):
                await c.enqueue(topic, PAYLOAD)

        started = time.perf_counter()
        await asyncio.gather(*(caller(k) for k in _split(n, in_flight)))
        return n / (time.perf_counter() - started)


def _split(n: int, parts: int) -> list[int]:
    parts = max(1, min(parts, n))
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


def _topic() -> str:
    return f"enqueue-bench-{uuid.uuid4().hex[:8]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("address")
    parser.add_argument("--n", type=int, default=5000, help="calls per one-at-a-time run")
    parser.add_argument("--in-flight", type=int, default=1000)
    parser.add_argument("--concurrent-n", type=int, default=100_000)
    args = parser.parse_args()
    for client in ("sync", "async"):
        rate = sequential_enqueue(args.address, args.n, client)
        print(f"{client:5} one at a time:          {rate:9,.0f} tasks/s")
    for client in ("sync", "async"):
        rate = concurrent_enqueue(args.address, args.concurrent_n, args.in_flight, client)
        print(f"{client:5} {args.in_flight:,} in flight: {rate:12,.0f} tasks/s")


if __name__ == "__main__":
    main()
