"""`atp <command>`: enqueue, task get/cancel, dlq list/requeue/purge and stats against a
running server, through the SDK's blocking Client.

Owns argument parsing, output (human-readable, or `--json`) and exit codes: 0 done, 1 the
server refused, 2 usage error, 69 server unreachable, 78 bad config. Must not import grpc,
redis or the store. Address, token and client TLS come from `appliance.config.load()` (file <
ATP_* env), the address from `--addr` when given.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import re
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from appliance import config
from appliance.auth import local_token
from appliance.errors import AtpError, ConfigError, Unavailable
from appliance.model import Task

if TYPE_CHECKING:
    from appliance.client import Client

EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 69  # EX_UNAVAILABLE
EXIT_CONFIG = 78  # EX_CONFIG
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


# -- argument types ----------------------------------------------------------------------


def duration_ms(text: str) -> int:
    """'10s', '1500ms', '2m', '1h', '1d'; a bare number is seconds."""
    match = _DURATION.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 10s, 1500ms or 2m")
    return round(float(match.group(1)) * _UNIT_MS[match.group(2) or "s"])


def when_ms(text: str) -> int:
    """Epoch milliseconds, or an ISO 8601 time (without a zone: local time)."""
    if text.strip().isdigit():
        return int(text)
    try:
        return round(dt.datetime.fromisoformat(text.strip()).timestamp() * 1000)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither epoch milliseconds nor an ISO 8601 time"
        ) from None


def count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 0")
    return int(text)


# -- parser ------------------------------------------------------------------------------


def _common() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--addr", default=None, help="server address (default: from the config)")
    p.add_argument("--config", default=None, help="YAML config file (also ATP_CONFIG)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per call (10)")
    return p


def parser() -> argparse.ArgumentParser:
    common = _common()
    root = argparse.ArgumentParser(prog="atp", description="talk to a running atp server")
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    enq = commands.add_parser("enqueue", parents=[common], help="submit a task")
    enq.add_argument("topic")
    enq.add_argument("payload", help="the payload text; '-' reads it from stdin")
    when = enq.add_mutually_exclusive_group()
    when.add_argument("--delay", type=duration_ms, help="run after this long: 10s, 1500ms, 2m")
    when.add_argument("--at", type=when_ms, help="run at: ISO 8601 time or epoch ms")
    enq.add_argument("--id", default=None, help="idempotency id")
    enq.add_argument("--max-retries", dest="max_retries", type=count, default=None)
    enq.set_defaults(run=cmd_enqueue)

    _task_commands(commands, common)
    _dlq_commands(commands, common)

    stats = commands.add_parser("stats", parents=[common], help="queue statistics")
    stats.add_argument("topics", nargs="*", help="topics (default: all)")
    stats.set_defaults(run=cmd_stats)
    return root


def _task_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    task = commands.add_parser("task", help="inspect or cancel one task")
    verbs = task.add_subparsers(dest="verb", required=True, metavar="VERB")
    get = verbs.add_parser("get", parents=[common], help="show a task")
    get.add_argument("id")
    get.set_defaults(run=cmd_task_get)
    cancel = verbs.add_parser("cancel", parents=[common], help="delete a pending task")
    cancel.add_argument("id")
    cancel.set_defaults(run=cmd_task_cancel)


def _dlq_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    dlq = commands.add_parser("dlq", help="the dead-letter queue of a topic")
    verbs = dlq.add_subparsers(dest="verb", required=True, metavar="VERB")
    ls = verbs.add_parser("list", parents=[common], help="list dead letters, oldest first")
    ls.add_argument("topic")
    ls.add_argument("--limit", type=count, default=100)
    ls.add_argument("--cursor", default="")
    ls.set_defaults(run=cmd_dlq_list)
    for verb, run, what in (
        ("requeue", cmd_dlq_requeue, "put dead letters back in the queue, due now"),
        ("purge", cmd_dlq_purge, "remove dead letters for good"),
    ):
        p = verbs.add_parser(verb, parents=[common], help=what)
        p.add_argument("topic")
        p.add_argument("ids", nargs="*", help="task ids (default: all of the topic's)")
        p.set_defaults(run=run)


# -- entry -------------------------------------------------------------------------------


def run_command(argv: list[str]) -> int:
    if argv[:1] == ["schedule"]:
        return run_schedule(argv[1:])
    try:
        args = parser().parse_args(argv)
    except SystemExit as exc:  # usage errors (2) and --help (0), as argparse decides
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    from appliance.client import Client, Tls, status_name

    try:
        settings = config.load(args.config)
        tls = Tls.from_settings(settings)
        address = args.addr or settings.api_target
        token = local_token(settings) or None
        with Client(address, token=token, tls=tls, timeout=args.timeout) as c:
            args.run(c, args)
    except ConfigError as exc:
        print(f"atp: bad config: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except AtpError as exc:
        print(f"atp: {status_name(exc)}: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE if _unreachable(exc, status_name(exc)) else EXIT_REFUSED
    return 0


def run_schedule(argv: list[str]) -> int:
    """`atp schedule ...` (appliance/scheduler/cli.py), with this CLI's --addr and --config."""
    from appliance.client import Tls
    from appliance.scheduler.cli import run_schedule_command

    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--addr", default=None)
    pre.add_argument("--config", default=None)
    ns, rest = pre.parse_known_args(argv)
    try:
        settings = config.load(ns.config)
        tls = Tls.from_settings(settings)
    except ConfigError as exc:
        print(f"atp: bad config: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    address = ns.addr or settings.api_target
    return run_schedule_command(rest, address, token=local_token(settings) or None, tls=tls)


def _unreachable(exc: AtpError, status: str) -> bool:
    return isinstance(exc, Unavailable) or status == "DEADLINE_EXCEEDED"


# -- commands ----------------------------------------------------------------------------


def cmd_enqueue(client: Client, args: argparse.Namespace) -> None:
    payload = sys.stdin.read() if args.payload == "-" else args.payload
    task_id = client.enqueue(
        args.topic,
        payload,
        delay_ms=args.delay,
        at=args.at,
        id=args.id,
        max_retries=args.max_retries,
    )
    _emit(args, {"id": task_id}, task_id)


def cmd_task_get(client: Client, args: argparse.Namespace) -> None:
    task = client.get_task(args.id)
    _emit(args, _task_json(task), _task_text(task))


def cmd_task_cancel(client: Client, args: argparse.Namespace) -> None:
    client.cancel(args.id)
    _emit(args, {"id": args.id, "canceled": True}, f"canceled {args.id}")


def cmd_dlq_list(client: Client, args: argparse.Namespace) -> None:
    page = client.list_dead_letters(args.topic, args.limit, args.cursor)
    data = {
        "dead_letters": [{**_task_json(d.task), "dead_at_ms": d.dead_at_ms} for d in page.letters],
        "next_cursor": page.next_cursor,
    }
    rows = [
        (d.task.id, _time(d.dead_at_ms), str(d.task.attempt), _one_line(d.task.last_error, 60))
        for d in page.letters
    ]
    text = _table(("ID", "DEAD AT", "ATTEMPTS", "LAST ERROR"), rows)
    if page.next_cursor:
        text += f"\nmore: --cursor {page.next_cursor}"
    _emit(args, data, text)


def cmd_dlq_requeue(client: Client, args: argparse.Namespace) -> None:
    n = client.requeue_dead_letters(args.topic, args.ids)
    _emit(args, {"requeued": n}, f"requeued {n}")


def cmd_dlq_purge(client: Client, args: argparse.Namespace) -> None:
    n = client.purge_dead_letters(args.topic, args.ids)
    _emit(args, {"purged": n}, f"purged {n}")


def cmd_stats(client: Client, args: argparse.Namespace) -> None:
    stats = client.stats(args.topics)
    data = {"now_ms": stats.now_ms, "topics": [dataclasses.asdict(s) for s in stats.topics]}
    rows = [
        (s.topic, str(s.pending), str(s.due), str(s.running), str(s.dead),
         _lag(stats.now_ms, s.oldest_due_ms))
        for s in stats.topics
    ]  # fmt: skip
    _emit(args, data, _table(("TOPIC", "PENDING", "DUE", "RUNNING", "DEAD", "LAG"), rows))


# -- output ------------------------------------------------------------------------------


def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, sort_keys=True) if args.json else text)


def _task_json(task: Task) -> dict[str, Any]:
    data = dataclasses.asdict(task)
    data["state"] = str(task.state)
    data["retry_count"] = task.retry_count
    return data


def _task_text(task: Task) -> str:
    lines = [
        ("id", task.id),
        ("topic", task.topic),
        ("state", str(task.state)),
        ("due", _time(task.execute_time_ms)),
        ("created", _time(task.created_at_ms)),
        ("attempt", f"{task.attempt} (max retries {task.max_retries})"),
        ("lease until", _time(task.lease_deadline_ms) if task.lease_deadline_ms else ""),
        ("last error", _one_line(task.last_error, 200)),
        ("payload", task.payload),
    ]
    return "\n".join(f"{name + ':':<12} {value}".rstrip() for name, value in lines if value != "")


def _time(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000).astimezone().isoformat(timespec="milliseconds")


def _lag(now_ms: int, oldest_due_ms: int) -> str:
    return f"{(now_ms - oldest_due_ms) / 1000:.1f}s" if oldest_due_ms else "-"


def _one_line(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    if not rows:
        return "(none)"
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in (header, *rows)
    )
