"""A throwaway redis-server on a free loopback port, which tests can stop, restart and pause."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import redis


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    def __init__(
        self,
        port: int | None = None,
        appendonly: bool = True,
        extra: tuple[str, ...] = (),
        password: str | None = None,
    ) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install -y redis-server)")
        self.binary = binary
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="atp-redis-"))
        self.appendonly = appendonly
        self.extra = extra
        self.password = password
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            "everysec",
            "--protected-mode",
            "no",
            "--loglevel",
            "warning",
            *(("--requirepass", self.password) if self.password else ()),
            *self.extra,
        ]
        with open(self.dir / "redis.log", "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        client = redis.Redis(port=self.port, password=self.password)
        deadline = time.monotonic() + 10
        while True:
            try:
                if client.ping():
                    break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.02)
        client.close()
        return self

    def client(self) -> redis.Redis:
        """A sync client of this one server (the caller closes it)."""
        return redis.Redis(port=self.port, password=self.password, socket_timeout=5)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(10)
        self.proc = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    def pause(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def free_cluster_ports(count: int) -> list[int]:
    """`count` free loopback ports below 55536: a cluster node also listens on port + 10000
    (its cluster bus), which must be free too."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port < 55536 and port not in ports and _free(port + 10000):
            ports.append(port)
    return ports


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class RedisCluster:
    """A real Redis Cluster on loopback: `masters` masters with `replicas` replicas each, every
    node a `redis-server --cluster-enabled yes --cluster-node-timeout 1000`, joined by
    `redis-cli --cluster create ... --cluster-replicas N --cluster-yes`.

    `nodes` are RedisServer objects (kill, restart, pause work per node); `url` is the
    `redis+cluster://host:port,...` URL atp takes (docs/adr/0012)."""

    def __init__(self, masters: int = 3, replicas: int = 1, node_timeout_ms: int = 1000) -> None:
        cli = shutil.which("redis-cli")
        if cli is None:
            raise RuntimeError("redis-cli is not installed (apt-get install -y redis-tools)")
        self.cli = cli
        self.replicas = replicas
        self.nodes = [
            RedisServer(
                port=port,
                extra=(
                    "--cluster-enabled",
                    "yes",
                    "--cluster-node-timeout",
                    str(node_timeout_ms),
                    "--cluster-config-file",
                    "nodes.conf",
                    "--repl-diskless-sync-delay",
                    "0",  # a replica syncs at once (the default waits 5 s for more replicas)
                ),
            )
            for port in free_cluster_ports(masters * (1 + replicas))
        ]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def start(self) -> RedisCluster:
        try:
            with ThreadPoolExecutor(len(self.nodes)) as pool:
                list(pool.map(RedisServer.start, self.nodes))
            subprocess.run(
                [
                    self.cli,
                    "--cluster",
                    "create",
                    *(f"127.0.0.1:{n.port}" for n in self.nodes),
                    "--cluster-replicas",
                    str(self.replicas),
                    "--cluster-yes",
                ],
                check=True,
                capture_output=True,
                timeout=60,
            )
            self.wait_ok()
        except BaseException:
            self.cleanup()
            raise
        return self

    def client(self) -> redis.RedisCluster:
        """A sync cluster client (the caller closes it)."""
        node = self.nodes[0]
        return redis.RedisCluster(host="127.0.0.1", port=node.port)

    def cluster_info(self, node: RedisServer) -> dict[str, str]:
        client = node.client()
        try:
            raw = client.execute_command("CLUSTER", "INFO")
        finally:
            client.close()
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        return dict(line.split(":", 1) for line in text.split() if ":" in line)

    def wait_ok(self, timeout: float = 30) -> None:
        """Until every running node says cluster_state:ok with all 16384 slots assigned and
        its replicas linked (so replication and failover work from the first test)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if all(self._node_ok(n) for n in self.nodes if n.proc is not None):
                    return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("redis cluster did not become ok")
            time.sleep(0.05)

    def _node_ok(self, node: RedisServer) -> bool:
        info = self.cluster_info(node)
        if info.get("cluster_state") != "ok" or info.get("cluster_slots_ok") != "16384":
            return False
        client = node.client()
        try:
            repl = client.info("replication")
        finally:
            client.close()
        if repl["role"] == "slave":
            return bool(repl.get("master_link_status") == "up")
        return True

    def masters(self) -> list[RedisServer]:
        """The running nodes that are masters now (failover changes which)."""
        found = []
        for node in self.nodes:
            if node.proc is None:
                continue
            client = node.client()
            try:
                if client.info("replication")["role"] == "master":
                    found.append(node)
            finally:
                client.close()
        return found

    def master_of(self, key: str) -> RedisServer:
        """The node serving `key`'s slot now."""
        with self.client() as client:
            node = client.get_node_from_key(key)
        return next(n for n in self.nodes if n.port == node.port)

    def kill(self, node: RedisServer) -> None:
        """SIGKILL one node (its replica takes over after cluster-node-timeout)."""
        node.kill()

    def restart(self, node: RedisServer) -> None:
        """Start a killed or stopped node again (same port, dir and nodes.conf: it rejoins,
        as a replica when its replica was promoted meanwhile)."""
        node.stop()
        node.start()

    def flush(self) -> None:
        """FLUSHALL on every master (tests start empty)."""
        for node in self.masters():
            client = node.client()
            try:
                client.flushall()
            finally:
                client.close()

    def cleanup(self) -> None:
        with ThreadPoolExecutor(len(self.nodes)) as pool:
            list(pool.map(RedisServer.cleanup, self.nodes))
