"""`atp schedule create|update|pause|resume|delete|get|list|status` over gRPC.

`add_verbs(parser, common)` puts the verbs under `atp schedule` in the one `atp` parser
(appliance/commands.py, whose common flags --addr, --config, --token, --timeout and --json every
verb takes); `run_schedule_command(argv, addr)` is the same command on its own (argv after the
word `schedule`) and returns the exit code: 0 done, 1 refused by the server (the message names
the status and the field), 2 bad usage. Lives beside the other commands (commands.py) and
calls the SDK's schedule calls (Client.create_schedule, ...), so it imports neither grpc nor the
store nor redis.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO, cast

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor

from appliance import times
from appliance.client import Tls, common
from appliance.client.sync import Client
from appliance.commands import UsageError, common_flags
from appliance.errors import AtpError, InvalidArgument
from appliance.proto import queue_pb2 as pb
from appliance.scheduler.definitions import Misfire, duration_ms, instant_ms, misfire_policy

EXIT_REFUSED = 1
EXIT_USAGE = 2
MISFIRE_TO_PB = {Misfire.SKIP: pb.SKIP, Misfire.RUN_ONCE: pb.RUN_ONCE}
VERBS = {
    "create": "create a schedule (one of --topic and --workflow, and one of --cron and --every "
    "are required)",
    "update": "change a schedule: the flags given replace those fields",
    "pause": "stop a schedule firing until it is resumed",
    "resume": "let a paused schedule fire again",
    "delete": "delete a schedule (its tasks already enqueued stay)",
    "get": "show a schedule with its next and last fire times",
    "list": "list schedules, with their next and last fire times",
    "status": "which scheduler leads, its lease, and the ticks fired",
    "fire": "fire one tick now, besides the timetable (the leader enqueues it exactly once)",
}
ID_HELP = "The schedule's id: 1-100 of [A-Za-z0-9._:@/+=-]."


def add_verbs(schedule: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    """The verbs under `schedule`; each takes the `common` flags and runs with `run`."""
    sub = schedule.add_subparsers(dest="verb", required=True, metavar="VERB")

    def verb(name: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=VERBS[name], description=VERBS[name])
        p.set_defaults(run=run_verb, schedule_verb=name)
        return p

    for name in ("create", "update"):
        cmd = verb(name)
        cmd.add_argument("id", help=ID_HELP)
        _definition_flags(cmd, required=name == "create")
    for name in ("pause", "resume", "delete", "get", "fire"):
        verb(name).add_argument("id", help=ID_HELP)
    verb("list").add_argument(
        "--topic", default="", help="Only the schedules of this topic (default: all)."
    )
    verb("status")


def parser() -> argparse.ArgumentParser:
    """`atp schedule` on its own (what run_schedule_command parses)."""
    p = argparse.ArgumentParser(prog="atp schedule", description="manage cron/interval schedules")
    add_verbs(p, common_flags())
    return p


def _definition_flags(cmd: argparse.ArgumentParser, required: bool) -> None:
    what = cmd.add_mutually_exclusive_group(required=required)
    what.add_argument("--topic", help="Topic each tick's task goes to.")
    what.add_argument(
        "--workflow",
        metavar="NAME",
        help="Each tick starts a run of this workflow (run id sched.<id>.<tick ms>) instead "
        "of a task; --input is the run's input.",
    )
    when = cmd.add_mutually_exclusive_group(required=required)
    when.add_argument(
        "--cron",
        metavar="EXPR",
        help="Cron expression: 5 fields, or 6 with leading seconds (quote it).",
    )
    when.add_argument(
        "--every",
        metavar="DURATION",
        help="Fixed interval instead of cron: 500ms, 30s, 5m, 2h, 1d (a unit is required).",
    )
    cmd.add_argument(
        "--timezone",
        metavar="ZONE",
        help="IANA zone of --cron and of zone-less --start/--end, e.g. Europe/Berlin "
        "(default UTC).",
    )
    cmd.add_argument("--payload", help="Payload text of each tick's task.")
    cmd.add_argument("--input", help="A --workflow schedule's run input (JSON or text).")
    cmd.add_argument(
        "--payload-file", metavar="FILE", help="Read the payload from this file ('-': stdin)."
    )
    cmd.add_argument(
        "--max-retries",
        type=int,
        metavar="N",
        help="Retries of each tick's task (default: the server's default_max_retries).",
    )
    cmd.add_argument(
        "--misfire",
        metavar="POLICY",
        help="Ticks missed in an outage: skip them (skip, the default) or run one (run_once).",
    )
    cmd.add_argument(
        "--jitter",
        metavar="DURATION",
        help="Delay each tick's task by a stable random 0..this, e.g. 30s (default none).",
    )
    cmd.add_argument(
        "--start",
        metavar="TIME",
        help="No tick before this: ISO 8601 (without a zone: --timezone) or epoch ms.",
    )
    cmd.add_argument(
        "--end",
        metavar="TIME",
        help="No tick after this: ISO 8601 (without a zone: --timezone) or epoch ms.",
    )
    cmd.add_argument(
        "--paused",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="Create or keep the schedule paused (--no-paused: active).",
    )


def apply_flags(ns: argparse.Namespace, s: pb.Schedule) -> pb.Schedule:
    """The schedule `s` with every given flag applied (update merges over the current one)."""
    try:
        return _merge(ns, s)
    except InvalidArgument as exc:
        raise UsageError(str(exc)) from exc


def _merge(ns: argparse.Namespace, s: pb.Schedule) -> pb.Schedule:
    out = pb.Schedule()
    out.CopyFrom(s)
    out.id = ns.id
    if ns.topic is not None:
        out.topic, out.workflow = ns.topic, ""
    if ns.workflow is not None:
        out.topic, out.workflow = "", ns.workflow
    _merge_when(ns, out)
    payload = _payload(ns)
    if payload is not None:
        out.payload = payload
    if ns.max_retries is not None:
        out.max_retries = ns.max_retries
    if ns.misfire is not None:
        out.misfire_policy = MISFIRE_TO_PB[misfire_policy(ns.misfire, "--misfire")]
    if ns.jitter is not None:
        out.jitter_ms = duration_ms(ns.jitter, "--jitter")
    if ns.paused is not None:
        out.paused = ns.paused
    return out


def _merge_when(ns: argparse.Namespace, out: pb.Schedule) -> None:
    """The timing flags: cron or interval (one replaces the other), zone, window."""
    if ns.cron is not None:
        out.cron, out.interval_ms = ns.cron, 0
    if ns.every is not None:
        out.cron, out.timezone, out.interval_ms = "", "", duration_ms(ns.every, "--every")
    if ns.timezone is not None:
        out.timezone = ns.timezone
    if ns.start is not None:
        out.start_ms = instant_ms(ns.start, out.timezone, "--start")
    if ns.end is not None:
        out.end_ms = instant_ms(ns.end, out.timezone, "--end")


def _payload(ns: argparse.Namespace) -> str | None:
    if sum(v is not None for v in (ns.payload, ns.payload_file, ns.input)) > 1:
        raise InvalidArgument("--payload, --payload-file and --input: give one of them")
    if ns.input is not None:
        return cast(str, ns.input)
    if ns.payload_file is None:
        return cast(str | None, ns.payload)
    if ns.payload_file == "-":
        return sys.stdin.read()
    try:
        with open(ns.payload_file, encoding="utf-8") as f:
            return f.read()
    except OSError as exc:
        raise InvalidArgument(f"--payload-file: {exc.strerror}: {ns.payload_file}") from exc


def run_schedule_command(
    argv: list[str],
    addr: str,
    *,
    token: str | None = None,
    tls: Tls | None = None,
    timeout: float = common.DEFAULT_TIMEOUT_S,
    metadata: Sequence[tuple[str, str]] = (),
    out: TextIO | None = None,
) -> int:
    """`atp schedule <argv...>` against the API at `addr` (bearer `token` and `tls` as for the
    SDK's Client; --addr, --token and --timeout in argv win); returns the exit code."""
    try:
        ns = parser().parse_args(times.join_negative_values(argv))
    except SystemExit as exc:  # argparse printed the help (0) or the usage and the error
        return 0 if exc.code == 0 else EXIT_USAGE
    if ns.timeout is not None:
        timeout = ns.timeout / 1000
    try:
        with Client(
            ns.addr or addr, token=ns.token or token, tls=tls, timeout=timeout, metadata=metadata
        ) as client:
            run_verb(client, ns, out)
    except UsageError as exc:
        print(f"atp schedule: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except AtpError as exc:
        print(f"atp schedule: {common.status_name(exc)}: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    return 0


def run_verb(client: Client, ns: argparse.Namespace, out: TextIO | None = None) -> None:
    """Run the parsed verb on `client` (raises UsageError or the SDK's errors)."""
    COMMANDS[ns.schedule_verb](client, ns, out or sys.stdout)


# -- the subcommands ---------------------------------------------------------------------------


def _create(client: Client, ns: argparse.Namespace, out: TextIO) -> None:
    _show(client.create_schedule(apply_flags(ns, pb.Schedule())), ns, out)


def _update(client: Client, ns: argparse.Namespace, out: TextIO) -> None:
    schedule = apply_flags(ns, client.get_schedule(ns.id))
    _show(client.update_schedule(schedule), ns, out)


def _by_id(verb: str) -> Callable[[Client, argparse.Namespace, TextIO], None]:
    """get, pause, resume or delete: the SDK's <verb>_schedule(id)."""

    def run(client: Client, ns: argparse.Namespace, out: TextIO) -> None:
        reply = getattr(client, f"{verb}_schedule")(ns.id)
        if verb != "delete":
            _show(reply, ns, out)
        elif ns.json:
            print(json.dumps({"id": ns.id, "deleted": True}, sort_keys=True), file=out)
        else:
            print(f"deleted {ns.id}", file=out)

    return run


def _fire(client: Client, ns: argparse.Namespace, out: TextIO) -> None:
    fired = client.fire_schedule(ns.id)
    if ns.json:
        data = {"id": ns.id, "task_id": fired.task_id, "fire_time_ms": fired.fire_time_ms}
        print(json.dumps(data, sort_keys=True), file=out)
    else:
        print(f"fired {ns.id} at {times.iso(fired.fire_time_ms)}: task {fired.task_id}", file=out)


def _list(client: Client, ns: argparse.Namespace, out: TextIO) -> None:
    schedules = client.list_schedules(ns.topic)
    if ns.json:
        data = {"schedules": [as_dict(s) for s in schedules]}
        print(json.dumps(data, sort_keys=True), file=out)
        return
    rows = [("ID", "TOPIC", "WHEN", "NEXT", "LAST", "STATE")]
    for s in schedules:
        what = s.topic or f"workflow {s.workflow}"
        rows.append(
            (s.id, what, _when(s), _time(s.next_fire_time_ms), _time(s.last_fire_time_ms),
             _state(s))
        )  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip(), file=out)


def _status(client: Client, ns: argparse.Namespace, out: TextIO) -> None:
    s = client.scheduler_status()
    if ns.json:
        print(json.dumps(as_dict(s), sort_keys=True), file=out)
        return
    print(f"leader:         {s.leader_id or '(none)'}", file=out)
    print(f"fencing token:  {s.fencing_token}", file=out)
    print(f"lease expires:  {_time(s.lease_expires_ms)}", file=out)
    print(f"ticks fired:    {s.ticks_fired}", file=out)


_INT64 = {FieldDescriptor.CPPTYPE_INT64, FieldDescriptor.CPPTYPE_UINT64}


def as_dict(message: Any) -> dict[str, Any]:
    """A message's fields by their proto names, every field present; int64 as JSON numbers
    (protobuf's JSON mapping writes them as strings)."""
    data: dict[str, Any] = json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    for field in message.DESCRIPTOR.fields:
        if field.cpp_type in _INT64 and field.name in data:
            data[field.name] = int(data[field.name])
    return data


def _show(s: pb.Schedule, ns: argparse.Namespace, out: TextIO) -> None:
    if ns.json:
        print(json.dumps(as_dict(s), sort_keys=True), file=out)
        return
    window = " ".join(
        part
        for part in (
            f"from {_time(s.start_ms)}" if s.start_ms else "",
            f"until {_time(s.end_ms)}" if s.end_ms else "",
        )
        if part
    )
    lines = [
        ("id", s.id),
        ("topic", s.topic),
        ("workflow", s.workflow),
        ("when", _when(s)),
        ("window", window),
        ("jitter", times.duration_text(s.jitter_ms) if s.jitter_ms else ""),
        ("misfire", pb.MisfirePolicy.Name(s.misfire_policy)),
        ("max retries", str(s.max_retries) if s.HasField("max_retries") else "server default"),
        ("state", _state(s)),
        ("next fire", _time(s.next_fire_time_ms)),
        ("last fire", _time(s.last_fire_time_ms)),
        ("source", s.source),
        ("input" if s.workflow else "payload", s.payload),
    ]
    for name, value in lines:
        if value:
            print(f"{name + ':':<12} {value}", file=out)


def _when(s: pb.Schedule) -> str:
    if s.cron:
        return f"{s.cron} {s.timezone}".strip()
    return f"every {times.duration_text(s.interval_ms)}"


def _state(s: pb.Schedule) -> str:
    return "paused" if s.paused else ("done" if not s.next_fire_time_ms else "active")


def _time(ms: int) -> str:
    return times.iso(ms) if ms else "-"


COMMANDS: dict[str, Callable[[Client, argparse.Namespace, TextIO], None]] = {
    "create": _create,
    "update": _update,
    "pause": _by_id("pause"),
    "resume": _by_id("resume"),
    "delete": _by_id("delete"),
    "get": _by_id("get"),
    "list": _list,
    "status": _status,
    "fire": _fire,
}
