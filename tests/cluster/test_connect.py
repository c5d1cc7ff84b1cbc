"""Connecting to a Redis Cluster: the fixture is a real 3-master, 3-replica cluster, and a
`redis+cluster://` URL gives the store redis-py's cluster client (docs/adr/0012)."""

from __future__ import annotations

from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster

from appliance.config import Settings
from appliance.model import NewTask
from appliance.store import Store, connect
from tests.conftest import on_cluster
from tests.redis_server import RedisCluster


def test_the_fixture_is_three_masters_with_a_replica_each(redis_cluster: RedisCluster) -> None:
    masters = redis_cluster.masters()
    assert len(masters) == 3
    for node in masters:
        info = redis_cluster.cluster_info(node)
        assert info["cluster_state"] == "ok"
        assert info["cluster_known_nodes"] == "6"
        assert info["cluster_size"] == "3"


@on_cluster
async def test_a_cluster_url_connects_the_store_through_the_cluster_client(
    settings: Settings,
) -> None:
    assert settings.redis_url.startswith("redis+cluster://")
    store = Store(connect(settings), settings)
    try:
        assert isinstance(store.redis, AsyncRedisCluster)
        assert await store.ping()
        await store.enqueue([NewTask("a", "t", "x", 3)])
        claim = await store.claim("t", 1, 30_000)
        assert [t.id for t in claim.tasks] == ["a"]
        await store.ack("a", claim.tasks[0].lease_token)
    finally:
        await store.close()


@on_cluster
async def test_scripts_are_loaded_again_on_every_master_after_noscript(
    settings: Settings, redis_cluster: RedisCluster
) -> None:
    store = Store(connect(settings), settings)
    try:
        await store.enqueue([NewTask("a", "t", "x", 3)])
        for node in redis_cluster.masters():  # as after a failover to a replica never loaded
            client = node.client()
            client.script_flush()
            client.close()
        tasks = [NewTask("b", topic, "x", 3) for topic in ("t", "u", "v", "w", "x", "y")]
        made = await store.enqueue(tasks)  # one pipeline over several masters
        assert all(m.created for m in made)
    finally:
        await store.close()
