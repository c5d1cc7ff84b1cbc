"""The embedded redis-server of `--role=all`: AOF in the data dir, started (and answering) before
every other child, stopped after them, data kept across restarts; a missing binary exits 78."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from appliance.config import Settings
from appliance.supervisor import embedded_redis
from tests.redis_server import free_port
from tests.roles.supervisor_harness import Supervisor, pid_alive

ROLES = ("server", "scheduler", "watchdog", "worker", "console")
ATP_CHILDREN = ("server-1", "scheduler-1", "watchdog-1", "worker-1", "console-1")


@pytest.fixture
def supervisors() -> Iterator[list[Supervisor]]:
    started: list[Supervisor] = []
    yield started
    for sup in started:
        sup.cleanup()


@pytest.fixture
def start_all(tmp_path: Path, supervisors: list[Supervisor]) -> Any:
    """`--role=all` with the embedded Redis in tmp_path/data and stand-in atp children."""

    def start(name: str = "supervisor", **settings: Any) -> Supervisor:
        sup = Supervisor(
            tmp_path,
            ["all"],
            dict.fromkeys(ROLES, "redis"),
            settings={"workers": 1, "data_dir": str(tmp_path / "data"), **settings},
            name=name,
        )
        supervisors.append(sup)
        return sup

    return start


def test_embedded_redis_keeps_data_across_a_restart_and_stops_last(
    start_all: Any, tmp_path: Path
) -> None:
    sup = start_all()
    sup.wait_ready(*ATP_CHILDREN)
    children = sup.children()
    assert list(children) == ["redis", *ATP_CHILDREN]
    url = f"unix://{tmp_path / 'data' / 'redis' / 'redis.sock'}?db=0"
    for name in ATP_CHILDREN:
        spawn = sup.events(name)[0]
        assert spawn["env"]["ATP_REDIS_URL"] == url  # every child is pointed at it ...
        assert spawn["redis_ok"] is True  # ... and starts only once it answers PING

    client = redis.Redis.from_url(url)
    try:
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
        assert client.config_get("dir") == {"dir": str(tmp_path / "data" / "redis")}
        assert client.config_get("port") == {"port": "0"}  # no TCP listener
        client.set("kept", "across restarts")
    finally:
        client.close()
    assert sup.terminate() == 0
    for name in ATP_CHILDREN:  # Redis still answered when they were asked to stop
        last = sup.events(name)[-1]
        assert (last["event"], last["redis_ok"]) == ("term", True), name
    assert not pid_alive(children["redis"]["pid"])
    assert (tmp_path / "data" / "redis" / "appendonlydir").is_dir()

    again = start_all("second-run")
    again.wait_ready(*ATP_CHILDREN)
    client = redis.Redis.from_url(url)
    try:
        assert client.get("kept") == b"across restarts"
    finally:
        client.close()
    assert again.terminate() == 0


def test_a_missing_redis_server_is_one_line_and_exit_78(start_all: Any) -> None:
    sup = start_all(redis_server_path="/nonexistent/redis-server")
    assert sup.wait() == 78
    lines = [json.loads(line) for line in sup.output().splitlines()]
    errors = [r["message"] for r in lines if r["level"] == "error"]
    assert len(errors) == 1
    assert "redis-server not found" in errors[0]
    assert "--redis-url" in errors[0] and "ATP_REDIS_URL" in errors[0]
    assert "\n" not in errors[0]
    assert not list(sup.state_dir.iterdir())  # nothing was started


def test_a_second_supervisor_on_the_same_data_dir_is_refused(start_all: Any) -> None:
    first = start_all()
    first.wait_ready(*ATP_CHILDREN)
    second = start_all("second")
    assert second.wait() == 78
    assert any("in use by another atp" in m for m in second.messages("error"))
    assert first.get("/readyz")[0] == 200
    assert first.terminate() == 0


def test_with_a_redis_url_no_redis_is_embedded(start_all: Any, redis_url: str) -> None:
    sup = start_all(redis_url=redis_url)
    sup.wait_ready(*ATP_CHILDREN)
    assert list(sup.children()) == list(ATP_CHILDREN)
    assert "ATP_REDIS_URL" not in sup.events("worker-1")[0]["env"]
    assert sup.terminate() == 0


def test_a_data_dir_too_deep_for_the_socket_is_refused(tmp_path: Path) -> None:
    with pytest.raises(embedded_redis.RedisUnavailable, match="too deep"):
        embedded_redis.prepare(Settings(data_dir=str(tmp_path / ("x" * 120))))


def test_ping_speaks_resp(redis_url: str) -> None:
    assert embedded_redis.ping(redis_url) is None
    assert "cannot reach Redis" in str(embedded_redis.ping(f"redis://127.0.0.1:{free_port()}/0"))
    with_password = redis_url.replace("redis://", "redis://:secret@")
    assert "refused" in str(embedded_redis.ping(with_password))  # AUTH sent, and refused


def test_redis_fsync_always_reaches_the_embedded_redis(start_all: Any, tmp_path: Path) -> None:
    sup = start_all(redis_fsync="always")
    sup.wait_ready(*ATP_CHILDREN)
    client = redis.Redis.from_url(f"unix://{tmp_path / 'data' / 'redis' / 'redis.sock'}?db=0")
    try:
        assert client.config_get("appendfsync") == {"appendfsync": "always"}
    finally:
        client.close()
    assert sup.terminate() == 0


def test_redis_fsync_takes_only_always_or_everysec() -> None:
    from appliance import config
    from appliance.errors import ConfigError

    assert config.load(environ={"ATP_REDIS_FSYNC": "always"}).redis_fsync == "always"
    with pytest.raises(ConfigError, match=r"redis_fsync: 'no' is not always\|everysec"):
        config.load(environ={"ATP_REDIS_FSYNC": "no"})
