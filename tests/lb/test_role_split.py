"""Producers and `--role=worker` reach two `atp --role=server` only through nginx (the shipped
deploy/nginx/atp.conf.template); the scheduler and watchdog roles work beside them on Redis."""

from __future__ import annotations

import time

from appliance import Client
from appliance.model import TaskState
from appliance.proto import queue_pb2 as pb
from chaos.procs import wait_for
from tests.lb.topology import TOPIC, RoleSplit


def test_tasks_flow_through_nginx_to_the_worker_role_and_both_servers_serve(
    role_split: RoleSplit,
) -> None:
    ids = [f"flow-{n}" for n in range(30)]
    with Client(role_split.address) as client:
        for task_id in ids:
            client.enqueue(TOPIC, "0.01", id=task_id)

        def all_done() -> bool:
            return all(client.get_task(i).state is TaskState.SUCCEEDED for i in ids)

        assert wait_for(all_done, 20, pause=0.2), role_split.outputs()
    used = {line.split()[1] for line in role_split.nginx.access_log() if "DelayQueue" in line}
    assert set(role_split.server_addresses) <= used, used


def test_a_schedule_made_through_nginx_fires_from_the_scheduler_role(
    role_split: RoleSplit,
) -> None:
    with Client(role_split.address) as client:
        client.create_schedule(pb.Schedule(id="lb-tick", topic=TOPIC, payload="0", interval_ms=500))
        try:
            fired = lambda: any(role_split.marks.glob("sched*.end"))  # noqa: E731
            assert wait_for(fired, 15, pause=0.1), role_split.outputs()
        finally:
            client.delete_schedule("lb-tick")


def test_a_long_poll_through_nginx_is_woken_by_an_enqueue_through_nginx(
    role_split: RoleSplit,
) -> None:
    with Client(role_split.address) as waiter, Client(role_split.address) as producer:
        import threading

        got: list[object] = []
        poll = threading.Thread(target=lambda: got.extend(waiter.retrieve("lb-poll", wait=20)))
        started = time.monotonic()
        poll.start()
        time.sleep(1.0)
        producer.enqueue("lb-poll", "x", id="polled")
        poll.join(25)
        took = time.monotonic() - started
    assert [t.id for t in got] == ["polled"]  # type: ignore[attr-defined]
    assert took < 5, took
