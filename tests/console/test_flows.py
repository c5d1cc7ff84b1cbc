"""The console's workflow conversions (appliance/console/flows.py): a definition read back from
protobuf is the config file's item again, the diff marks what changed, the timeline places each
step on the run's span. No appliance needed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from appliance.client import drafts
from appliance.console import flows
from appliance.errors import InvalidArgument
from appliance.proto import queue_pb2 as pb
from appliance.workflows import definitions

DEMO = Path(__file__).resolve().parents[2] / "config" / "demo.yaml"


@pytest.mark.parametrize("item", yaml.safe_load(DEMO.read_text())["workflows"])
def test_a_yaml_definition_round_trips_through_protobuf_and_the_draft(item: dict) -> None:  # type: ignore[type-arg]
    [checked] = definitions.from_config([item], 1 << 20)
    draft = drafts.draft_from_pb(drafts.to_pb(checked))
    assert draft == {"name": item["name"], "steps": item["steps"]}  # durations keep their units
    again = yaml.safe_load(flows.to_yaml(draft))
    assert definitions.from_config(again, 1 << 20) == [checked]


def test_a_bad_draft_is_the_server_s_invalid_argument_naming_the_field() -> None:
    with pytest.raises(InvalidArgument, match=r"steps\[1\].after: unknown parent 'nope'"):
        drafts.checked(
            {
                "name": "w",
                "steps": [
                    {"name": "a", "topic": "t"},
                    {"name": "b", "topic": "t", "after": ["nope"]},
                ],
            },
            1024,
        )
    with pytest.raises(InvalidArgument, match="cycle"):
        drafts.checked(
            {
                "name": "w",
                "steps": [
                    {"name": "a", "topic": "t", "after": "b"},
                    {"name": "b", "topic": "t", "after": "a"},
                ],
            },
            1024,
        )
    with pytest.raises(InvalidArgument, match=r"steps\[0\].delay_ms"):
        drafts.checked(
            {"name": "w", "steps": [{"name": "a", "topic": "t", "delay_ms": "soon"}]}, 1024
        )


def test_the_diff_marks_added_and_removed_lines() -> None:
    old = pb.Workflow(name="w", version=1, steps=[pb.WorkflowStep(name="a", topic="t")])
    new = pb.Workflow(
        name="w", version=2, steps=[pb.WorkflowStep(name="a", topic="t", delay_ms=3_600_000)]
    )
    lines = flows.diff(old, new)
    assert ("+", "+    delay_ms: 1h") in lines
    assert [k for k, _ in flows.diff(new, new)] == []
    assert {k for k, _ in flows.diff(None, new)} >= {"+"}


def test_the_timeline_places_each_begun_step_on_the_run_s_span() -> None:
    run = pb.Run(
        created_ms=1000,
        finished_ms=3000,
        steps=[
            pb.StepRun(
                name="b", state=pb.STEP_SUCCEEDED, due_ms=2000, started_ms=2000, finished_ms=3000
            ),
            pb.StepRun(
                name="a", state=pb.STEP_SUCCEEDED, due_ms=1000, started_ms=1000, finished_ms=2000
            ),
            pb.StepRun(name="never", state=pb.STEP_CANCELED),
        ],
    )
    rows = flows.timeline(run, now_ms=9999)
    assert [(r.name, r.state, r.left_pct, r.width_pct) for r in rows] == [
        ("a", "SUCCEEDED", 0.0, 50.0),
        ("b", "SUCCEEDED", 50.0, 50.0),
    ]
