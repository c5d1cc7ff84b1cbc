"""The schedule model: a validated `Definition` (what a user or the config file declares), the
stored `Schedule` (definition + next/last fire), their HASH field encoding, and the config
section's parser `from_config`.

Validation raises InvalidArgument (or TooLarge) naming the field, e.g. "schedule.cron: ...";
`from_config` turns those into ConfigError naming the item, e.g. "schedules[2].cron: ...".
Must not import the store, redis or grpc; uses only the stdlib, appliance foundations and cron.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from appliance import times, validation
from appliance.errors import ConfigError, InvalidArgument, TooLarge
from appliance.scheduler.cron import CronError, Timetable, check_cron, zone
from appliance.workflows.definitions import NAME_RE as WORKFLOW_NAME_RE

ID_RE = re.compile(r"[A-Za-z0-9._:@/+=-]{1,100}")  # "sched:<id>:<tick ms>" fits a 128-char task id
MIN_INTERVAL_MS = 100
MAX_JITTER_MS = 86_400_000
DEFAULT_PAYLOAD_MAX = 1024 * 1024
TASK_ID_PREFIX = "sched"
RUN_SCHEDULE_ID_RE = re.compile(r"[A-Za-z0-9_.-]{1,44}")  # "sched.<id>.<tick ms>": a run id


class Misfire(enum.StrEnum):
    """What a schedule does with ticks missed by more than the misfire grace (an outage)."""

    SKIP = "SKIP"  # drop them; the next future tick fires
    RUN_ONCE = "RUN_ONCE"  # one catch-up task now (for the latest missed tick), then go on


class Source(enum.StrEnum):
    API = "api"
    CONFIG = "config"


@dataclasses.dataclass(frozen=True, slots=True)
class Definition:
    """A schedule as declared. Exactly one of `cron` and `interval_ms` is set once checked."""

    id: str
    topic: str
    payload: str = ""
    cron: str = ""
    timezone: str = ""  # IANA zone of the cron expression; "" = UTC
    interval_ms: int = 0
    max_retries: int | None = None  # None: the server's default_max_retries
    misfire: Misfire = Misfire.SKIP
    jitter_ms: int = 0  # each tick's task is due at tick + a stable 0..jitter_ms
    start_ms: int = 0  # window: no tick before start_ms or after end_ms (0 = open)
    end_ms: int = 0
    paused: bool = False
    source: Source = Source.API
    workflow: str = ""  # each tick starts a run of this workflow (payload: its input), no task

    @property
    def timetable(self) -> Timetable:
        return Timetable(self.cron, self.timezone, self.interval_ms, self.start_ms, self.end_ms)

    def same_plan(self, other: Definition) -> bool:
        """Equal but for the pause state (what config reconciliation compares)."""
        return dataclasses.replace(self, paused=False) == dataclasses.replace(other, paused=False)

    def task_id(self, tick_ms: int) -> str:
        """The idempotency key of one tick: a tick fired twice makes one task."""
        return f"{TASK_ID_PREFIX}:{self.id}:{tick_ms}"

    def run_id(self, tick_ms: int) -> str:
        """The run a workflow schedule's tick starts: a tick fired twice starts one run."""
        return f"{TASK_ID_PREFIX}.{self.id}.{tick_ms}"

    def due_ms(self, tick_ms: int) -> int:
        """When the tick's task is due: the tick plus a jitter stable for (id, tick)."""
        if not self.jitter_ms:
            return tick_ms
        digest = hashlib.sha256(f"{self.id}:{tick_ms}".encode()).digest()
        return tick_ms + int.from_bytes(digest[:8], "big") % (self.jitter_ms + 1)

    def outbox_entry(
        self, tick_ms: int, default_max_retries: int, by_hand: bool = False
    ) -> tuple[str, str]:
        """(id, JSON) of one tick as the outbox holds it: the task to enqueue, or for a
        workflow schedule the run to start (its id derived from the tick, so a tick fired twice
        starts one run). `by_hand`: a tick fired by FireSchedule, its id marked `now` apart
        from the timetable's."""
        due = self.due_ms(tick_ms)
        if self.workflow:
            body: dict[str, object] = {"wf": self.workflow, "input": self.payload, "due": due}
            run_id = self.run_id(tick_ms) + (".now" if by_hand else "")
            return run_id, json.dumps(body, separators=(",", ":"))
        retries = default_max_retries if self.max_retries is None else self.max_retries
        body = {"topic": self.topic, "payload": self.payload, "due": due, "maxr": retries}
        task_id = self.task_id(tick_ms) + (":now" if by_hand else "")
        return task_id, json.dumps(body, separators=(",", ":"))

    def to_fields(self) -> dict[str, str]:
        """The definition's part of the schedule HASH (the store adds next, last, rev...)."""
        return {
            "id": self.id,
            "topic": self.topic,
            "payload": self.payload,
            "cron": self.cron,
            "tz": self.timezone,
            "interval": str(self.interval_ms),
            "maxr": "" if self.max_retries is None else str(self.max_retries),
            "misfire": self.misfire.value,
            "jitter": str(self.jitter_ms),
            "start": str(self.start_ms),
            "end": str(self.end_ms),
            "paused": "1" if self.paused else "0",
            "source": self.source.value,
            "wf": self.workflow,
        }


