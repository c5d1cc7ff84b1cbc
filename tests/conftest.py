"""Fixtures: a real redis-server on a free port per session (or REDIS_URL), a flushed DB per
test, settings pointing at it, a Store and a running gRPC server with its stub.

A test (or module) marked `@on_both` runs twice: against the single Redis and against a real
Redis Cluster of 3 masters and 3 replicas (`redis_cluster`, started once per session, or
REDIS_CLUSTER_URL), every fixture above pointing at the one its `redis_url` names."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import grpc
import pytest
import pytest_asyncio
import redis

from appliance.config import Settings, redis_cluster_nodes
from tests.redis_server import RedisCluster, RedisServer

SINGLE, CLUSTER = "single", "cluster"
on_both = pytest.mark.parametrize("redis_url", [SINGLE, CLUSTER], indirect=True)
"""Run a test against one Redis and against a Redis Cluster (test ids end [single]/[cluster])."""
on_cluster = pytest.mark.parametrize("redis_url", [CLUSTER], indirect=True)
"""Run a test against the Redis Cluster only."""


@pytest.fixture(scope="session")
def single_redis_url() -> Iterator[str]:
    given = os.environ.get("REDIS_URL")
    if given:
        yield given
        return
    server = RedisServer().start()
    try:
        yield server.url
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    """A real cluster on loopback, 3 masters + 3 replicas (about 2 s to start), for the whole
    session. Tests that kill or restart nodes must leave it with every slot served (wait_ok)."""
    cluster = RedisCluster().start()
    try:
        yield cluster
    finally:
        cluster.cleanup()


@pytest.fixture(scope="session")
def redis_cluster_url(request: pytest.FixtureRequest) -> str:
    """REDIS_CLUSTER_URL, else the session's `redis_cluster`."""
    given = os.environ.get("REDIS_CLUSTER_URL")
    if given:
        return given
    cluster: RedisCluster = request.getfixturevalue("redis_cluster")
    return cluster.url


@pytest.fixture(scope="session")
def redis_url(request: pytest.FixtureRequest) -> str:
    """The single Redis, or the cluster when parametrized so (`on_both`, `on_cluster`)."""
    if getattr(request, "param", SINGLE) == CLUSTER:
        return str(request.getfixturevalue("redis_cluster_url"))
    return str(request.getfixturevalue("single_redis_url"))


def sync_client(url: str) -> redis.Redis:
    """A sync client for `url`: redis-py's cluster client for a `redis+cluster://` URL."""
    cluster = redis_cluster_nodes(url)
    if cluster is None:
        return redis.Redis.from_url(url)
    nodes = [redis.cluster.ClusterNode(host, port) for host, port in cluster.nodes]
    client = redis.RedisCluster(startup_nodes=nodes, password=cluster.password)
    return client  # type: ignore[return-value]  # the commands tests use are the same


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A sync client, the database flushed (on a cluster: every master)."""
    client = sync_client(redis_url)
    if redis_cluster_nodes(redis_url) is None:
        client.flushdb()
    else:
        client.flushall(target_nodes=redis.RedisCluster.PRIMARIES)  # type: ignore[call-arg]
    yield client
    client.close()


@pytest.fixture
def settings(redis_url: str, redis_client: redis.Redis) -> Settings:
    return Settings(
        redis_url=redis_url, grpc_addr="127.0.0.1:0", backoff_base_ms=50, backoff_cap_ms=200
    )


@pytest_asyncio.fixture
async def store(settings: Settings) -> AsyncIterator[object]:
    from appliance.store import Store, connect

    s = Store(connect(settings), settings)
    yield s
    await s.close()


@pytest_asyncio.fixture
async def server(settings: Settings) -> AsyncIterator[object]:
    from appliance.api.server import QueueServer
    from appliance.store import Store, connect

    store = Store(connect(settings), settings)
    srv = QueueServer(settings, store)
    await srv.start()
    yield srv
    await srv.stop(0.5)
    await store.close()


@pytest_asyncio.fixture
async def stub(server: object) -> AsyncIterator[object]:
    from appliance.proto import queue_pb2_grpc as pb_grpc

    async with grpc.aio.insecure_channel(server.address) as channel:  # type: ignore[attr-defined]
        yield pb_grpc.DelayQueueServiceStub(channel)


class ServerProcess:
    """`atp --role=server` as a real child process on a free port."""

    def __init__(
        self,
        redis_url: str,
        extra: list[str] | None = None,
        env: dict[str, str] | None = None,
        ready_timeout: float = 15.0,
        port: int | None = None,
    ) -> None:
        import subprocess
        import sys
        import tempfile

        from tests.redis_server import free_port

        self.port = port or free_port()  # a given port: a restart at the same address
        self.address = f"127.0.0.1:{self.port}"
        cmd = [
            sys.executable,
            "-m",
            "appliance",
            "--role=server",
            f"--grpc-addr={self.address}",
            f"--redis-url={redis_url}",
            *(extra or []),
        ]
        self.log = tempfile.NamedTemporaryFile(prefix="atp-server-", suffix=".log", delete=False)  # noqa: SIM115
        self.proc = subprocess.Popen(
            cmd, env={**os.environ, **(env or {})}, stdout=self.log, stderr=self.log
        )
        try:
            self.wait_ready(ready_timeout)
        except Exception:
            self.stop()
            raise

    def wait_ready(self, timeout: float = 15.0) -> None:
        import time

        from grpc_health.v1 import health_pb2, health_pb2_grpc

        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(self.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                try:
                    reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"atp server did not become ready: {self.output()[-2000:]}")
                time.sleep(0.05)

    def output(self) -> str:
        with open(self.log.name, errors="replace") as f:
            return f.read()

    def stop(self) -> int:
        import signal

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except Exception:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()
        return self.proc.returncode


@pytest.fixture
def server_process(redis_url: str, redis_client: redis.Redis) -> Iterator[ServerProcess]:
    """A real `atp --role=server` process against the test Redis (flushed first)."""
    proc = ServerProcess(redis_url)
    yield proc
    proc.stop()
