"""topic_add.lua: new topics are admitted all or none under max_topics and the token's limit."""

from __future__ import annotations

import redis

from appliance.store import Store
from tests.store.helpers import KEYS, snapshot


async def add(store: Store, token: str, *topics: str, most: int = 3, per: int = 2) -> list[object]:
    script = store.scripts.get("topic_add")
    keys = [KEYS.topics, KEYS.topic_owner, KEYS.topic_owned]
    return [
        v.decode() if isinstance(v, bytes) else v
        for v in await script(keys=keys, args=[token, most, per, *topics])
    ]


async def test_limits_all_or_none(store: Store, redis_client: redis.Redis) -> None:
    assert await add(store, "p", "a", "b") == [0, ""]
    before = snapshot(redis_client)
    assert await add(store, "p", "a", "c") == [-2, "c"]  # p made two already
    assert await add(store, "q", "c", "d") == [-1, "c"]  # four topics in all
    assert snapshot(redis_client) == before
    assert await add(store, "q", "a", "c") == [0, ""]
    assert await add(store, "", "a", "b", "c") == [0, ""]  # known: always admitted
    assert redis_client.hgetall(KEYS.topic_owner) == {b"a": b"p", b"b": b"p", b"c": b"q"}
    assert redis_client.hgetall(KEYS.topic_owned) == {b"p": b"2", b"q": b"1"}


async def test_no_token_counts_only_for_the_appliance(
    store: Store, redis_client: redis.Redis
) -> None:
    assert await add(store, "", "a", "b", "c", per=1) == [0, ""]
    assert redis_client.hlen(KEYS.topic_owner) == 0
