"""The role split behind nginx, on loopback: one redis-server, two or more `atp --role=server`,
nginx (the shipped deploy/nginx/atp.conf.template, through chaos/lb.py) with `grpc_pass` to
them, and `--role=scheduler`, `--role=watchdog` and `--role=worker` processes. Workers and the
tests' SDK clients dial only nginx; the scheduler and the watchdog use Redis, never the API.
Every process is ended by its own pid."""

from __future__ import annotations

import sys
from pathlib import Path

from appliance import Client
from appliance.errors import AtpError
from chaos.lb import Nginx
from chaos.procs import Child, free_port, wait_for
from tests.redis_server import RedisServer

TOPIC = "lb"
LONGEST_POLL = "--max-wait-ms=90000"  # the slow test polls past nginx's 60 s default
WORKER_CONFIG = f"""
topics:
  {TOPIC}:
    executor: python
    callable: tests.roles.handlers:slow
    concurrency: 4
"""


def ready(address: str) -> bool:
    """The API at `address` answers a Stats call (it reaches Redis)."""
    try:
        with Client(address, timeout=2) as client:
            client.stats([TOPIC])
    except AtpError:
        return False
    return True


class RoleSplit:
    def __init__(self, run_dir: Path, servers: int = 2, lease_ms: int = 2000) -> None:
        self.dir = run_dir
        self.marks = run_dir / "marks"
        self.marks.mkdir(parents=True, exist_ok=True)
        self.lease_ms = lease_ms
        self.redis = RedisServer(appendonly=False)
        self.server_addresses = [f"127.0.0.1:{free_port()}" for _ in range(servers)]
        self.servers = [
            self._atp(f"server-{n}", "server", f"--grpc-addr={address}", LONGEST_POLL)
            for n, address in enumerate(self.server_addresses, 1)
        ]
        self.nginx = Nginx(run_dir, self.server_addresses)
        self.address = self.nginx.address
        (run_dir / "worker.yaml").write_text(WORKER_CONFIG)
        self.roles = [
            self._atp("scheduler", "scheduler"),
            self._atp("watchdog", "watchdog"),
            self._atp(
                "worker",
                "worker",
                f"--server-addr={self.address}",
                f"--config={run_dir / 'worker.yaml'}",
            ),
        ]

    def _atp(self, name: str, role: str, *extra: str) -> Child:
        args = [
            sys.executable,
            *("-m", "appliance", f"--role={role}"),
            f"--redis-url={self.redis.url}",
            f"--data-dir={self.dir / 'atp'}",
            f"--visibility-timeout-ms={self.lease_ms}",
            "--backoff-base-ms=100",
            "--backoff-cap-ms=400",
            *extra,
        ]
        return Child(name, args, self.dir, env={"ATPTEST_MARKS": str(self.marks)})

    def start(self) -> RoleSplit:
        self.redis.start()
        for server, address in zip(self.servers, self.server_addresses, strict=True):
            server.start()
            if not wait_for(lambda a=address: ready(a), 30):  # type: ignore[misc]
                raise RuntimeError(f"{server.name} not ready: {server.output()}")
        self.nginx.start()
        if not wait_for(lambda: ready(self.address), 15):
            raise RuntimeError(f"no API through nginx: {self.nginx.error_log()}")
        for role in self.roles:
            role.start()
        return self

    def stop(self) -> None:
        for child in [*reversed(self.roles), *self.servers]:
            child.stop(15)
        self.nginx.stop()
        self.redis.cleanup()

    def role(self, name: str) -> Child:
        return next(c for c in [*self.roles, *self.servers] if c.name == name)

    def outputs(self) -> str:
        """Every process's log tail and nginx's error log, for a failing assertion."""
        parts = [f"--- {c.name}\n{c.output(1500)}" for c in [*self.servers, *self.roles]]
        return "\n".join([*parts, f"--- nginx\n{self.nginx.error_log()}"])
