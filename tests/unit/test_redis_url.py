"""redis_url: a single Redis or a Redis Cluster (`redis+cluster://host:port,...`, ADR 0012);
a malformed one is a ConfigError naming the setting, at start."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from appliance.config import ClusterURL, Settings, redis_cluster_nodes
from appliance.errors import ConfigError


def test_a_cluster_url_names_its_seed_nodes_and_credentials() -> None:
    url = "rediss+cluster://me:p%40ss@10.0.0.1:7000,10.0.0.2:7001,[::1]:7002/0"
    assert redis_cluster_nodes(url) == ClusterURL(
        (("10.0.0.1", 7000), ("10.0.0.2", 7001), ("::1", 7002)), "me", "p@ss", tls=True
    )
    assert redis_cluster_nodes("redis://127.0.0.1:6379/0") is None


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("redis+cluster://", "host:port"),
        ("redis+cluster://127.0.0.1", "host:port"),
        ("redis+cluster://127.0.0.1:7000,:7001", "host:port"),
        ("redis+cluster://127.0.0.1:7000/3", "only database 0"),
        ("http://127.0.0.1:7000", "not a Redis URL"),
    ],
)
def test_a_bad_url_is_a_config_error_naming_redis_url(url: str, words: str) -> None:
    with pytest.raises(ConfigError, match=f"redis_url: .*{words}"):
        Settings(redis_url=url)


def test_atp_refuses_a_bad_cluster_url_at_start_naming_the_setting() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATP_")}
    done = subprocess.run(
        [sys.executable, "-m", "appliance", "--role=server", "--redis-url=redis+cluster://nohost"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert done.returncode == 78, done.stderr
    assert "redis_url" in done.stderr and "host:port" in done.stderr
