"""Counters count each task once: a task canceled three times is one cancel, and a task a
schedule fires is an enqueued task (in-process server and scheduler, the default registry)."""

from __future__ import annotations

import asyncio

from prometheus_client import REGISTRY

from appliance import metrics
from appliance.config import Settings
from appliance.proto import queue_pb2 as pb
from appliance.scheduler.definitions import Definition
from appliance.scheduler.leader import Leader
from appliance.scheduler.registry import Registry
from appliance.scheduler.service import Scheduler
from appliance.store import Store
from appliance.store.schedules import ScheduleStore


def count(name: str, topic: str) -> float:
    """The topic's sample (or "_other"'s, once this process labeled metrics_max_topics)."""
    return REGISTRY.get_sample_value(name, {"topic": metrics.topic_label(topic)}) or 0.0


async def test_three_deletes_of_one_task_count_one_cancel(stub) -> None:
    topic = "counted-cancels"
    await stub.Enqueue(pb.EnqueueRequest(topic=topic, payload="p", id="c1", delay_seconds=60))
    before = count("atp_tasks_canceled_total", topic)
    for _ in range(3):
        assert (await stub.Delete(pb.DeleteRequest(id="c1"))).success
    assert count("atp_tasks_canceled_total", topic) - before == 1


async def test_tasks_fired_by_a_schedule_count_as_enqueued(
    store: Store, settings: Settings
) -> None:
    topic = "counted-ticks"
    settings = settings.replace(leader_ttl_ms=1000, scheduler_lookahead_ms=300)
    await Registry(store, settings).create(
        Definition(id="counted", topic=topic, payload="p", interval_ms=100)
    )
    before = count("atp_tasks_enqueued_total", topic)
    leader = Leader(ScheduleStore(store), settings.leader_ttl_ms)
    scheduler = Scheduler(store, leader, settings)
    runners = [asyncio.create_task(leader.run()), asyncio.create_task(scheduler.run())]
    await asyncio.sleep(1.0)
    scheduler.stop()
    leader.stop()
    await asyncio.gather(*runners)
    assert scheduler.enqueued >= 5
    assert count("atp_tasks_enqueued_total", topic) - before == scheduler.enqueued
