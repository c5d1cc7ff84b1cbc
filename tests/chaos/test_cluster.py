"""chaos/cluster.py's pure parts: the slot of a topic (checked against what Redis computes)
and one chaos topic per master."""

from __future__ import annotations

import subprocess

from chaos.cluster import SLOTS, spread_topics, topic_slot
from tests.redis_server import RedisCluster


def test_topic_slots_match_what_redis_computes(redis_cluster: RedisCluster) -> None:
    port = str(redis_cluster.nodes[0].port)
    for topic in ("chaos-0", "chaos-2", "orders", "x.y_z"):
        out = subprocess.run(
            [redis_cluster.cli, "-p", port, "CLUSTER", "KEYSLOT", "{" + topic + "}:pending"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert int(out.stdout) == topic_slot(topic)


def test_spread_topics_gives_one_topic_per_master() -> None:
    topics = spread_topics("chaos", 3)
    assert [topic_slot(t) * 3 // SLOTS for t in topics] == [0, 1, 2]
