"""Workflow definitions and runs as the console shows and edits them (ADR 0018): the draft (the
config file's `workflows:` item, the one shape the editor and YAML share), protobuf, YAML, the
version diff and the graph and timeline data the pages draw. Pure functions, no I/O.

Must not import redis, grpc, the store or the generated stubs (appliance.client.drafts does).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from typing import Any

import yaml

from appliance import times
from appliance.client import drafts

Draft = drafts.Draft  # the config file's workflow item, the editor's shape


def to_yaml(draft: Draft) -> str:
    """The draft as an item of the config file's `workflows:` list."""
    return yaml.safe_dump([draft], sort_keys=False, allow_unicode=True, width=100)


def diff(old: Any, new: Any) -> list[tuple[str, str]]:
    """The YAML lines of workflow `new` against `old` (None: nothing) as (kind, line), kind one
    of ' ', '+', '-', '@'."""
    before = to_yaml(drafts.draft_from_pb(old)).splitlines() if old is not None else []
    after = to_yaml(drafts.draft_from_pb(new)).splitlines()
    old_name = f"version {old.version}" if old is not None else "nothing"
    lines = difflib.unified_diff(before, after, old_name, f"version {new.version}", lineterm="")
    return [(line[:1] if line[:1] in "+-@ " else " ", line) for line in lines]


def graph(workflow: Any, run: Any = None) -> dict[str, Any]:
    """Nodes and edges of a pb.Workflow for static/graph.js; with a pb.Run, each step's state."""
    states = {s.name: drafts.step_state(s) for s in run.steps} if run else {}
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


def timeline(run: Any, now_ms: int) -> list[TimelineRow]:
    """Each step of the pb.Run that began, in the order it began, placed on the run's time span."""
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
        state = drafts.step_state(s)
        rows.append(TimelineRow(s.name, state, s.due_ms, s.started_ms, s.finished_ms, left, width))
    return rows
