"""seed_<state>() and read_<state>() helpers so store tests read "seed, transition, assert"."""

from __future__ import annotations

from typing import Any

import redis

from appliance.keys import Keys
from appliance.model import NewTask, Task
from appliance.store import Store

KEYS = Keys("atp")


async def seed_pending(
    store: Store, topic: str = "t", n: int = 1, delay_ms: int = 0, **kw: Any
) -> list[str]:
    tasks = [
        NewTask(f"{topic}-{i}", topic, f"payload-{i}", kw.get("max_retries", 3), delay_ms)
        for i in range(n)
    ]
    await store.enqueue(tasks, [False] * n)
    return [t.id for t in tasks]


async def seed_running(
    store: Store, topic: str = "t", n: int = 1, lease_ms: int = 30_000, **kw: Any
) -> list[Task]:
    await seed_pending(store, topic, n, **kw)
    claim = await store.claim(topic, n, lease_ms)
    assert len(claim.tasks) == n
    return claim.tasks


async def seed_dead(store: Store, topic: str = "t", n: int = 1) -> list[str]:
    tasks = await seed_running(store, topic, n)
    for t in tasks:
        await store.nack(t.id, t.lease_token, "boom", dead_letter=True)
    return [t.id for t in tasks]


def read_state(r: redis.Redis, topic: str, task_id: str) -> str | None:
    """The task HASH's state; PENDING for a task never leased (a field of the `new` HASH)."""
    if r.hexists(KEYS.topic(topic).new, task_id):
        return "PENDING"
    value = r.hget(KEYS.topic(topic).task(task_id), "state")
    return value.decode() if value else None


def read_pending(r: redis.Redis, topic: str = "t") -> dict[str, int]:
    return {
        k.decode(): int(v) for k, v in r.zrange(KEYS.topic(topic).pending, 0, -1, withscores=True)
    }


def read_running(r: redis.Redis, topic: str = "t") -> dict[str, int]:
    return {
        k.decode(): int(v) for k, v in r.zrange(KEYS.topic(topic).running, 0, -1, withscores=True)
    }


def read_dlq(r: redis.Redis, topic: str = "t") -> list[str]:
    return [k.decode() for k in r.zrange(KEYS.topic(topic).dlq, 0, -1)]


def snapshot(r: redis.Redis) -> dict[bytes, Any]:
    """Every key with its type and value, to prove a refused call changed nothing."""
    out: dict[bytes, Any] = {}
    for key in r.scan_iter():
        kind = r.type(key).decode()
        if kind == "hash":
            out[key] = r.hgetall(key)
        elif kind == "zset":
            out[key] = r.zrange(key, 0, -1, withscores=True)
        elif kind == "string":
            out[key] = r.get(key)
        elif kind == "set":
            out[key] = r.smembers(key)
    return out


def now_ms(r: redis.Redis) -> int:
    sec, usec = r.time()
    return int(sec) * 1000 + int(usec) // 1000


def workflow_listener(r: redis.Redis) -> Any:
    """A subscription to the workflow channel (ack.lua, nack.lua ... publish step tasks' ends)."""
    listener = r.pubsub(ignore_subscribe_messages=True)
    listener.subscribe(KEYS.workflows.channel)
    listener.get_message(timeout=1)
    return listener


def workflow_message(listener: Any) -> list[str]:
    """The next message's words ([] when none came within 2 s); closes the listener."""
    message = listener.get_message(timeout=2)
    listener.close()
    return [] if message is None else message["data"].decode().split(" ")
