"""The supervisor's RESP client on a Redis Cluster: readiness PING and the /metrics depth reads
reach every master (MOVED followed once), past a seed node that is down."""

from __future__ import annotations

from appliance.keys import Keys
from appliance.supervisor import embedded_redis, resp
from tests.conftest import on_cluster
from tests.redis_server import RedisCluster, free_port

KEYS = Keys("atp")


@on_cluster
def test_reads_follow_moved_to_the_master_of_each_key(
    redis_url: str, redis_cluster: RedisCluster, redis_client: object
) -> None:
    topics = [f"t{n}" for n in range(12)]
    assert len({redis_cluster.master_of(KEYS.topic(t).pending).port for t in topics}) == 3
    for n, topic in enumerate(topics):
        redis_client.zadd(KEYS.topic(topic).pending, {f"id{i}": i for i in range(n + 1)})  # type: ignore[attr-defined]
    down = f"redis+cluster://127.0.0.1:{free_port()}," + redis_url.removeprefix("redis+cluster://")
    replies = resp.execute(down, [["ZCARD", KEYS.topic(t).pending] for t in topics])
    assert replies == list(range(1, 13))
    assert embedded_redis.ping(down) is None
    assert resp.where(redis_url).startswith("cluster 127.0.0.1:")