@dataclasses.dataclass(frozen=True, slots=True)
class Schedule:
    """A stored schedule. Times are ms since the epoch; next_fire_ms 0: no tick left (the
    window ended), last_fire_ms 0: never fired. `rev` grows on every change but a fire."""

    definition: Definition
    next_fire_ms: int = 0
    last_fire_ms: int = 0
    rev: int = 0
    created_ms: int = 0
    updated_ms: int = 0

    @property
    def id(self) -> str:
        return self.definition.id


def from_fields(fields: Mapping[str, str]) -> Schedule:
    """Decode a schedule HASH (as the store returns it, text keys and values)."""

    def num(key: str) -> int:
        value = fields.get(key) or "0"
        return int(float(value))

    maxr = fields.get("maxr", "")
    definition = Definition(
        id=fields.get("id", ""),
        topic=fields.get("topic", ""),
        payload=fields.get("payload", ""),
        cron=fields.get("cron", ""),
        timezone=fields.get("tz", ""),
        interval_ms=num("interval"),
        max_retries=int(maxr) if maxr else None,
        misfire=Misfire(fields.get("misfire") or Misfire.SKIP.value),
        jitter_ms=num("jitter"),
        start_ms=num("start"),
        end_ms=num("end"),
        paused=fields.get("paused") == "1",
        source=Source(fields.get("source") or Source.API.value),
        workflow=fields.get("wf", ""),
    )
    return Schedule(
        definition, num("next"), num("last"), num("rev"), num("created"), num("updated")
    )


# -- validation ----------------------------------------------------------------------------


def schedule_id(value: str, field: str = "id") -> str:
    return validation.matching(value, field, ID_RE, "1-100 characters of [A-Za-z0-9._:@/+=-]")


def check(
    d: Definition, payload_max_bytes: int = DEFAULT_PAYLOAD_MAX, prefix: str = ""
) -> Definition:
    """`d` validated and normalised, or InvalidArgument/TooLarge naming `<prefix><field>`."""
    schedule_id(d.id, f"{prefix}id")
    if d.workflow:
        _check_workflow(d, prefix)
    else:
        validation.topic(d.topic, f"{prefix}topic")
    try:
        validation.payload(d.payload, payload_max_bytes)
    except TooLarge as exc:
        raise TooLarge(f"{prefix}payload: {exc}") from exc
    cron = _check_timing(d, prefix)
    if d.max_retries is not None:
        validation.non_negative(d.max_retries, f"{prefix}max_retries", validation.MAX_RETRIES_LIMIT)
    validation.non_negative(d.jitter_ms, f"{prefix}jitter_ms", MAX_JITTER_MS)
    validation.non_negative(d.start_ms, f"{prefix}start_ms")
    validation.non_negative(d.end_ms, f"{prefix}end_ms")
    if d.start_ms and d.end_ms and d.end_ms <= d.start_ms:
        raise InvalidArgument(f"{prefix}end_ms must be after start_ms")
    return dataclasses.replace(d, cron=cron)


