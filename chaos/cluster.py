"""A real Redis Cluster for the chaos runs: 3 masters and 3 replicas on loopback, each a
`redis-server --cluster-enabled yes --cluster-node-timeout 1000` (AOF everysec, as the single
Redis), joined by `redis-cli --cluster create ... --cluster-replicas 1`. Nodes are killed,
stopped and restarted by their own pid; who is master of what is read with `redis-cli`.

Stdlib and redis-py's key_slot (the slot of a key); imports nothing of atp.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from redis.crc import key_slot

from chaos.procs import Child, free_port, wait_for

SLOTS = 16384
NODE_TIMEOUT_MS = 1000


class Node(Protocol):
    port: int
    child: Child

    def start(self) -> Any: ...

    def pong(self) -> bool: ...


def topic_slot(topic: str) -> int:
    """The slot of a topic's keys (all under the hash tag `{topic}`): redis-py's key_slot, the
    CRC16 every Redis Cluster client computes."""
    return int(key_slot(("{" + topic + "}").encode()))


def spread_topics(prefix: str, masters: int = 3) -> tuple[str, ...]:
    """One topic name per master of a freshly created cluster (`--cluster create` gives master
    i the i-th equal share of the slots): `<prefix>-<n>`, the first n landing on each share."""
    found: dict[int, str] = {}
    n = 0
    while len(found) < masters:
        name = f"{prefix}-{n}"
        found.setdefault(topic_slot(name) * masters // SLOTS, name)
        n += 1
    return tuple(found[i] for i in range(masters))


def _cluster_port() -> int:
    """A free port below 55536 whose cluster bus port (+10000) is free too."""
    while True:
        port = free_port()
        if port < 55536:
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port + 10000))
                except OSError:
                    continue
            return port


class Cluster:
    def __init__(
        self,
        run_dir: Path,
        make_node: Callable[..., Node],
        masters: int = 3,
        replicas: int = 1,
    ) -> None:
        cli = shutil.which("redis-cli")
        if cli is None:
            raise RuntimeError("redis-cli is not installed (apt-get install redis-tools)")
        self.cli = cli
        self.replicas = replicas
        extra = (
            *("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"),
            *("--cluster-node-timeout", str(NODE_TIMEOUT_MS)),
            *("--repl-diskless-sync-delay", "0"),
        )
        self.nodes = [
            make_node(run_dir, f"redis-{i}", _cluster_port(), extra)
            for i in range(masters * (1 + replicas))
        ]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def start(self) -> Cluster:
        for node in self.nodes:
            node.start()
        subprocess.run(
            [
                self.cli,
                *("--cluster", "create", *(f"127.0.0.1:{n.port}" for n in self.nodes)),
                *("--cluster-replicas", str(self.replicas), "--cluster-yes"),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        if not wait_for(self.healthy, 30, pause=0.1):
            raise RuntimeError(f"redis cluster not ok: {self.describe()}")
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.child.stop(10)

    # -- reading the cluster (redis-cli) ----------------------------------------------------

    def command(self, node: Node, *args: str) -> str:
        out = subprocess.run(
            [self.cli, "-p", str(node.port), *args], capture_output=True, text=True, timeout=5
        )
        return out.stdout

    def running(self) -> list[Node]:
        return [n for n in self.nodes if n.child.alive()]

    def roles(self) -> dict[int, dict[str, str]]:
        """port -> `INFO replication` fields, for every running node that answers."""
        found = {}
        for node in self.running():
            text = self.command(node, "INFO", "replication")
            fields = dict(line.split(":", 1) for line in text.split() if ":" in line)
            if fields:
                found[node.port] = fields
        return found

    def healthy(self) -> bool:
        """Every running node sees cluster_state:ok, and every master has a linked replica."""
        try:
            for node in self.running():
                if "cluster_state:ok" not in self.command(node, "CLUSTER", "INFO"):
                    return False
            roles = self.roles()
        except (OSError, subprocess.SubprocessError):
            return False
        masters = [p for p, r in roles.items() if r.get("role") == "master"]
        linked = {
            int(r["master_port"])
            for r in roles.values()
            if r.get("role") == "slave" and r.get("master_link_status") == "up"
        }
        return len(masters) == len(self.nodes) // (1 + self.replicas) and set(masters) <= linked

    def master_of(self, topic: str) -> Node:
        """The running master serving the topic's slot now (CLUSTER NODES of a live node)."""
        slot = topic_slot(topic)
        for node in self.running():
            for line in self.command(node, "CLUSTER", "NODES").splitlines():
                fields = line.split()
                if len(fields) < 9 or "master" not in fields[2] or "fail" in fields[2]:
                    continue
                port = int(fields[1].split(":")[1].split("@")[0])
                if any(_covers(r, slot) for r in fields[8:]):
                    return self._node(port)
        raise RuntimeError(f"no master serves slot {slot}: {self.describe()}")

    def replica_of(self, master: Node) -> Node:
        for port, fields in self.roles().items():
            if fields.get("role") == "slave" and int(fields["master_port"]) == master.port:
                return self._node(port)
        raise RuntimeError(f"no replica of {master.port}: {self.describe()}")

    def describe(self) -> str:
        return ", ".join(
            f"{p}:{r.get('role')}{'<-' + r['master_port'] if 'master_port' in r else ''}"
            for p, r in sorted(self.roles().items())
        )

    def _node(self, port: int) -> Node:
        return next(n for n in self.nodes if n.port == port)

    # -- faults -----------------------------------------------------------------------------

    def kill(self, node: Node) -> None:
        node.child.kill()

    def pause(self, node: Node) -> None:
        node.child.signal(signal.SIGSTOP)

    def resume(self, node: Node) -> None:
        node.child.signal(signal.SIGCONT)

    def cut_replicas(self, master: Node) -> None:
        """Close the master's replication links (CLIENT KILL TYPE replica): what it writes from
        now on reaches no replica until one reconnects (a frozen one cannot)."""
        self.command(master, "CLIENT", "KILL", "TYPE", "replica")

    def restart(self, node: Node) -> None:
        """Start a killed node again on its dir and nodes.conf: it rejoins as a replica."""
        node.child.restart()
        if not wait_for(node.pong, 30):
            raise RuntimeError(f"{node.child.name} did not come back: {node.child.output()}")

    def wait_promoted(self, topic: str, dead: Node, timeout: float = 30) -> float:
        """Seconds until a node other than `dead` is the topic's master, every node agreeing
        the cluster is ok; RuntimeError after `timeout`."""
        started = time.monotonic()

        def promoted() -> bool:
            try:
                if self.master_of(topic) is dead:
                    return False
                return all(
                    "cluster_state:ok" in self.command(n, "CLUSTER", "INFO") for n in self.running()
                )
            except (RuntimeError, OSError, subprocess.SubprocessError):
                return False

        if not wait_for(promoted, timeout, pause=0.05):
            raise RuntimeError(f"no replica promoted within {timeout:.0f} s: {self.describe()}")
        return time.monotonic() - started


def _covers(slot_range: str, slot: int) -> bool:
    if slot_range.startswith("["):  # a slot being migrated
        return False
    low, _, high = slot_range.partition("-")
    return int(low) <= slot <= int(high or low)
