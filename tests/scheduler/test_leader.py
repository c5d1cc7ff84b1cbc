"""The leader lease loop: one leader, renewals keep it, a clean stop hands over at once, and a
leader whose lease ran out on its own clock steps down before Redis would let anyone take over."""

from __future__ import annotations

import asyncio
import logging

import pytest
import redis

from appliance.scheduler.leader import Leader
from appliance.store import Store
from appliance.store.schedules import ScheduleStore
from tests.conftest import on_both
from tests.scheduler.helpers import KEYS, read_lease


@on_both
async def test_one_leader_renews_and_hands_over_on_stop(
    store: Store, redis_client: redis.Redis
) -> None:
    # a TTL of 3 s: renewals every 1 s hold the lead on a loaded machine (at 1.5 s, CI once saw
    # a step down on the cluster within 2 s)
    a = Leader(ScheduleStore(store), 3000, holder="a")
    b = Leader(ScheduleStore(store), 3000, holder="b")
    runners = [asyncio.create_task(a.run())]
    try:
        await asyncio.sleep(0.1)
        runners.append(asyncio.create_task(b.run()))
        await asyncio.sleep(3.5)  # past the TTL: renewals keep a in the lead
        assert a.token() == 1 and b.token() is None
        assert read_lease(redis_client)["holder"] == "a"
        a.stop()
        await runners[0]  # releases the lease
        assert not b.changed.is_set()  # b never led
        await asyncio.wait_for(b.changed.wait(), 2.0)  # b asks every TTL/3
        assert b.token() == 2 and read_lease(redis_client)["holder"] == "b"
        b.stop()
        await runners[1]
        assert not redis_client.exists(KEYS.lease)
    finally:
        a.stop()
        b.stop()
        await asyncio.gather(*runners)


@on_both
async def test_a_dead_leader_is_replaced_within_the_ttl(store: Store) -> None:
    a = Leader(ScheduleStore(store), 600, holder="a")
    await a.run_once()  # a leads, then never renews (as if killed)
    b = Leader(ScheduleStore(store), 600, holder="b")
    loop = asyncio.get_running_loop()
    started = loop.time()
    runner = asyncio.create_task(b.run())
    await asyncio.wait_for(b.changed.wait(), 2)
    assert b.token() == 2
    assert loop.time() - started < 0.7
    b.stop()
    await runner


@on_both
async def test_a_stalled_leader_steps_down_on_its_own_clock(
    store: Store, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    now = [100.0]
    a = Leader(ScheduleStore(store), 5000, holder="a", clock=lambda: now[0])
    await a.run_once()
    assert a.token() == 1
    now[0] += 4.6  # e.g. SIGSTOPped: past TTL - margin (4.5 s); Redis still has the lease
    with caplog.at_level(logging.WARNING):
        assert a.token() is None
    assert "stepped down" in caplog.text
    assert redis_client.pttl(KEYS.lease) > 0  # it stopped trusting the lease first
    await a.run_once()  # asks again: its own lease (a lost reply looks the same) comes back
    assert a.token() == 1


@on_both
async def test_a_leader_whose_lease_was_taken_over_steps_down(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    a = Leader(ScheduleStore(store), 300, holder="a", clock=lambda: 0.0)
    await a.run_once()
    await asyncio.sleep(0.35)
    b = Leader(ScheduleStore(store), 5000, holder="b")
    await b.run_once()
    with caplog.at_level(logging.INFO):
        await a.run_once()  # the renewal is refused
        assert a.token() is None
        await a.run_once()  # now a follower: sees b
    assert "taken over" in caplog.text and "scheduler leader is b (token 2)" in caplog.text