def _check_workflow(d: Definition, prefix: str) -> None:
    """A schedule that starts workflow runs: no topic, no max_retries (its steps have their
    own), and an id that fits the derived run id."""
    if d.topic:
        raise InvalidArgument(f"{prefix}topic/workflow: set one of them, not both")
    if not WORKFLOW_NAME_RE.fullmatch(d.workflow):
        raise InvalidArgument(
            f"{prefix}workflow {d.workflow[:60]!r} must be 1-48 characters of [A-Za-z0-9_-]"
        )
    if d.max_retries is not None:
        raise InvalidArgument(f"{prefix}max_retries: a workflow's steps set their own retries")
    if not RUN_SCHEDULE_ID_RE.fullmatch(d.id):
        raise InvalidArgument(
            f"{prefix}id {d.id[:120]!r}: a schedule that starts a workflow needs an id of "
            "1-44 characters of [A-Za-z0-9_.-] (its runs are sched.<id>.<tick ms>)"
        )


def _check_timing(d: Definition, prefix: str) -> str:
    """Exactly one of cron and interval_ms; a valid expression and zone. The stripped cron."""
    if bool(d.cron.strip()) == bool(d.interval_ms):
        raise InvalidArgument(f"{prefix}cron/interval_ms: set exactly one of them")
    if d.interval_ms:
        validation.non_negative(d.interval_ms, f"{prefix}interval_ms", validation.MAX_DELAY_MS)
        if d.interval_ms < MIN_INTERVAL_MS:
            raise InvalidArgument(f"{prefix}interval_ms must be >= {MIN_INTERVAL_MS}")
        if d.timezone:
            raise InvalidArgument(f"{prefix}timezone applies to cron schedules only")
        return ""
    try:
        zone(d.timezone)
    except CronError as exc:
        raise InvalidArgument(f"{prefix}timezone: {exc}") from exc
    try:
        return check_cron(d.cron)
    except CronError as exc:
        raise InvalidArgument(f"{prefix}cron: {exc}") from exc


# -- the config file's `schedules:` section -------------------------------------------------

CONFIG_KEYS = frozenset(
    {
        "id",
        "topic",
        "payload",
        "cron",
        "timezone",
        "interval_ms",
        "max_retries",
        "misfire_policy",
        "jitter_ms",
        "start_ms",
        "end_ms",
        "paused",
        "workflow",
        "input",
    }
)


def from_config(raw: list[Any], payload_max_bytes: int = DEFAULT_PAYLOAD_MAX) -> list[Definition]:
    """The `schedules` config section as checked definitions (source "config"), or ConfigError
    naming the bad item and key, e.g. "schedules[2].cron: ...". A `paused` key is the initial
    state: it applies when the schedule is new or its definition changed."""
    if not isinstance(raw, list):
        raise ConfigError(f"schedules: expected a list, got {raw!r}")
    out: list[Definition] = []
    seen: set[str] = set()
    for n, item in enumerate(raw):
        where = f"schedules[{n}]."
        try:
            d = check(_parse_item(item, where), payload_max_bytes, where)
        except (InvalidArgument, TooLarge) as exc:
            raise ConfigError(str(exc)) from exc
        if d.id in seen:
            raise ConfigError(f"{where}id: {d.id!r} is declared twice")
        seen.add(d.id)
        out.append(d)
    return out


