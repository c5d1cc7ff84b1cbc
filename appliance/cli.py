"""The one entrypoint: `atp --role=...` runs roles; `atp <command>` talks to a running server.

Loads settings once (file < env < flags) and starts the chosen role lazily, so a command that
only talks gRPC never imports the store, and the supervisor never imports grpc or redis.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from typing import Any

from appliance import auth, config, logs
from appliance.errors import ConfigError
from appliance.roles import BODIES, EXIT_CONFIG, ROLES, run_role


def role_parser() -> argparse.ArgumentParser:
    """`--role`, `--config`, and one flag per setting (config.Settings), named with dashes."""
    p = argparse.ArgumentParser(prog="atp", description="atp — the async task platform")
    p.add_argument(
        "--role", default=None, help="comma list of server,scheduler,watchdog,worker, or all"
    )
    p.add_argument("--config", default=None, help="YAML config file (also ATP_CONFIG)")
    for name, field in config.FIELDS.items():
        flag = f"--{name.replace('_', '-')}"
        names = [flag, flag.removesuffix("-ms")] if name.endswith("_ms") else [flag]
        default = field.default if field.default is not dataclasses.MISSING else "{}"
        p.add_argument(*names, dest=name, default=None, help=f"(default {default!r})")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["healthcheck"]:
        return healthcheck(args[1:])
    if args[:1] == ["token"]:
        return token_command(args[1:])
    if args and not args[0].startswith("-"):
        from appliance.commands import run_command

        return int(run_command(args))
    return run_roles(args)


def parse_roles(value: str | None) -> list[str]:
    names = [r.strip() for r in (value or "server").split(",") if r.strip()]
    if "all" in names:
        return ["all"]
    unknown = [r for r in names if r not in ROLES]
    if unknown or not names:
        raise ConfigError(
            f"role: unknown {', '.join(unknown) or '(empty)'}; use {', '.join(ROLES)} or all"
        )
    return list(dict.fromkeys(names))


def run_roles(argv: Sequence[str]) -> int:
    ns = role_parser().parse_args(argv)
    flags: dict[str, Any] = {k: v for k, v in vars(ns).items() if k not in {"role", "config"}}
    try:
        settings = config.load(ns.config, flags=flags)
        roles = parse_roles(ns.role)
    except ConfigError as exc:
        print(f"atp: bad config: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if needs_supervisor(settings, roles):
        from appliance.supervisor import run as supervise

        logs.setup(settings.log_level, "supervisor")
        if "all" in roles or "server" in roles:  # the admin token, once, before any child
            try:
                auth.access_tokens(settings, announce_to=sys.stderr)
            except ConfigError as exc:
                print(f"atp: bad config: {exc}", file=sys.stderr)
                return EXIT_CONFIG
        return supervise(settings, roles, child_args(argv))
    if roles[0] not in BODIES:
        print(f"atp: role {roles[0]!r} is not available in this build", file=sys.stderr)
        return EXIT_CONFIG
    logs.setup(settings.log_level, roles[0])
    return run_role(roles[0], settings)


def needs_supervisor(settings: config.Settings, roles: Sequence[str]) -> bool:
    """Several roles, or one role that runs as several processes, are supervised; one process
    of one role runs right here."""
    if len(roles) > 1 or roles[0] == "all":
        return True
    return (roles[0] == "worker" and settings.workers != 1) or (
        roles[0] == "server" and settings.servers > 1
    )


def child_args(argv: Sequence[str]) -> list[str]:
    """A supervised child's arguments: ours without --role, each child one process of one role
    (the flags win over any inherited ATP_WORKERS/ATP_SERVERS)."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--role":
            skip = True
        elif not arg.startswith("--role="):
            out.append(arg)
    return [*out, "--workers=1", "--servers=1"]


def healthcheck(argv: Sequence[str]) -> int:
    """`atp healthcheck`: 0 when the supervisor's /healthz answers 200 (the container probe)."""
    import urllib.request

    parser = argparse.ArgumentParser(prog="atp healthcheck")
    parser.add_argument("--http-addr", dest="http_addr", default=None)
    parser.add_argument("--path", default="/healthz", help="/healthz (live) or /readyz (ready)")
    ns = parser.parse_args(argv)
    try:
        settings = config.load(flags={"http_addr": ns.http_addr})
    except ConfigError as exc:
        print(f"atp: bad config: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    host, _, port = settings.http_addr.rpartition(":")
    host = "127.0.0.1" if host in {"", "0.0.0.0", "[::]", "::"} else host
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{ns.path}", timeout=3) as reply:
            return 0 if reply.status == 200 else 1
    except OSError as exc:
        print(f"atp: healthcheck {host}:{port}{ns.path}: {exc}", file=sys.stderr)
        return 1


def token_command(argv: Sequence[str]) -> int:
    """`atp token new [--role R] [--name N] [--topics a,b]`: a new token and its config entry;
    `atp token hash [TOKEN]` (or the token on stdin): the hash to put in the config."""
    from appliance import auth

    parser = argparse.ArgumentParser(prog="atp token")
    sub = parser.add_subparsers(dest="action", required=True)
    new = sub.add_parser("new", help="generate a token and print its config entry")
    new.add_argument("--role", choices=auth.ROLES, default="producer")
    new.add_argument("--name", default="")
    new.add_argument("--topics", default="", help="comma list; empty = every topic")
    hashing = sub.add_parser("hash", help="print the hash of a token (argument or stdin)")
    hashing.add_argument("token", nargs="?")
    ns = parser.parse_args(argv)
    if ns.action == "hash":
        token = ns.token or sys.stdin.readline().strip()
        if not token:
            print("atp: token hash: no token given", file=sys.stderr)
            return 2
        print(auth.hash_token(token))
        return 0
    token = auth.new_token()
    entry: dict[str, Any] = {
        "name": ns.name or f"{ns.role}-token",
        "hash": auth.hash_token(token),
        "role": ns.role,
    }
    if ns.topics:
        entry["topics"] = [t for t in ns.topics.split(",") if t]
    print(f"token (give it to the client; it is not stored anywhere): {token}")
    print("config entry (under `tokens:`):")
    print("  - " + "\n    ".join(f"{k}: {v}" for k, v in entry.items()))
    return 0
