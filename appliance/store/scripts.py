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
    without its row, fails here, at start, not at the first call."""

    def __init__(self, redis: Client, names: Collection[str] = CODES) -> None:
        files = set(available_scripts())
        unknown, unlisted = set(names) - files, files - set(names)
        if unknown or unlisted:
            raise ValueError(
                f"script table and lua/ differ: no file for {sorted(unknown)}, "
                f"no results.CODES row for {sorted(unlisted)}"
            )
        self._scripts: dict[str, AsyncScript] = {
            name: redis.register_script(script_source(name)) for name in sorted(names)
        }

    def get(self, name: str) -> AsyncScript:
        try:
            return self._scripts[name]
        except KeyError:
            raise ValueError(f"no script {name!r} (see appliance/store/results.py)") from None

    async def call(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """One EVALSHA (reloaded on NOSCRIPT), not retried: Store.run retries."""
        return await self.get(name)(keys=keys, args=args)

    def queue(self, pipe: Any, name: str, keys: Sequence[str], args: Sequence[Any]) -> None:
        """Queue `EVALSHA` of a script on a pipeline. Unlike calling the Script object with
        client=pipe, this sends no `SCRIPT EXISTS` round trip before every pipeline; a NOSCRIPT
        (Redis restarted) is handled by `run_pipeline`."""
        # execute_command, not pipe.evalsha: redis-py's cluster pipeline refuses the method
        # but routes the command by its keys (one slot per script: docs/adr/0012).
        pipe.execute_command("EVALSHA", self.get(name).sha, len(keys), *keys, *args)

    async def run_pipeline(self, redis: Client, build: Callable[[Any], None]) -> list[Any]:
        """Build and execute one pipeline; after NOSCRIPT load every script and run it again."""
        for attempt in (1, 2):
            async with redis.pipeline(transaction=False) as pipe:
                build(pipe)
                try:
                    return list(await pipe.execute())
                except NoScriptError:
                    if attempt == 2:
                        raise
            await self.load_all(redis)
        raise AssertionError("unreachable")  # pragma: no cover

    async def load_all(self, redis: Client) -> None:
        """Load every script now, so the first real call is a plain EVALSHA."""
        for script in self._scripts.values():
            script.sha = await redis.script_load(script.script)
