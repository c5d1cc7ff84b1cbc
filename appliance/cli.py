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

from appliance import auth, config, logs, times
from appliance.commands import SUMMARIES
from appliance.config import ROLES
from appliance.errors import EXIT_CONFIG, ConfigError
from appliance.roles import BODIES, run_role


def role_parser() -> argparse.ArgumentParser:
    """`--role`, `--config`, and one flag per setting (config.Settings), named with dashes: a
    boolean is a --x/--no-x pair; a duration (`*_ms`) is --x with a unit (30s) or --x-ms with
    bare milliseconds."""
    p = argparse.ArgumentParser(
        prog="atp",
        usage="atp [--role ROLES] [--config FILE] [--SETTING VALUE ...]\n"
        "       atp COMMAND [ARGS ...]    (atp COMMAND --help shows its flags)",
        description="atp — the async task platform.\n\n"
        "Without a COMMAND, atp runs the roles (default server) under one supervisor.\n"
        "Settings come from the config file < ATP_<SETTING> environment variables < flags.\n"
        "A DURATION takes a unit: 500ms, 30s, 5m, 2h, 1d; a boolean is --x or --no-x.",
        epilog=commands_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--role",
        default=None,
        metavar="ROLES",
        help="Roles to run: a comma list of server, scheduler, watchdog, worker, console, or all "
        "(default server).",
    )
    p.add_argument(
        "--config", default=None, metavar="FILE", help="YAML config file (also ATP_CONFIG)."
    )
    for name, field in config.FIELDS.items():
        _setting_flag(p, name, field)
    return p


def commands_epilog() -> str:
    width = max(map(len, SUMMARIES))
    lines = [f"  {name:<{width}}  {text}" for name, text in SUMMARIES.items()]
    return "commands (atp COMMAND --help for each one's flags):\n" + "\n".join(lines)


def _setting_flag(p: argparse.ArgumentParser, name: str, field: dataclasses.Field[Any]) -> None:
    flag = f"--{name.replace('_', '-')}"
    text, kind = config.HELP.get(name, f"The {name} setting").rstrip("."), str(field.type)
    default: Any = field.default
    if default is dataclasses.MISSING:
        default = "{}" if kind.startswith("dict") else "[]"
    if kind == "bool":
        state = "on" if default else "off"
        p.add_argument(
            flag,
            dest=name,
            default=None,
            action=argparse.BooleanOptionalAction,
            help=f"{text} (default {state}).",
        )
    elif name.endswith("_ms"):
        base = flag.removesuffix("-ms")
        p.add_argument(
            base,
            dest=name,
            default=None,
            type=_duration,
            metavar="DURATION",
            help=f"{text} (default {times.duration_text(default)}).",
        )
        p.add_argument(flag, dest=name, default=None, metavar="MS", help=f"{base} in milliseconds.")
    else:
        shown = default if default != "" else "none"
        p.add_argument(
            flag,
            dest=name,
            default=None,
            metavar=_metavar(name, kind),
            help=f"{text} (default {shown}).",
        )


def _metavar(name: str, kind: str) -> str:
    if kind == "int":
        return "N"
    if kind[:4] in {"dict", "list"}:
        return "JSON"
    for suffix, metavar in (("_addr", "HOST:PORT"), ("_file", "FILE"), ("_path", "PATH")):
        if name.endswith(suffix):
            return metavar
    return {"data_dir": "DIR", "redis_url": "URL"}.get(name, "TEXT")


def _duration(text: str) -> int:
    try:
        return times.duration_ms(text, bare_ms=False)
    except times.BadValue as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
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
    ns = role_parser().parse_args(times.join_negative_values(list(argv)))
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
