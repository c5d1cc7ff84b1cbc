"""The one entrypoint: `atp --role=...` runs roles; `atp <command>` talks to a running server.

Loads settings once (file < env < flags) and starts the chosen role lazily, so a command that
only talks gRPC never imports the store, and the supervisor never imports grpc or redis.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence
from typing import Any

from appliance import config, logs
from appliance.errors import ConfigError

EXIT_CONFIG = 78  # EX_CONFIG: bad configuration, do not restart


def role_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="atp", description="atp — the async task platform")
    p.add_argument(
        "--role", default=None, help="comma list of server,scheduler,watchdog,worker, or all"
    )
    p.add_argument("--config", default=None, help="YAML config file (also ATP_CONFIG)")
    p.add_argument(
        "--grpc-addr", dest="grpc_addr", default=None, help="gRPC listen address (127.0.0.1:9090)"
    )
    p.add_argument("--redis-url", dest="redis_url", default=None, help="redis://host:port/db")
    p.add_argument("--key-prefix", dest="key_prefix", default=None, help="Redis key prefix (atp)")
    p.add_argument("--log-level", dest="log_level", default=None, help="debug|info|warning|error")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and not args[0].startswith("-"):
        from appliance.commands import run_command

        return run_command(args)
    return run_roles(args)


def run_roles(argv: Sequence[str]) -> int:
    ns = role_parser().parse_args(argv)
    flags: dict[str, Any] = {k: v for k, v in vars(ns).items() if k not in {"role", "config"}}
    try:
        settings = config.load(ns.config, flags=flags)
    except ConfigError as exc:
        print(f"atp: bad config: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    role = ns.role or "server"
    if role != "server":
        print(f"atp: role {role!r} is not available yet (only server)", file=sys.stderr)
        return EXIT_CONFIG
    logs.setup(settings.log_level, role)
    return asyncio.run(_serve(settings))


async def _serve(settings: config.Settings) -> int:
    from appliance.api.server import serve

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await serve(settings, stop)
    return 0
