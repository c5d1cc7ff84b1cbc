"""`atp <command>`: enqueue, task get/cancel, dlq list/requeue/purge, stats and schedule against
a running server (through the SDK's blocking Client), and the local token and healthcheck.

Owns argument parsing, output (human-readable, or one JSON object with `--json`) and exit codes:
0 done, 1 the server refused, 2 usage error, 69 server unreachable, 78 bad config. Every
command that talks to the server takes --addr, --config, --token, --timeout and --json; address,
token and client TLS come from `appliance.config.load()` (file < ATP_* env < those flags).
Durations and times are read and printed by appliance.times. Must not import grpc, redis or the
store at module level (the schedule verbs come from appliance/schedule_commands.py when parsing).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from appliance import config, times
from appliance.auth import local_token
from appliance.errors import EXIT_CONFIG, AtpError, ConfigError, Unavailable
from appliance.model import Task

if TYPE_CHECKING:
    from appliance.client import Client

EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 69  # EX_UNAVAILABLE
DEFAULT_TIMEOUT_MS = 10_000

SUMMARIES = {
    "enqueue": "submit a task: due now, after --delay, or --at a time",
    "task": "show (get), cancel (cancel) or show the event history (history) of one task",
    "dlq": "list, requeue or purge the dead letters of a topic",
    "stats": "pending, due, running and dead tasks per topic, and the lag",
    "schedule": "create, update, pause, resume, delete, get or list cron/interval schedules",
    "workflow": "put, get, list or delete workflows (DAGs of steps; docs/adr/0010)",
    "run": "start, get, list, cancel or signal workflow runs",
    "token": "make an access token and its config entry (new), or hash one (hash)",
    "healthcheck": "exit 0 when the local supervisor's /healthz answers (the container probe)",
}
"""Every command with its one line, in the order `atp --help` lists them."""


class UsageError(AtpError):
    """A flag's value cannot be used (found before anything is sent): exit 2."""


# -- argument types ----------------------------------------------------------------------


def duration(text: str) -> int:
    """Milliseconds from a duration with a unit: 10s, 1500ms, 2m, 1h, 1d (appliance.times)."""
    try:
        return times.duration_ms(text, bare_ms=False)
    except times.BadValue as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def when_ms(text: str) -> int:
    """Epoch milliseconds, or an ISO 8601 time (without a zone: this machine's local time)."""
    try:
        return times.instant_ms(text, None)
    except times.BadValue as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 0")
    return int(text)


# -- parser ------------------------------------------------------------------------------


