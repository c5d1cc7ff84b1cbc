"""A workflow as the config file writes it (a "draft": `{name, steps: [{name, topic, after,
delay_ms: 10s, ...}]}`) <-> the protobuf `Workflow` the API takes, for the console's editor
(ADR 0018) and any SDK user who keeps definitions in YAML. Checked by the very code that checks
the config file and PutWorkflow (appliance.workflows.definitions). No I/O.

Must not import redis, the store or the api package.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from google.protobuf.json_format import MessageToDict

from appliance import times
from appliance.errors import ConfigError, InvalidArgument
from appliance.proto import queue_pb2 as pb
from appliance.workflows import definitions

DURATIONS = definitions.DURATION_KEYS  # written as '10s' in a draft, ms in protobuf
FINISHED_RUN = ("SUCCEEDED", "FAILED", "CANCELED")

Draft = dict[str, Any]


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
    """The draft checked by definitions.from_config (over definitions.check, as PutWorkflow);
    InvalidArgument naming the bad field."""
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


def draft_to_pb(draft: Any, payload_max_bytes: int) -> pb.Workflow:
    return to_pb(checked(draft, payload_max_bytes))


def bare(name: str, step_names: list[str]) -> pb.Workflow:
    """Steps with names only (a run's workflow that was deleted since)."""
    return pb.Workflow(name=name, steps=[pb.WorkflowStep(name=n) for n in step_names])


def run_state(run: pb.Run) -> str:
    """e.g. 'RUNNING'."""
    return pb.RunState.Name(run.state).removeprefix("RUN_")


def step_state(step: pb.StepRun) -> str:
    """e.g. 'SUCCEEDED'."""
    return pb.StepState.Name(step.state).removeprefix("STEP_")
