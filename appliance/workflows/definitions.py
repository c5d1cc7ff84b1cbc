"""A workflow definition, checked before anything is stored: names, topics, parents, cycles,
delays, retries and templates (docs/adr/0010). Bad input is InvalidArgument naming the field.

Must not import grpc or redis.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import graphlib
import json
import re
import time
from typing import Any

from appliance import times, validation
from appliance.errors import ConfigError, InvalidArgument, TooLarge
from appliance.workflows import templates

NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,48}")  # step names: task ids are wf:<run>:<step>
RUN_ID_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
MAX_STEPS = 100


@dataclasses.dataclass(frozen=True, slots=True)
class Step:
    name: str
    topic: str
    payload: str = ""  # a template over input and steps.<parent>.output
    after: tuple[str, ...] = ()
    after_any: bool = False  # runs after any parent succeeded, not all
    delay_ms: int = 0  # after the parents finished
    max_retries: int | None = None  # None: the server's default
    on_failure: bool = False  # runs only when another step failed (sees failed.step, .error)
    signal: str = ""  # no task: waits for SignalRun(name=signal); its payload is the output
    timeout_ms: int = 0  # a signal step: fails when no signal came this long after its parents
    when: str = ""  # a Jinja2 expression over input and steps; false: the step is SKIPPED
    delay_until: str = ""  # a template giving a time (ISO 8601 or epoch ms): not before it

    @property
    def has_task(self) -> bool:
        return not self.signal


@dataclasses.dataclass(frozen=True, slots=True)
class Workflow:
    name: str
    steps: tuple[Step, ...]
    version: int = 0  # set by the store

    def to_json(self) -> str:
        return json.dumps([dataclasses.asdict(s) for s in self.steps], separators=(",", ":"))

    @classmethod
    def from_json(cls, name: str, version: int, text: str) -> Workflow:
        raw: list[dict[str, Any]] = json.loads(text)
        steps = tuple(Step(**{**s, "after": tuple(s["after"])}) for s in raw)
        return cls(name, steps, version)

    def step(self, name: str) -> Step:
        return next(s for s in self.steps if s.name == name)

    @property
    def step_names(self) -> list[str]:
        return [s.name for s in self.steps]

    @property
    def on_failure(self) -> str:
        """The name of the on_failure step, or ''."""
        return next((s.name for s in self.steps if s.on_failure), "")


def name(value: str, field: str) -> str:
    return validation.matching(value, field, NAME_RE, "1-48 characters of [A-Za-z0-9_-]")


def run_id(value: str, field: str = "id") -> str:
    return validation.matching(value, field, RUN_ID_RE, "1-64 characters of [A-Za-z0-9_.-]")


def check(workflow: Workflow, payload_max_bytes: int) -> Workflow:
    """The workflow, or InvalidArgument naming the first bad field."""
    name(workflow.name, "workflow.name")
    if not 1 <= len(workflow.steps) <= MAX_STEPS:
        raise InvalidArgument(f"workflow.steps: 1 to {MAX_STEPS} steps, not {len(workflow.steps)}")
    seen: set[str] = set()
    for i, step in enumerate(workflow.steps):
        field = f"workflow.steps[{i}]"
        if step.name in seen:
            raise InvalidArgument(f"{field}.name {step.name!r} is used twice")
        seen.add(step.name)
        _check_step(step, field, payload_max_bytes)
    if sum(s.on_failure for s in workflow.steps) > 1:
        raise InvalidArgument("workflow.steps: at most one on_failure step")
    for i, step in enumerate(workflow.steps):
        for parent in step.after:
            if parent not in seen:
                raise InvalidArgument(f"workflow.steps[{i}].after: unknown parent {parent!r}")
            if parent == workflow.on_failure:
                raise InvalidArgument(f"workflow.steps[{i}].after: {parent!r} is on_failure")
    try:
        graphlib.TopologicalSorter({s.name: s.after for s in workflow.steps}).prepare()
    except graphlib.CycleError as exc:
        raise InvalidArgument(f"workflow.steps: cycle {' -> '.join(exc.args[1])}") from None
    return workflow


def _check_step(step: Step, field: str, payload_max_bytes: int) -> None:
    name(step.name, f"{field}.name")
    if step.signal:
        name(step.signal, f"{field}.signal")
        if step.topic or step.payload:
            raise InvalidArgument(f"{field}: a signal step has no topic and no payload")
    else:
        validation.topic(step.topic, f"{field}.topic")
        if step.timeout_ms:
            raise InvalidArgument(f"{field}.timeout_ms: only a signal step has a timeout")
    validation.payload(step.payload, payload_max_bytes)
    validation.non_negative(step.delay_ms, f"{field}.delay_ms", validation.MAX_DELAY_MS)
    validation.non_negative(step.timeout_ms, f"{field}.timeout_ms", validation.MAX_DELAY_MS)
    if step.max_retries is not None:
        validation.max_retries(step.max_retries)
    if step.on_failure and (step.after or step.signal):
        raise InvalidArgument(f"{field}: an on_failure step has no parents and no signal")
    templates.check(step.payload, f"{field}.payload")
    if step.when:
        templates.check(step.when, f"{field}.when", expression=True)
    if step.delay_until:
        templates.check(step.delay_until, f"{field}.delay_until")
        if not templates.is_template(step.delay_until):  # a fixed time: checked now
            until_ms(step.delay_until, f"{field}.delay_until", None)


def until_ms(text: str, field: str, now_ms: int | None) -> int:
    """A step's rendered `delay_until` as epoch ms (ISO 8601, UTC when it names no zone, or
    epoch ms); InvalidArgument naming the field when it is no time or over 10 years ahead of
    `now_ms` (None: this machine's clock)."""
    try:
        ms = times.instant_ms(text.strip(), dt.UTC)
    except times.BadValue as exc:
        raise InvalidArgument(f"{field}: {exc}") from None
    now = round(time.time() * 1000) if now_ms is None else now_ms
    if ms - now > validation.MAX_DELAY_MS:
        raise InvalidArgument(f"{field}: {text.strip()!r} is more than 10 years ahead")
    return ms


STEP_KEYS = frozenset(f.name for f in dataclasses.fields(Step))
DURATION_KEYS = ("delay_ms", "timeout_ms")


def from_config(raw: list[Any], payload_max_bytes: int) -> list[Workflow]:
    """The `workflows` config section as checked workflows, or ConfigError naming the bad item
    and key, e.g. "workflows[0].steps[1].after: unknown parent 'x'"."""
    out: list[Workflow] = []
    for n, item in enumerate(raw):
        where = f"workflows[{n}]"
        try:
            wf = check(_parse(item, where), payload_max_bytes)
        except (InvalidArgument, TooLarge, times.BadValue, TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: {str(exc).removeprefix('workflow.')}") from None
        if any(w.name == wf.name for w in out):
            raise ConfigError(f"{where}.name: {wf.name!r} is declared twice")
        out.append(wf)
    return out


def _parse(item: Any, where: str) -> Workflow:
    if not isinstance(item, dict) or set(item) - {"name", "steps"}:
        raise InvalidArgument(f"expected {{name, steps: [...]}}, got {item!r}")
    steps = item.get("steps")
    if not isinstance(steps, list) or not all(isinstance(s, dict) for s in steps):
        raise InvalidArgument("steps: expected a list of mappings")
    parsed = []
    for i, s in enumerate(steps):
        unknown = sorted(set(s) - STEP_KEYS)
        if unknown:
            raise InvalidArgument(f"steps[{i}].{unknown[0]}: unknown key")
        fields = {"topic": "", **s}  # a signal step has none
        for key in DURATION_KEYS:
            if key in fields:
                fields[key] = times.duration_ms(fields[key], bare_ms=True)
        if isinstance(fields.get("delay_until"), dt.date | int):  # YAML's unquoted time
            fields["delay_until"] = times.iso(times.instant_ms(fields["delay_until"], dt.UTC))
        after = fields.get("after", ())
        fields["after"] = (after,) if isinstance(after, str) else tuple(after)
        parsed.append(Step(**fields))
    return Workflow(str(item.get("name", "")), tuple(parsed))
