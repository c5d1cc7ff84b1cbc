"""id_index.lua: the topics holding a client-given id, in step with their tasks (ADR 0006)."""

from __future__ import annotations

import pytest
import redis

from appliance.store import Store
from tests.store.helpers import KEYS

RETENTION = 60_000


async def index(store: Store, mode: str, topic: str, task_id: str = "x") -> int:
    script = store.scripts.get("id_index")
    return int(await script(keys=[KEYS.id_topics(task_id)], args=[mode, topic, RETENTION]))


async def test_expires_only_once_no_topic_holds_a_living_task(
    store: Store, redis_client: redis.Redis
) -> None:
    key = KEYS.id_topics("x")
    assert await index(store, "live", "a") == 1
    assert await index(store, "live", "b") == 2
    assert await index(store, "done", "a") == 1
    assert redis_client.pttl(key) == -1
    assert await index(store, "done", "b") == 0
    assert 0 < redis_client.pttl(key) <= RETENTION
    assert await index(store, "live", "a") == 1  # the id used again in a: kept for good
    assert redis_client.pttl(key) == -1
    assert redis_client.hgetall(key) == {b"a": b"live", b"b": b"done"}


async def test_done_never_creates_a_key(store: Store, redis_client: redis.Redis) -> None:
    assert await index(store, "done", "a") == 0
    assert not redis_client.exists(KEYS.id_topics("x"))


async def test_drop_removes_the_topic(store: Store, redis_client: redis.Redis) -> None:
    await index(store, "live", "a")
    await index(store, "live", "b")
    assert await index(store, "drop", "b") == 1
    assert redis_client.hgetall(KEYS.id_topics("x")) == {b"a": b"live"}
    await index(store, "drop", "a")
    assert not redis_client.exists(KEYS.id_topics("x"))


async def test_an_unknown_mode_is_refused(store: Store, redis_client: redis.Redis) -> None:
    with pytest.raises(redis.exceptions.ResponseError, match="mode"):
        await index(store, "bogus", "a")
    assert not redis_client.exists(KEYS.id_topics("x"))


async def test_found_indexes_a_finished_task_as_done_with_the_retention(
    store: Store, redis_client: redis.Redis
) -> None:
    """A repeated Enqueue that finds its task finished: the index is made, done, expiring."""
    key = KEYS.id_topics("x")
    assert await index(store, "found", "a") == 0
    assert redis_client.hgetall(key) == {b"a": b"done"}
    assert 0 < redis_client.pttl(key) <= RETENTION
    await index(store, "live", "b")
    assert await index(store, "found", "b") == 1  # never turns a live entry done
    assert redis_client.hget(key, "b") == b"live"
