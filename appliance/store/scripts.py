"""The Lua script loader: reads every lua/*.lua once, registers it (EVALSHA with reload on
NOSCRIPT via redis-py's Script objects) and hands out one callable per script.

Nobody else calls EVAL. Imports redis; nothing of atp but this package's files.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Callable, Collection, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from appliance.store.results import CODES

Client = Redis | RedisCluster
"""What the store talks to: one Redis, or a Redis Cluster (docs/adr/0012)."""

# The task lifecycle's scripts (appliance/model.py TRANSITIONS names each one's edge). Other
# scripts beside them (the scheduler's) are registered too: see available_scripts().
SCRIPT_NAMES = (
    "enqueue",
    "claim",
    "ack",
    "nack",
    "release",
    "extend",
    "cancel",
    "recover_expired",
    "release_lost",
    "requeue_dead",
    "purge_dead",
)


class NotReplicated(Exception):
    """A write ran on the master, but fewer replicas than asked confirmed it in time (WAIT):
    it may or may not survive a failover (docs/adr/0013-durability.md)."""


INCLUDE = "--! include "  # a script's line naming a lua/lib/<name>.lua to put in its place


def script_source(name: str) -> str:
    """The text of lua/<name>.lua, each `--! include <lib>` line replaced by lua/lib/<lib>.lua
    (works from a wheel and from the PyInstaller binary)."""
    lua = importlib.resources.files("appliance.store").joinpath("lua")
    lines = lua.joinpath(f"{name}.lua").read_text().splitlines(keepends=True)
    return "".join(
        lua.joinpath("lib", f"{line.removeprefix(INCLUDE).strip()}.lua").read_text()
        if line.startswith(INCLUDE)
        else line
        for line in lines
    )


def available_scripts() -> list[str]:
    """Every .lua file shipped beside the store, by name."""
    lua = importlib.resources.files("appliance.store").joinpath("lua")
    return sorted(p.name.removesuffix(".lua") for p in lua.iterdir() if p.name.endswith(".lua"))


class Scripts:
    """One registered script per name: `await scripts.call("claim", keys, args)` for a single
    call (Store.run retries it), `queue()` inside `run_pipeline()` for several in one round trip.

    The names are results.CODES's rows: a row without its lua/<name>.lua file, or a file
    without its row, fails here, at start, not at the first call.

    With `replicas` > 0 (durability replicated) every call, single or pipelined, ends with
    `WAIT replicas timeout_ms` on the same connection, so it returns only once that many
    replicas have the write, else raises NotReplicated. This is the one place scripts run:
    nothing that changes state by script is acknowledged without it."""

    def __init__(
        self,
        redis: Client,
        names: Collection[str] = CODES,
        replicas: int = 0,
        replica_timeout_ms: int = 0,
    ) -> None:
        files = set(available_scripts())
        unknown, unlisted = set(names) - files, files - set(names)
        if unknown or unlisted:
            raise ValueError(
                f"script table and lua/ differ: no file for {sorted(unknown)}, "
                f"no results.CODES row for {sorted(unlisted)}"
            )
        self._redis = redis
        self._replicas = replicas
        self._replica_timeout_ms = replica_timeout_ms
        # A cluster's WAIT goes to each master a pipeline wrote to: id(pipe) -> a key of each
        # script queued on it (replicated durability only).
        self._written: dict[int, list[str]] = {}
        self._scripts: dict[str, AsyncScript] = {
            name: redis.register_script(script_source(name)) for name in sorted(names)
        }

    def get(self, name: str) -> AsyncScript:
        try:
            return self._scripts[name]
        except KeyError:
            raise ValueError(f"no script {name!r} (see appliance/store/results.py)") from None

    async def call(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """One EVALSHA (reloaded on NOSCRIPT), not retried: Store.run retries. Replicated:
        the EVALSHA and its WAIT in one round trip."""
        if not self._replicas:
            return await self.get(name)(keys=keys, args=args)
        (reply,) = await self.run_pipeline(
            self._redis, lambda pipe: self.queue(pipe, name, keys, args)
        )
        return reply

    def queue(self, pipe: Any, name: str, keys: Sequence[str], args: Sequence[Any]) -> None:
        """Queue `EVALSHA` of a script on a pipeline. Unlike calling the Script object with
        client=pipe, this sends no `SCRIPT EXISTS` round trip before every pipeline; a NOSCRIPT
        (Redis restarted) is handled by `run_pipeline`."""
        # execute_command, not pipe.evalsha: redis-py's cluster pipeline refuses the method
        # but routes the command by its keys (one slot per script: docs/adr/0012).
        pipe.execute_command("EVALSHA", self.get(name).sha, len(keys), *keys, *args)
        if self._replicas and keys and isinstance(self._redis, RedisCluster):
            self._written.setdefault(id(pipe), []).append(keys[0])

    async def run_pipeline(self, redis: Client, build: Callable[[Any], None]) -> list[Any]:
        """Build and execute one pipeline; after NOSCRIPT load every script and run it again.
        Replicated: the pipeline ends with WAIT, whose reply is checked and left out."""
        for attempt in (1, 2):
            async with redis.pipeline(transaction=False) as pipe:
                try:
                    build(pipe)
                finally:
                    written = self._written.pop(id(pipe), [])
                waits = self._queue_wait(pipe, written)
                try:
                    replies = list(await pipe.execute())
                except NoScriptError:
                    if attempt == 2:
                        raise
                else:
                    return self._replicated(replies, waits)
            await self.load_all(redis)
        raise AssertionError("unreachable")  # pragma: no cover

    def _queue_wait(self, pipe: Any, written: Sequence[str]) -> int:
        """Queue the WAIT that follows the pipeline's writes on their connection; how many.
        WAIT counts the replicas that have this connection's writes, so it must follow them on
        the same connection: one Redis, one WAIT at the end; a cluster pipeline sends each
        master's commands on one connection of its own, so one WAIT per master written to
        (`written`: a key of each script queued), routed to it."""
        if not self._replicas:
            return 0
        wait = ("WAIT", self._replicas, self._replica_timeout_ms)
        if not isinstance(self._redis, RedisCluster):
            pipe.execute_command(*wait)
            return 1
        masters = {}
        for key in written:
            node = self._redis.get_node_from_key(key)
            if node is not None:
                masters[node.name] = node
        for node in masters.values():
            pipe.execute_command(*wait, target_nodes=node)
        return len(masters)

    def _replicated(self, replies: list[Any], waits: int) -> list[Any]:
        """The script replies, once the WAIT replies (the last `waits`) show enough replicas."""
        if not waits:
            return replies
        confirmed = min(int(n) for n in replies[-waits:])
        if confirmed < self._replicas:
            raise NotReplicated(
                f"the write ran on the Redis master but {confirmed} of {self._replicas} replicas "
                f"confirmed it within durability_timeout_ms ({self._replica_timeout_ms} ms): it "
                "may or may not survive a failover; repeating the call is safe"
            )
        return replies[:-waits]

    async def load_all(self, redis: Client) -> None:
        """Load every script now, so the first real call is a plain EVALSHA."""
        for script in self._scripts.values():
            script.sha = await redis.script_load(script.script)