def common_flags() -> argparse.ArgumentParser:
    """The flags of every command that talks to the server."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument(
        "--addr",
        metavar="HOST:PORT",
        help="The server's gRPC address (default: server_addr, else grpc_addr, from the config).",
    )
    p.add_argument(
        "--config",
        metavar="FILE",
        help="YAML config file to take the address, token and TLS settings from (also ATP_CONFIG).",
    )
    p.add_argument(
        "--token",
        metavar="TOKEN",
        help="Bearer token to present (also ATP_TOKEN; default: the admin token the server "
        "generated in the data dir, if any).",
    )
    p.add_argument(
        "--timeout",
        type=duration,
        metavar="DURATION",
        help="How long each call may take, e.g. 10s or 500ms (default 10s).",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="Print one JSON object (times as epoch-ms numbers) instead of text.",
    )
    return p


def paging_flags(cmd: argparse.ArgumentParser, default: int, limit_help: str) -> None:
    """--limit N and --cursor C of a command that lists page by page."""
    cmd.add_argument("--limit", type=count, default=default, metavar="N", help=limit_help)
    cmd.add_argument(
        "--cursor",
        default="",
        help="Continue after this cursor (the previous page prints it as 'more: --cursor ...').",
    )


def parser(schedule_verbs: bool = True) -> argparse.ArgumentParser:
    """The `atp COMMAND` parser; without `schedule_verbs` the schedule command is listed but
    its verbs (which import the generated gRPC code) are left out, for a quicker start."""
    common = common_flags()
    root = argparse.ArgumentParser(
        prog="atp",
        description="Talk to a running atp server; `atp --help` also shows how to run one.",
    )
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, parents: Sequence[argparse.ArgumentParser] = ()) -> Any:
        return commands.add_parser(
            name, parents=list(parents), help=SUMMARIES[name], description=SUMMARIES[name]
        )

    _enqueue_command(command("enqueue", [common]))
    _task_commands(command("task"), common)
    _dlq_commands(command("dlq"), common)
    stats = command("stats", [common])
    stats.add_argument("topics", nargs="*", help="Topics to show (default: every topic).")
    paging_flags(
        stats, 0, "Most topics per page when listing every topic (default: the server's, 1000)."
    )
    stats.set_defaults(run=cmd_stats)
    schedule = command("schedule")
    if schedule_verbs:
        from appliance.schedule_commands import add_verbs

        add_verbs(schedule, common)
    workflow, run = command("workflow"), command("run")
    if schedule_verbs:
        from appliance.workflow_commands import add_run_verbs, add_workflow_verbs

        add_workflow_verbs(workflow, common)
        add_run_verbs(run, common)
    _token_commands(command("token"))
    _healthcheck_command(command("healthcheck"))
    return root


def _enqueue_command(enq: argparse.ArgumentParser) -> None:
    enq.add_argument("topic", help="Topic to put the task on (1-128 of [A-Za-z0-9._:-]).")
    enq.add_argument("payload", help="The payload text; '-' reads it from stdin.")
    when = enq.add_mutually_exclusive_group()
    when.add_argument(
        "--delay",
        type=duration,
        metavar="DURATION",
        help="Run after this long: 10s, 1500ms, 2m, 1h (a unit is required).",
    )
    when.add_argument(
        "--at",
        type=when_ms,
        metavar="TIME",
        help="Run at this time: ISO 8601 (without a zone: local time) or epoch ms.",
    )
    enq.add_argument(
        "--id",
        default=None,
        help="Idempotency id: the same id again creates nothing and is reported as a duplicate.",
    )
    enq.add_argument(
        "--max-retries",
        dest="max_retries",
        type=count,
        default=None,
        metavar="N",
        help="Retries before the task is dead-lettered (default: the server's, 3).",
    )
    enq.set_defaults(run=cmd_enqueue)


def _task_commands(task: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    verbs = task.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb, run, what in (
        ("get", cmd_task_get, "show a task: state, times, attempts, last error, payload"),
        ("cancel", cmd_task_cancel, "delete a pending task (a running one cannot be canceled)"),
        ("history", cmd_task_history, "a task's events: enqueue, leases, acks, nacks, ..."),
    ):
        p = verbs.add_parser(verb, parents=[common], help=what, description=what)
        p.add_argument("id", help="The task's id, as enqueue printed it.")
        p.add_argument(
            "--topic",
            default="",
            help="The task's topic, when the same client-given id is in several of yours.",
        )
        p.set_defaults(run=run)


def _dlq_commands(dlq: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    verbs = dlq.add_subparsers(dest="verb", required=True, metavar="VERB")
    what = "list a topic's dead letters, oldest first"
    ls = verbs.add_parser("list", parents=[common], help=what, description=what)
    ls.add_argument("topic", help="The topic whose dead letters to list.")
    paging_flags(ls, 100, "Most dead letters to show (default 100, at most 1000).")
    ls.set_defaults(run=cmd_dlq_list)
    for verb, run, what in (
        ("requeue", cmd_dlq_requeue, "put dead letters back in the queue, due now"),
        ("purge", cmd_dlq_purge, "remove dead letters for good"),
    ):
        p = verbs.add_parser(verb, parents=[common], help=what, description=what)
        p.add_argument("topic", help="The topic whose dead letters to move.")
        p.add_argument("ids", nargs="*", help="Task ids (default: all of the topic's).")
        p.set_defaults(run=run)


def _token_commands(token: argparse.ArgumentParser) -> None:
    from appliance import auth

    verbs = token.add_subparsers(dest="verb", required=True, metavar="VERB")
    what = "generate a token and print its config entry"
    new = verbs.add_parser("new", help=what, description=what)
    new.add_argument(
        "--role",
        choices=auth.TOKEN_ROLES,
        default="producer",
        help="What the token may do (default producer).",
    )
    new.add_argument("--name", default="", help="Name in the config entry (default <role>-token).")
    new.add_argument(
        "--topics",
        default="",
        help="Comma list of the topics the token is limited to (default: every topic).",
    )
    new.add_argument("--json", action="store_true", help="Print one JSON object instead of text.")
    new.set_defaults(local=cmd_token_new)
    what = "print the hash of a token, to put in the config's tokens"
    hashing = verbs.add_parser("hash", help=what, description=what)
    hashing.add_argument(
        "token", nargs="?", help="The token to hash (default: --token, else one line of stdin)."
    )
    hashing.add_argument(
        "--token", dest="token_flag", metavar="TOKEN", help="The token to hash, as a flag."
    )
    hashing.add_argument(
        "--json", action="store_true", help="Print one JSON object instead of text."
    )
    hashing.set_defaults(local=cmd_token_hash)


def _healthcheck_command(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--http-addr",
        dest="http_addr",
        metavar="HOST:PORT",
        help="The supervisor's HTTP address (default: http_addr from the config).",
    )
    p.add_argument(
        "--path",
        default="/healthz",
        help="/healthz (alive) or /readyz (ready to serve) (default /healthz).",
    )
    p.add_argument(
        "--config", metavar="FILE", help="YAML config file to take http_addr from (ATP_CONFIG)."
    )
    p.add_argument(
        "--timeout",
        type=duration,
        default=3000,
        metavar="DURATION",
        help="How long to wait for the answer (default 3s).",
    )
    p.add_argument("--json", action="store_true", help="Print one JSON object with the outcome.")
    p.set_defaults(local=cmd_healthcheck)


# -- entry -------------------------------------------------------------------------------


def run_command(argv: list[str]) -> int:
    try:
        verbs = argv[0] in ("schedule", "workflow", "run")  # the verbs import the gRPC code
        args = parser(verbs).parse_args(times.join_negative_values(argv))
    except SystemExit as exc:  # usage errors (2) and --help (0), as argparse decides
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    local: Callable[[argparse.Namespace], int] | None = getattr(args, "local", None)
    if local is not None:
        return local(args)
    from appliance.client import Client, Tls, status_name

    try:
        settings = config.load(args.config, flags={"token": args.token})
        tls = Tls.from_settings(settings)
        address = args.addr or settings.api_target
        token = local_token(settings) or None
        timeout_ms = DEFAULT_TIMEOUT_MS if args.timeout is None else args.timeout
        with Client(address, token=token, tls=tls, timeout=timeout_ms / 1000) as c:
            args.run(c, args)
    except ConfigError as exc:
        print(f"atp: bad config: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except UsageError as exc:
        print(f"atp {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except AtpError as exc:
        print(f"atp: {status_name(exc)}: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE if _unreachable(exc, status_name(exc)) else EXIT_REFUSED
    return 0


def _unreachable(exc: AtpError, status: str) -> bool:
    return isinstance(exc, Unavailable) or status == "DEADLINE_EXCEEDED"


# -- commands ----------------------------------------------------------------------------


def cmd_enqueue(client: Client, args: argparse.Namespace) -> None:
    from appliance.client import common

    payload = sys.stdin.read() if args.payload == "-" else args.payload
    call = common.enqueue_outcome(
        args.topic, payload, None, args.delay, args.at, args.id, args.max_retries
    )
    # The SDK's Client.enqueue() returns only the id; the outcome says whether it was new.
    done = client._run(call)
    if done.duplicate and not args.json:
        print(
            f"atp: {done.id} existed already: nothing was created (duplicate id)", file=sys.stderr
        )
    _emit(args, {"id": done.id, "duplicate": done.duplicate}, done.id)


def cmd_task_get(client: Client, args: argparse.Namespace) -> None:
    task = client.get_task(args.id, args.topic)
    _emit(args, _task_json(task), _task_text(task))


def cmd_task_cancel(client: Client, args: argparse.Namespace) -> None:
    client.cancel(args.id, args.topic)
    _emit(args, {"id": args.id, "canceled": True}, f"canceled {args.id}")


def cmd_task_history(client: Client, args: argparse.Namespace) -> None:
    history = client.task_history(args.id, args.topic)
    data = {
        "id": history.id,
        "topic": history.topic,
        "state": str(history.state),
        "events": [dataclasses.asdict(e) for e in history.events],
    }
    rows = [(times.iso(e.time_ms), e.kind, _one_line(e.detail, 80)) for e in history.events]
    head = f"{history.id} ({history.topic}, {history.state})\n"
    _emit(args, data, head + _table(("TIME", "EVENT", "DETAIL"), rows))


def cmd_dlq_list(client: Client, args: argparse.Namespace) -> None:
    page = client.list_dead_letters(args.topic, args.limit, args.cursor)
    data = {
        "dead_letters": [{**_task_json(d.task), "dead_at_ms": d.dead_at_ms} for d in page.letters],
        "next_cursor": page.next_cursor,
    }
    rows = [
        (d.task.id, times.iso(d.dead_at_ms), str(d.task.attempt), _one_line(d.task.last_error, 60))
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
    stats = client.stats(args.topics, args.limit, args.cursor)
    data = {
        "now_ms": stats.now_ms,
        "topics": [dataclasses.asdict(s) for s in stats.topics],
        "next_cursor": stats.next_page_token,
    }
    rows = [
        (s.topic, str(s.pending), str(s.due), str(s.running), str(s.dead),
         _lag(stats.now_ms, s.oldest_due_ms))
        for s in stats.topics
    ]  # fmt: skip
    text = _table(("TOPIC", "PENDING", "DUE", "RUNNING", "DEAD", "LAG"), rows)
    if stats.next_page_token:
        text += f"\nmore: --cursor {stats.next_page_token}"
    _emit(args, data, text)


def cmd_token_new(args: argparse.Namespace) -> int:
    from appliance import auth

    token = auth.new_token()
    entry: dict[str, Any] = {
        "name": args.name or f"{args.role}-token",
        "hash": auth.hash_token(token),
        "role": args.role,
    }
    if args.topics:
        entry["topics"] = [t for t in args.topics.split(",") if t]
    text = "\n".join(
        [
            f"token (give it to the client; it is not stored anywhere): {token}",
            "config entry (under `tokens:`):",
            "  - " + "\n    ".join(f"{k}: {v}" for k, v in entry.items()),
        ]
    )
    _emit(args, {"token": token, "entry": entry}, text)
    return 0


def cmd_token_hash(args: argparse.Namespace) -> int:
    from appliance import auth

    token = args.token or args.token_flag or sys.stdin.readline().strip()
    if not token:
        print("atp token hash: no token given", file=sys.stderr)
        return EXIT_USAGE
    digest = auth.hash_token(token)
    _emit(args, {"hash": digest}, digest)
    return 0


def cmd_healthcheck(args: argparse.Namespace) -> int:
    """0 when the supervisor's /healthz (or --path) answers 200."""
    import urllib.request

    try:
        settings = config.load(args.config, flags={"http_addr": args.http_addr})
    except ConfigError as exc:
        print(f"atp: bad config: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    host, _, port = settings.http_addr.rpartition(":")
    host = "127.0.0.1" if host in {"", "0.0.0.0", "[::]", "::"} else host
    url = f"http://{host}:{port}{args.path}"
    try:
        with urllib.request.urlopen(url, timeout=args.timeout / 1000) as reply:
            status = int(reply.status)
    except OSError as exc:
        if args.json:
            print(json.dumps({"url": url, "ok": False, "error": str(exc)}, sort_keys=True))
        else:
            print(f"atp: healthcheck {host}:{port}{args.path}: {exc}", file=sys.stderr)
        return 1
    _emit(args, {"url": url, "ok": status == 200, "status": status}, f"{url}: {status}")
    return 0 if status == 200 else 1


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
        ("due", times.iso(task.execute_time_ms)),
        ("created", times.iso(task.created_at_ms)),
        ("attempt", f"{task.attempt} (max retries {task.max_retries})"),
        ("lease until", times.iso(task.lease_deadline_ms) if task.lease_deadline_ms else ""),
        ("last error", _one_line(task.last_error, 200)),
        ("payload", task.payload),
    ]
    return "\n".join(f"{name + ':':<12} {value}".rstrip() for name, value in lines if value != "")


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
