"""SIGKILL each of two servers behind nginx in turn under load: the SDK producer (retrying a failed
enqueue with the same id) and the `--role=worker` process reconnect through nginx to the other,
every acknowledged task succeeds, and a task that ran twice did so under a new lease (a higher
attempt), never two at once. The recorded-history version is the chaos scenario
`lb_server_kill` (chaos/scenarios.py)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance import Client
from appliance.errors import AtpError
from appliance.model import TaskState
from chaos.procs import wait_for
from tests.lb.topology import TOPIC, RoleSplit, ready

TASKS = 400
RATE_PER_S = 50


@pytest.fixture(scope="module")
def killed_split(role_split: RoleSplit) -> Iterator[RoleSplit]:
    yield role_split  # this module's own topology (module scope): the kill harms no other test


def produce(address: str, acked: list[str], retried: Counter[str]) -> None:
    with Client(address, timeout=5) as client:
        for n in range(TASKS):
            task_id = f"kill-{n}"
            while True:
                try:
                    client.enqueue(TOPIC, "0.05", id=task_id)
                    break
                except AtpError:
                    retried[task_id] += 1
                    time.sleep(0.05)
            acked.append(task_id)
            time.sleep(1 / RATE_PER_S)


def starts(marks: Path) -> dict[str, list[int]]:
    """task id -> the attempt numbers it started with (tests/roles/handlers.py's marks)."""
    out: dict[str, list[int]] = {}
    for mark in marks.glob("kill-*.start"):
        task_id, attempt, _ = mark.name.rsplit(".", 2)
        out.setdefault(task_id, []).append(int(attempt))
    return out


@pytest.mark.slow  # ~25 s; `just lb-slow` (CI) runs it, `just chaos-quick` the scenario
def test_a_server_killed_under_load_loses_nothing(killed_split: RoleSplit) -> None:
    split = killed_split
    acked: list[str] = []
    retried: Counter[str] = Counter()
    producer = threading.Thread(target=produce, args=(split.address, acked, retried))
    producer.start()
    time.sleep(0.5)
    for victim, address in zip(split.servers, split.server_addresses, strict=True):
        victim.kill()  # every stream breaks once: each server is killed in turn
        time.sleep(1.0)
        victim.restart()
        assert wait_for(lambda a=address: ready(a), 30), victim.output()  # type: ignore[misc]
        time.sleep(1.0)
    producer.join(60)
    assert not producer.is_alive()
    with Client(split.address) as client:

        def done() -> bool:
            return all(client.get_task(i).state is TaskState.SUCCEEDED for i in acked)

        assert wait_for(done, 30, pause=0.3), split.outputs()
        states = Counter(client.get_task(i).state for i in acked)
    assert len(acked) == TASKS and states == {TaskState.SUCCEEDED: TASKS}
    ran = starts(split.marks)
    assert set(ran) == set(acked)  # each ran; none unknown
    for attempts in ran.values():
        assert len(attempts) == len(set(attempts))  # a re-run is a new lease, a new attempt
    twice = {i: a for i, a in ran.items() if len(a) > 1}
    print(f"\n{sum(retried.values())} enqueue retries, {len(twice)} tasks ran twice {twice}")
