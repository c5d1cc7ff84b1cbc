"""Workflow definitions and runs as the console shows and edits them (ADR 0018): the draft (the
config file's `workflows:` item, the one shape the editor and YAML share), protobuf, YAML, the
version diff and the graph and timeline data the pages draw. Pure functions, no I/O.

Must not import redis, grpc or the store (the protobuf messages only).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from typing import Any

import yaml
from google.protobuf.json_format import MessageToDict

from appliance import times
from appliance.errors import ConfigError, InvalidArgument
from appliance.proto import queue_pb2 as pb
from appliance.workflows import definitions

DURATIONS = definitions.DURATION_KEYS  # written as '10s' in a draft, ms in protobuf
FINISHED_RUN = ("RUN_SUCCEEDED", "RUN_FAILED", "RUN_CANCELED")

Draft = dict[str, Any]  # {name, steps: [{name, topic, payload, after, delay_ms: '10s', ...}]}


def draft_from_pb(workflow: pb.Workflow) -> Draft:
    """A stored definition as the config file writes it: only the fields set, durations with a
    unit (delay_ms: 10s)."""
    steps = []
    for step in workflow.steps:
        fields: dict[str, Any] = MessageToDict(step, preserving_proto_field_name=True)
        for key in DURATIONS:
            if key in fields:  # int64 comes as text
                fields[key] = times.duration_text(int(fields[key]))
        steps.append(fields)
    return {"name": workflow.name, "steps": steps}


def checked(draft: Any, payload_max_bytes: int) -> definitions.Workflow:
    """The draft checked by the very code that checks the config file's workflows and
    PutWorkflow's (definitions.check); InvalidArgument naming the bad field."""
    steps = draft.get("steps") if isinstance(draft, dict) else None
    for i, step in enumerate(steps if isinstance(steps, list) else []):
        for key in DURATIONS:
            try:
                if isinstance(step, dict) and key in step:
                    times.duration_ms(step[key], bare_ms=True)
            except times.BadValue as exc:  # the config's message does not name the field
                raise InvalidArgument(f"steps[{i}].{key}: {exc}") from None
    try:
        return definitions.from_config([draft], payload_max_bytes)[0]
    except ConfigError as exc:
        raise InvalidArgument(str(exc).removeprefix("workflows[0]: ")) from None


def to_pb(workflow: definitions.Workflow) -> pb.Workflow:
    out = pb.Workflow(name=workflow.name)
    for step in workflow.steps:
        fields = dataclasses.asdict(step)
        retries = fields.pop("max_retries")
        added = out.steps.add(**fields)
        if retries is not None:
            added.max_retries = retries
    return out


def to_yaml(draft: Draft) -> str:
    """The draft as an item of the config file's `workflows:` list."""
    return yaml.safe_dump([draft], sort_keys=False, allow_unicode=True, width=100)


def diff(old: pb.Workflow | None, new: pb.Workflow) -> list[tuple[str, str]]:
    """The YAML lines of `new` against `old` as (kind, line), kind one of ' ', '+', '-', '@'."""
    before = to_yaml(draft_from_pb(old)).splitlines() if old is not None else []
    after = to_yaml(draft_from_pb(new)).splitlines()
    old_name = f"version {old.version}" if old is not None else "nothing"
    lines = difflib.unified_diff(before, after, old_name, f"version {new.version}", lineterm="")
    return [(line[:1] if line[:1] in "+-@ " else " ", line) for line in lines]


def graph(workflow: pb.Workflow, run: pb.Run | None = None) -> dict[str, Any]:
    """Nodes and edges for static/graph.js; with a run, each step's state."""
    states = (
        {s.name: pb.StepState.Name(s.state).removeprefix("STEP_") for s in run.steps} if run else {}
    )
    nodes = []
    for step in workflow.steps:
        kind = "signal" if step.signal else "failure" if step.on_failure else "task"
        label = step.name + (
            f"\nwait {times.duration_text(step.delay_ms)}" if step.delay_ms else ""
        )
        state = states.get(step.name, "")
        nodes.append({"id": step.name, "label": label, "kind": kind, "state": state})
    edges = [
        {"id": f"{parent}->{step.name}", "source": parent, "target": step.name}
        for step in workflow.steps
        for parent in step.after
    ]
    return {"nodes": nodes, "edges": edges}


def script_json(value: Any) -> str:
    """JSON safe inside a <script type="application/json"> element."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e")


@dataclasses.dataclass(frozen=True)
class TimelineRow:
    name: str
    state: str  # e.g. SUCCEEDED
    due_ms: int
    started_ms: int
    finished_ms: int
    left_pct: float  # the bar: from the step's start (or due time) to its end (or now)
    width_pct: float


def timeline(run: pb.Run, now_ms: int) -> list[TimelineRow]:
    """Each step of the run that began, in the order it began, placed on the run's time span."""
    begun = [s for s in run.steps if s.due_ms or s.started_ms or s.finished_ms]
    start = run.created_ms or min((s.due_ms or s.started_ms for s in begun), default=now_ms)
    end = run.finished_ms or max([now_ms, *(s.finished_ms for s in begun)])
    span = max(end - start, 1)
    rows = []
    for s in sorted(begun, key=lambda s: (s.started_ms or s.due_ms or s.finished_ms, s.name)):
        begin = s.started_ms or s.due_ms or s.finished_ms
        stop = s.finished_ms or end
        left = 100.0 * max(begin - start, 0) / span
        width = max(100.0 * max(stop - begin, 0) / span, 0.5)
        state = pb.StepState.Name(s.state).removeprefix("STEP_")
        rows.append(TimelineRow(s.name, state, s.due_ms, s.started_ms, s.finished_ms, left, width))
    return rows
