"""topic_forget.lua: a topic found empty is forgotten once it stayed empty for the retention
time, and its token gets its place back; a topic found busy starts over."""

from __future__ import annotations

import asyncio

import redis

from appliance.store import Store
from tests.store.helpers import KEYS


async def forget(store: Store, retention: int, **found: int) -> list[str]:
    script = store.scripts.get("topic_forget")
    keys = [KEYS.topics, KEYS.topic_owner, KEYS.topic_owned, KEYS.topic_empty]
    args: list[object] = [retention]
    for topic, empty in found.items():
        args += [topic, empty]
    return [t.decode() for t in await script(keys=keys, args=args)]


async def test_forgotten_after_the_retention_time(store: Store, redis_client: redis.Redis) -> None:
    redis_client.sadd(KEYS.topics, "a", "b")
    redis_client.hset(KEYS.topic_owner, mapping={"a": "p", "b": "p"})
    redis_client.hset(KEYS.topic_owned, "p", 2)
    assert await forget(store, 100, a=1, b=1) == []  # first found empty: the clock starts
    await asyncio.sleep(0.12)
    assert await forget(store, 100, a=1, b=0) == ["a"]
    assert redis_client.smembers(KEYS.topics) == {b"b"}
    assert redis_client.hgetall(KEYS.topic_owned) == {b"p": b"1"}
    assert redis_client.hkeys(KEYS.topic_empty) == []  # b was busy: its clock was reset
    await asyncio.sleep(0.12)
    assert await forget(store, 100, b=1) == []
