"""loadtest/enqueue_bench.py, the figures `just bench` imports: each run makes exactly the
tasks it counts (plus its warm-up) and returns a rate (loadtest/ is not a package, so its
directory is put on sys.path)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance import Client
from tests.conftest import ServerProcess

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "loadtest"))

import enqueue_bench


@pytest.fixture(scope="module")
def address(redis_url: str) -> Iterator[str]:
    proc = ServerProcess(redis_url)
    yield proc.address
    proc.stop()


@pytest.mark.parametrize("client", ["sync", "async"])
def test_rates_count_the_tasks_they_made(address: str, client: str) -> None:
    one, many = f"one-{client}", f"many-{client}"
    assert enqueue_bench.sequential_enqueue(address, 300, client, topic=one) > 0
    assert enqueue_bench.concurrent_enqueue(address, 1000, 50, client, topic=many) > 0
    with Client(address) as c:
        pending = {s.topic: s.pending for s in c.stats([one, many]).topics}
    warm = enqueue_bench.WARMUP
    assert pending == {one: 300 + warm, many: 1000 + warm}
