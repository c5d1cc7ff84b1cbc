"""What the shipped nginx config's timeouts and limits are for (docs/adr/0014): long polls and
Work streams outlive nginx's 60 s defaults, a busy stream passes more than the default 1 MB
body limit, and a frozen worker's stream behind nginx still ends (the server cannot ping a
worker through nginx: a pinging worker silent 10 s is lost) so its tasks come back."""

from __future__ import annotations

import asyncio
import time

import pytest

from appliance import AsyncClient, Client
from appliance.client.work import Delivery
from appliance.model import TaskState
from tests.frozen_worker import freeze_holder
from tests.lb.topology import RoleSplit

NGINX_DEFAULT_S = 60  # its default grpc_read_timeout, grpc_send_timeout, client_body_timeout


async def idle_stream_then_delivery(address: str, idle_s: float) -> float:
    """Open a Work stream, let it idle `idle_s` (no task, only the SDK's pings), then enqueue
    (on an EnqueueStream idle as long) and return how long the delivery took on that stream."""
    async with AsyncClient(address) as client:
        topic = f"lb-idle-{int(idle_s)}"
        await client.enqueue(topic, "warm-up-of-the-enqueue-stream", id=f"{topic}-0")
        stream = await client.open_work({topic: 0}, 2, 30_000)
        events = stream.events()
        first = await asyncio.wait_for(_next_delivery(events), 5)
        assert [t.id for t in first.tasks] == [f"{topic}-0"]
        await asyncio.sleep(idle_s)
        sent = time.monotonic()
        await client.enqueue(topic, "after the idle time", id=f"{topic}-1")
        second = await asyncio.wait_for(_next_delivery(events), 5)
        took = time.monotonic() - sent
        assert [t.id for t in second.tasks] == [f"{topic}-1"]
        await stream.close(clean=False)
        return took


async def _next_delivery(events: object) -> Delivery:
    async for event in events:  # type: ignore[attr-defined]
        if isinstance(event, Delivery):
            return event
    raise AssertionError("the stream ended")


async def test_a_work_stream_idle_past_the_silence_limit_lives_while_the_sdk_pings(
    role_split: RoleSplit,
) -> None:
    took = await idle_stream_then_delivery(role_split.address, 12)  # > the server's 10 s
    assert took < 2, took


@pytest.mark.slow
async def test_a_long_poll_and_an_idle_stream_outlive_nginx_defaults(role_split: RoleSplit) -> None:
    """Both at once (one 70 s wait): a Retrieve waiting 70 s ends empty, not cut at 60 s; a
    Work stream without a task for 70 s still delivers at once."""

    async def long_poll() -> float:
        async with AsyncClient(role_split.address, timeout=5) as client:
            started = time.monotonic()
            assert await client.retrieve("lb-long-poll", wait=NGINX_DEFAULT_S + 10) == []
            return time.monotonic() - started

    waited, took = await asyncio.gather(
        long_poll(), idle_stream_then_delivery(role_split.address, NGINX_DEFAULT_S + 10)
    )
    assert NGINX_DEFAULT_S + 9 < waited < NGINX_DEFAULT_S + 15, waited
    assert took < 2, took


def test_an_enqueue_stream_carries_more_than_nginx_default_body_size(
    role_split: RoleSplit,
) -> None:
    payload = "p" * 16_000  # under the SDK's 64 KB: every call goes on its EnqueueStream
    ids = [f"big-{n}" for n in range(100)]  # 1.6 MB on one stream
    with Client(role_split.address) as client:
        for task_id in ids:
            client.enqueue("lb-big", payload, id=task_id)
        assert client.stats(["lb-big"]).topics[0].pending == len(ids)
    # With nginx's default client_max_body_size (1m) the SDK still gets every call through, by
    # reopening its stream after each cut (ADR 0007); a Work stream's cut releases its tasks.
    assert "too large" not in role_split.nginx.error_log(tail=0)


async def test_a_frozen_workers_stream_behind_nginx_ends_and_its_task_comes_back(
    role_split: RoleSplit,
) -> None:
    task, took = await freeze_holder(role_split.address, "lb-frozen", "held-behind-nginx", 25)
    assert task.state is TaskState.PENDING, (task, role_split.nginx.error_log())
    assert "worker lost" in task.last_error
    assert 9 < took < 14, took  # the server's 10 s silence limit (not the lease: 60 s)