def _parse_item(item: Any, where: str) -> Definition:
    if not isinstance(item, Mapping):
        raise InvalidArgument(f"{where.rstrip('.')}: expected a mapping, got {item!r}")
    unknown = sorted(str(k) for k in item if k not in CONFIG_KEYS)
    if unknown:
        known = ", ".join(sorted(CONFIG_KEYS))
        raise InvalidArgument(f"{where}{unknown[0]}: unknown key (known: {known})")
    tz = _text(item, "timezone", where)
    return Definition(
        id=_text(item, "id", where),
        topic=_text(item, "topic", where),
        payload=_payload(_input_or_payload(item, where), where),
        cron=_text(item, "cron", where),
        timezone=tz,
        interval_ms=duration_ms(item.get("interval_ms", 0), f"{where}interval_ms"),
        max_retries=_optional_int(item.get("max_retries"), f"{where}max_retries"),
        misfire=misfire_policy(item.get("misfire_policy", "skip"), f"{where}misfire_policy"),
        jitter_ms=duration_ms(item.get("jitter_ms", 0), f"{where}jitter_ms"),
        start_ms=instant_ms(item.get("start_ms", 0), tz, f"{where}start_ms"),
        end_ms=instant_ms(item.get("end_ms", 0), tz, f"{where}end_ms"),
        paused=_flag(item.get("paused", False), f"{where}paused"),
        source=Source.CONFIG,
        workflow=_text(item, "workflow", where),
    )


def _text(item: Mapping[str, Any], key: str, where: str) -> str:
    value = item.get(key, "")
    if not isinstance(value, str):
        raise InvalidArgument(f"{where}{key}: expected a string, got {value!r}")
    return value


def _input_or_payload(item: Mapping[str, Any], where: str) -> Any:
    """A workflow schedule's run input (`input`, or `payload`); a task schedule's payload."""
    if "input" not in item:
        return item.get("payload", "")
    if not item.get("workflow"):
        raise InvalidArgument(f"{where}input: only a schedule with a workflow has an input")
    if "payload" in item:
        raise InvalidArgument(f"{where}input/payload: set one of them, not both")
    return item["input"]


def _payload(value: Any, where: str) -> str:
    """A string as is; a mapping or list (YAML) as compact JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping | list):
        return json.dumps(value, separators=(",", ":"), default=str)
    raise InvalidArgument(f"{where}payload: expected a string or a mapping, got {value!r}")


def duration_ms(value: Any, field: str) -> int:
    """A duration like 500ms, 30s, 5m, 2h, 1d (appliance.times); a bare number of milliseconds
    only where the field's name ends in _ms (the config's keys, not the CLI's --every)."""
    try:
        return times.duration_ms(value, bare_ms=field.endswith("_ms"))
    except times.BadValue as exc:
        raise InvalidArgument(f"{field}: {exc}") from None


def _optional_int(value: Any, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise InvalidArgument(f"{field}: expected a number, got {value!r}")


def misfire_policy(value: Any, field: str) -> Misfire:
    name = str(value).strip().upper().replace("-", "_")
    if name not in Misfire.__members__:
        raise InvalidArgument(f"{field}: expected skip or run_once, got {value!r}")
    return Misfire[name]


def _flag(value: Any, field: str) -> bool:
    if isinstance(value, bool):
        return value
    raise InvalidArgument(f"{field}: expected true or false, got {value!r}")


def instant_ms(value: Any, tz: str, field: str) -> int:
    """Epoch ms, or an ISO-8601 date/time (YAML may hand a datetime); naive means the
    schedule's time zone (UTC for interval schedules). Parsed by appliance.times."""
    try:
        return times.instant_ms(value, lambda: zone(tz))
    except CronError as exc:
        raise InvalidArgument(f"{field}: {exc}") from exc
    except times.BadValue as exc:
        raise InvalidArgument(f"{field}: {exc}") from None
