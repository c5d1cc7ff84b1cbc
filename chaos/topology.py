"""One chaos run's processes: redis-server (AOF) and the toxiproxy server on loopback, a proxy
`redis` in front of Redis used by every atp process, a proxy `grpc` in front of the API used by
the workers (and `grpc-solo` for a worker that a scenario cuts off alone), and the processes:
`atp --role=server`, `--role=watchdog` x N, `--role=scheduler` x N, recording workers
(chaos/worker.py) and a bounded producer (chaos/producer.py). Every child is ended by its pid.

With `Options(appliance=True)` the atp side is instead one `atp --role=all --data-dir <run>/atp`
(its supervisor, embedded Redis and roles; no proxies), which the workers reach directly.

With `Options(cluster=True)` Redis is a real Redis Cluster of 3 masters and 3 replicas
(chaos/cluster.py) that the atp processes reach directly (`redis+cluster://`: a proxy would
hide the node addresses the cluster redirects to), started with `--durability` as given.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import socket
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from chaos.api import Api, connect
from chaos.cluster import Cluster
from chaos.history import LogWriter, now_ms
from chaos.lb import Nginx
from chaos.procs import Child, free_port, wait_for
from chaos.toxics import Link, Toxiproxy

TOPIC = "chaos"
CRON_TOPIC = "chaos-cron"


@dataclasses.dataclass(frozen=True, slots=True)
class Options:
    lease_ms: int = 1500
    workers: int = 3
    concurrency: int = 3  # unary: fetch loops per worker and topic; stream: handler slots
    watchdogs: int = 2
    schedulers: int = 0
    leader_ttl_ms: int = 1000
    redis_timeout_ms: int = 2000
    solo_worker: bool = False  # one more worker, behind its own proxy `grpc-solo`
    topics: tuple[str, ...] = (TOPIC,)
    appliance: bool = False  # one `atp --role=all` (supervisor + embedded Redis), no proxies
    transport: str = "unary"  # the recording workers': unary (Retrieve) or stream (rpc Work)
    prefetch: int = 2  # stream: deliveries a worker holds beyond its `concurrency` slots
    cluster: bool = False  # a 3-master, 3-replica Redis Cluster instead of one Redis
    durability: str = "local"  # the atp processes' --durability (local | replicated)
    servers: int = 1  # atp --role=server processes; every one advances workflow runs, the
    # workers and producers use the first
    workflows: bool = False  # runs are checked too (chaos/runcheck.py)
    lb_servers: int = 0  # > 0: instead, that many `atp --role=server` behind nginx
    # (chaos/lb.py), which every client dials (no toxiproxy on the API side)


class Redis:
    """redis-server with AOF (everysec, the appliance's setting) in <run dir>/redis; a restart
    reuses the port and the data dir, so it comes back with what its AOF holds."""

    def __init__(
        self, run_dir: Path, name: str = "redis", port: int = 0, extra: Sequence[str] = ()
    ) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.port = port or free_port()
        self.dir = run_dir / name
        self.dir.mkdir(parents=True, exist_ok=True)
        argv = [
            binary,
            *("--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir)),
            *("--appendonly", "yes", "--appendfsync", "everysec", "--save", ""),
            *("--protected-mode", "no", "--loglevel", "warning"),
            *extra,
        ]
        self.child = Child(name, argv, run_dir)

    def start(self) -> Redis:
        self.child.start()
        if not wait_for(self.pong, 30):
            raise RuntimeError(f"redis-server did not answer PING: {self.child.output()}")
        return self

    def pong(self) -> bool:
        """PING answered with PONG (not LOADING): raw RESP, no client library."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False


class Topology:
    def __init__(self, run_dir: Path, options: Options) -> None:
        self.run_dir = run_dir
        self.options = options
        run_dir.mkdir(parents=True, exist_ok=True)
        self.redis = Redis(run_dir)
        self.cluster = Cluster(run_dir, Redis) if options.cluster else None
        self.toxiproxy = Toxiproxy(run_dir)
        self.api_port = free_port()
        self.api_address = f"127.0.0.1:{self.api_port}"
        self.children: list[Child] = []
        self.workers: list[Child] = []
        self.schedulers: list[Child] = []
        self.solo: Child | None = None
        self.servers: list[Child] = []  # the advancing servers beyond the first (lb: all)
        self.addresses: dict[str, str] = {"server": self.api_address}  # server name -> API
        self.redis_link: Link | None = None
        self.grpc_link: Link | None = None
        self.solo_link: Link | None = None
        self.api: Api | None = None
        self.supervisor: Child | None = None
        self.nginx: Nginx | None = None
        self.http_address = f"127.0.0.1:{free_port()}"

    # -- start and stop ---------------------------------------------------------------------

    def start(self) -> Topology:
        if self.options.appliance:
            return self._start_appliance()
        self.toxiproxy.start()
        if self.cluster is not None:
            self.cluster.start()
        else:
            self.redis.start()
            self.redis_link = self.toxiproxy.link("redis", self.redis.port)
        if self.options.lb_servers:
            return self._start_behind_lb()
        self._add(self._atp("server", "server", f"--grpc-addr={self.api_address}"))
        self.api = Api(self.api_address)
        if not wait_for(self.api.ready, 30):
            raise RuntimeError(f"atp server not ready: {self.children[-1].output()}")
        self.grpc_link = self.toxiproxy.link("grpc", self.api_port)
        for n in range(2, self.options.servers + 1):
            address = f"127.0.0.1:{free_port()}"
            server = self._add(self._atp(f"server-{n}", "server", f"--grpc-addr={address}"))
            self.servers.append(server)
            self.addresses[server.name] = address
            self.wait_server_ready(server)
        return self._start_roles(self.grpc_link.port)

    def _start_behind_lb(self) -> Topology:
        """`lb_servers` servers, nginx on the API port in front of them, the roles dialing it."""
        self.addresses = {}
        for n in range(1, self.options.lb_servers + 1):
            address = f"127.0.0.1:{free_port()}"
            server = self._add(self._atp(f"server-{n}", "server", f"--grpc-addr={address}"))
            self.servers.append(server)
            self.addresses[server.name] = address
            self.wait_server_ready(server)
        self.nginx = Nginx(self.run_dir, list(self.addresses.values()), port=self.api_port)
        self.nginx.start()
        self.api = Api(self.api_address)
        if not wait_for(self.api.ready, 30):
            raise RuntimeError(f"no API through nginx: {self.nginx.error_log()}")
        return self._start_roles(self.api_port)

    def _start_roles(self, api_port: int) -> Topology:
        """Watchdogs, schedulers and the recording workers (dialing `api_port`)."""
        for n in range(1, self.options.watchdogs + 1):
            self._add(self._atp(f"watchdog-{n}", "watchdog"))
        for n in range(1, self.options.schedulers + 1):
            self.schedulers.append(self._add(self._atp(f"scheduler-{n}", "scheduler")))
        for n in range(1, self.options.workers + 1):
            self.workers.append(self._add(self._worker(f"w{n}", api_port)))
        if self.options.solo_worker:
            self.solo_link = self.toxiproxy.link("grpc-solo", self.api_port)
            self.solo = self._add(self._worker("solo", self.solo_link.port))
        for worker in [*self.workers, *([self.solo] if self.solo else [])]:
            self.wait_worker_ready(worker)
        return self

    def _start_appliance(self) -> Topology:
        """`atp --role=all` on a data dir in the run dir; the workers dial its API directly."""
        o = self.options
        args = [
            *("-m", "appliance", "--role=all", "--workers=1"),
            f"--data-dir={self.run_dir / 'atp'}",
            f"--grpc-addr={self.api_address}",
            f"--http-addr={self.http_address}",
            "--backoff-base-ms=100",
            "--backoff-cap-ms=400",
            f"--visibility-timeout-ms={o.lease_ms}",
            "--drain-timeout-ms=5000",
        ]
        self.supervisor = self._add(Child.python("atp", args, self.run_dir))
        self.api = Api(self.api_address)
        self.wait_appliance_ready()
        for n in range(1, o.workers + 1):
            self.workers.append(self._add(self._worker(f"w{n}", self.api_port)))
        for worker in self.workers:
            self.wait_worker_ready(worker)
        return self

    def wait_appliance_ready(self, timeout: float = 30) -> None:
        assert self.api is not None and self.supervisor is not None
        if not wait_for(self.api.ready, timeout):
            raise RuntimeError(f"atp --role=all not ready: {self.supervisor.output()}")

    def appliance_children(self) -> dict[str, int]:
        """name -> pid of the supervisor's children, from its /healthz."""
        url = f"http://{self.http_address}/healthz"
        with urllib.request.urlopen(url, timeout=2) as reply:
            children = json.loads(reply.read())["children"]
        return {str(c["name"]): int(c["pid"]) for c in children if c["pid"]}

    def _add(self, child: Child) -> Child:
        self.children.append(child.start())
        return child

    @property
    def redis_url(self) -> str:
        """What the atp processes dial: the cluster's nodes, else the proxy in front of Redis."""
        if self.cluster is not None:
            return self.cluster.url
        assert self.redis_link is not None
        return f"redis://127.0.0.1:{self.redis_link.port}/0"

    def _atp(self, name: str, role: str, *extra: str) -> Child:
        o = self.options
        args = [
            *("-m", "appliance", f"--role={role}"),
            f"--redis-url={self.redis_url}",
            f"--durability={o.durability}",
            f"--data-dir={self.run_dir / 'atp'}",
            "--backoff-base-ms=100",
            "--backoff-cap-ms=400",
            f"--redis-timeout-ms={o.redis_timeout_ms}",
            f"--leader-ttl-ms={o.leader_ttl_ms}",
            f"--visibility-timeout-ms={o.lease_ms}",
            *extra,
        ]
        return Child.python(name, args, self.run_dir)

    def _worker(self, name: str, port: int) -> Child:
        o = self.options
        args = [
            *("-m", "chaos.worker", "--addr", f"127.0.0.1:{port}"),
            *("--topics", ",".join(o.topics), "--name", name),
            *("--log", str(self.run_dir / f"worker-{name}.jsonl")),
            *("--lease-ms", str(o.lease_ms), "--concurrency", str(o.concurrency)),
            *("--transport", o.transport, "--prefetch", str(o.prefetch)),
        ]
        return Child.python(f"worker-{name}", args, self.run_dir)

    def wait_worker_ready(self, worker: Child, timeout: float = 30) -> None:
        log = self.run_dir / f"{worker.name}.jsonl"
        marker = f'"ev":"ready","worker":"{worker.name.removeprefix("worker-")}"'

        def ready() -> bool:
            try:
                return log.read_text().count(marker) >= worker.starts
            except OSError:
                return False

        if not wait_for(ready, timeout) or not worker.alive():
            raise RuntimeError(f"{worker.name} did not start: {worker.output()}")

    def stop(self) -> None:
        """Everything this run started, by pid, newest first; toxiproxy and Redis last."""
        for child in reversed(self.children):
            child.stop(15)
        if self.api is not None:
            self.api.close()
        if self.nginx is not None:
            self.nginx.stop()
        if not self.options.appliance:
            self.toxiproxy.stop()
            self.redis.child.stop(10)
        if self.cluster is not None:
            self.cluster.stop()

    # -- during a scenario ------------------------------------------------------------------

    def producer(
        self,
        count: int,
        rate: float,
        seed: int,
        long_every: int = 0,
        name: str = "producer",
        topic: str = TOPIC,
    ) -> Child:
        args = [
            *("-m", "chaos.producer", "--addr", self.api_address, "--topic", topic),
            *("--log", str(self.run_dir / f"{name}.jsonl"), "--prefix", name),
            *("--count", str(count), "--rate", str(rate), "--seed", str(seed)),
            *("--long-every", str(long_every)),
        ]
        return self._add(Child.python(name, args, self.run_dir))

    def in_flight(self, worker: Child) -> int:
        """Tasks the worker's current incarnation has started and not finished (its log)."""
        try:
            text = (self.run_dir / f"{worker.name}.jsonl").read_text()
        except OSError:
            return 0
        text = text[text.rfind('"ev":"ready"') :]
        return text.count('"ev":"start"') - text.count('"ev":"end"')

    def run_producer(self, count: int, rate: float, seed: int, *extra: str) -> Child:
        """chaos/runs.py: starts `count` workflow runs at `rate` per second (its options)."""
        args = [
            *("-m", "chaos.runs", "--addr", self.api_address),
            *("--log", str(self.run_dir / "producer-runs.jsonl")),
            *("--count", str(count), "--rate", str(rate), "--seed", str(seed)),
            *extra,
        ]
        return self._add(Child.python("producer-runs", args, self.run_dir))

    def server(self) -> Child:
        """The first `atp --role=server` (the one workers and producers call)."""
        return next(c for c in self.children if c.name == "server")

    def wait_server_ready(self, server: Child, timeout: float = 30) -> None:
        with connect(self.addresses[server.name]) as api:
            if not wait_for(api.ready, timeout):
                raise RuntimeError(f"atp {server.name} not ready: {server.output()}")

    def kill_server(self, server: Child) -> None:
        """SIGKILL an atp server process (it advances runs); recorded in faults.jsonl."""
        with LogWriter(self.run_dir / "faults.jsonl") as log:
            log.write("kill_server", process=server.name, t_ms=now_ms())
        server.kill()

    def kill_worker(self, worker: Child) -> None:
        """SIGKILL a recording worker; its time goes to faults.jsonl (taken just before the
        signal, so a restart latency measured from it is an upper bound)."""
        with LogWriter(self.run_dir / "faults.jsonl") as log:
            log.write("kill", worker=worker.name.removeprefix("worker-"), t_ms=now_ms())
        worker.kill()

    def silenced(self, worker: Child, since_ms: int) -> None:
        """Record that `worker` could not answer its server from `since_ms` until now (stopped
        or cut off): the server may find its stream dead and release its tasks."""
        with LogWriter(self.run_dir / "faults.jsonl") as log:
            name = worker.name.removeprefix("worker-")
            log.write("silent", worker=name, t_ms=since_ms, until_ms=now_ms())

    def restart_redis(self, down_s: float) -> None:
        """SIGKILL redis-server, keep it down for `down_s`, start it again on its AOF."""
        self.redis.child.kill()
        time.sleep(down_s)
        self.redis.child.restart()
        if not wait_for(self.redis.pong, 30):
            raise RuntimeError(f"redis-server did not come back: {self.redis.child.output()}")

    def wait_drained(self, topics: tuple[str, ...], timeout: float) -> float | None:
        """Seconds until nothing is pending or running in `topics`, or None after `timeout`."""
        assert self.api is not None
        api = self.api
        started = time.monotonic()
        if wait_for(lambda: api.drained(topics), timeout, pause=0.2):
            return time.monotonic() - started
        return None
