"""`atp schedule create|update|pause|resume|delete|get|list|status` over gRPC.

`run_schedule_command(argv, addr)` is the whole command (argv after the word `schedule`); it
returns the exit code: 0 done, 1 refused by the server (the message names the status and the
field), 2 bad usage. Speaks gRPC through the generated ScheduleService stub on the SDK's
channel and maps errors with the SDK, so it imports neither grpc nor the store nor redis.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO, cast

from google.protobuf import json_format

from appliance.api._proto import queue_pb2 as pb
from appliance.api._proto import queue_pb2_grpc as pb_grpc
from appliance.client import Tls, common
from appliance.client.sync import Client
from appliance.errors import AtpError, InvalidArgument
from appliance.scheduler.definitions import Misfire, duration_ms, instant_ms, misfire_policy

EXIT_REFUSED = 1
EXIT_USAGE = 2
MISFIRE_TO_PB = {Misfire.SKIP: pb.SKIP, Misfire.RUN_ONCE: pb.RUN_ONCE}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="atp schedule", description="manage cron/interval schedules")
    sub = p.add_subparsers(dest="command", required=True)
    for name, text in (("create", "create a schedule"), ("update", "change a schedule")):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("id")
        _definition_flags(cmd, required=name == "create")
    for name in ("pause", "resume", "delete", "get"):
        sub.add_parser(name, help=f"{name} a schedule").add_argument("id")
    listing = sub.add_parser("list", help="list schedules")
    listing.add_argument("--topic", default="")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    sub.add_parser("status", help="which scheduler leads, and ticks fired")
    return p


def _definition_flags(cmd: argparse.ArgumentParser, required: bool) -> None:
    cmd.add_argument("--topic", required=required)
    when = cmd.add_mutually_exclusive_group(required=required)
    when.add_argument("--cron", help="5 fields, or 6 with leading seconds (quote it)")
    when.add_argument("--every", help="fixed interval: 500ms, 30s, 5m, 2h, 1d")
    cmd.add_argument("--timezone", help="IANA zone of --cron, e.g. Europe/Berlin (default UTC)")
    cmd.add_argument("--payload", help="task payload text")
    cmd.add_argument("--payload-file", help="read the payload from this file ('-': stdin)")
    cmd.add_argument("--max-retries", type=int, help="default: the server's")
    cmd.add_argument("--misfire", help="after an outage: skip (default) or run_once")
    cmd.add_argument("--jitter", help="delay each tick's task by a stable 0..this")
    cmd.add_argument("--start", help="no tick before: ISO-8601 time or epoch ms")
    cmd.add_argument("--end", help="no tick after: ISO-8601 time or epoch ms")
    cmd.add_argument("--paused", action=argparse.BooleanOptionalAction, default=None)


class UsageError(InvalidArgument):
    """A flag's value cannot be used (found before anything is sent)."""


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
        out.topic = ns.topic
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
    if ns.payload is not None and ns.payload_file is not None:
        raise InvalidArgument("--payload and --payload-file: give one of them")
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
    SDK's Client); returns the exit code."""
    out = out or sys.stdout
    try:
        ns = parser().parse_args(argv)
    except SystemExit as exc:  # argparse printed the help (0) or the usage and the error
        return 0 if exc.code == 0 else EXIT_USAGE
    try:
        with Client(addr, token=token, tls=tls, timeout=timeout, metadata=metadata) as client:
            call = _Caller(client)
            COMMANDS[ns.command](call, ns, out)
    except UsageError as exc:
        print(f"atp schedule: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except AtpError as exc:
        print(f"atp schedule: {common.status_name(exc)}: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    return 0


class _Caller:
    """Calls ScheduleService RPCs on the SDK client's channel, raising the SDK's errors."""

    def __init__(self, client: Client) -> None:
        # The SDK has no schedule calls yet: reuse its channel (address, TLS, options) and
        # call metadata (the bearer token), so both speak to the server the same way.
        self._stub = pb_grpc.ScheduleServiceStub(client._channel)
        self._timeout = client.timeout
        self._metadata = client._metadata or None

    def __call__(self, rpc: str, request: Any) -> Any:
        try:
            return getattr(self._stub, rpc)(request, timeout=self._timeout, metadata=self._metadata)
        except Exception as err:  # grpc.RpcError (only api/ and client/ import grpc)
            if not callable(getattr(err, "code", None)):
                raise
            raise common.map_error(cast(Any, err)) from err


# -- the subcommands ---------------------------------------------------------------------------


def _create(call: _Caller, ns: argparse.Namespace, out: TextIO) -> None:
    schedule = apply_flags(ns, pb.Schedule())
    _show(call("CreateSchedule", pb.CreateScheduleRequest(schedule=schedule)), out)


def _update(call: _Caller, ns: argparse.Namespace, out: TextIO) -> None:
    current = call("GetSchedule", pb.ScheduleIdRequest(id=ns.id))
    schedule = apply_flags(ns, current)
    _show(call("UpdateSchedule", pb.UpdateScheduleRequest(schedule=schedule)), out)


def _by_id(rpc: str) -> Callable[[_Caller, argparse.Namespace, TextIO], None]:
    def run(call: _Caller, ns: argparse.Namespace, out: TextIO) -> None:
        reply = call(rpc, pb.ScheduleIdRequest(id=ns.id))
        if rpc == "DeleteSchedule":
            print(f"deleted {ns.id}", file=out)
        else:
            _show(reply, out)

    return run


def _list(call: _Caller, ns: argparse.Namespace, out: TextIO) -> None:
    reply = call("ListSchedules", pb.ListSchedulesRequest(topic=ns.topic))
    if ns.json:
        for s in reply.schedules:
            print(json.dumps(_as_dict(s)), file=out)
        return
    rows = [("ID", "TOPIC", "WHEN", "NEXT", "LAST", "STATE")]
    for s in reply.schedules:
        when = f"{s.cron} {s.timezone}".strip() if s.cron else f"every {s.interval_ms} ms"
        state = "paused" if s.paused else ("done" if not s.next_fire_time_ms else "active")
        rows.append(
            (s.id, s.topic, when, _time(s.next_fire_time_ms), _time(s.last_fire_time_ms), state)
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip(), file=out)


def _status(call: _Caller, ns: argparse.Namespace, out: TextIO) -> None:
    s = call("GetSchedulerStatus", pb.GetSchedulerStatusRequest())
    leader = s.leader_id or "(none)"
    print(f"leader:         {leader}", file=out)
    print(f"fencing token:  {s.fencing_token}", file=out)
    print(f"lease expires:  {_time(s.lease_expires_ms)}", file=out)
    print(f"ticks fired:    {s.ticks_fired}", file=out)


def _as_dict(s: pb.Schedule) -> dict[str, Any]:
    return json_format.MessageToDict(
        s, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def _show(s: pb.Schedule, out: TextIO) -> None:
    data = _as_dict(s)
    for key in ("next_fire_time_ms", "last_fire_time_ms"):
        data[key.replace("_ms", "")] = _time(int(data.get(key, 0)))
    print(json.dumps(data, indent=2), file=out)


def _time(ms: int) -> str:
    if not ms:
        return "-"
    moment = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


COMMANDS: dict[str, Callable[[_Caller, argparse.Namespace, TextIO], None]] = {
    "create": _create,
    "update": _update,
    "pause": _by_id("PauseSchedule"),
    "resume": _by_id("ResumeSchedule"),
    "delete": _by_id("DeleteSchedule"),
    "get": _by_id("GetSchedule"),
    "list": _list,
    "status": _status,
}
