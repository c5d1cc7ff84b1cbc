"""The run and step lifecycle tables (appliance/workflows/model.py) and the workflow scripts
agree: every edge names a script that writes its target state, every state a script writes is
the target of one of its edges, and every workflow script has its own test module."""

from __future__ import annotations

import re
from pathlib import Path

from appliance.model import allowed
from appliance.store.scripts import available_scripts, script_source
from appliance.workflows.model import (
    RUN_TRANSITIONS,
    STEP_TRANSITIONS,
    RunState,
    StepState,
    run_of_task,
    step_task_id,
)

STORE_TESTS = Path(__file__).resolve().parents[1] / "store"
WORKFLOW_SCRIPTS = [
    n for n in available_scripts() if n.split("_")[0] in ("run", "step", "workflow")
]
STATES = {s.value for s in RunState} | {s.value for s in StepState}


def written(name: str) -> set[str]:
    """The state names a script writes: its state literals outside comparisons and comments."""
    code = "\n".join(
        line for line in script_source(name).splitlines() if not line.lstrip().startswith("--")
    )
    literals = set(re.findall(r"(?<![=~]=\s)'([A-Z]+)'", code))  # not in a comparison
    return literals & STATES


def test_every_edge_has_its_script_and_every_script_its_edges() -> None:
    moves = RUN_TRANSITIONS + STEP_TRANSITIONS
    scripts = {m.script for m in moves}
    assert scripts <= set(available_scripts())
    for name in scripts:
        targets = {m.target for m in moves if m.script == name}
        writes = written(name)
        # an outcome passed in ARGV (step_finish: SUCCEEDED | FAILED) is checked by its test
        assert writes <= targets, (name, writes - targets)
        assert targets - writes <= {"SUCCEEDED", "FAILED", "RUNNING"}, (name, targets - writes)


def test_every_workflow_script_has_its_test_module() -> None:
    assert {"run_start", "step_schedule", "step_finish", "run_cancel"} <= set(WORKFLOW_SCRIPTS)
    for name in WORKFLOW_SCRIPTS:
        assert (STORE_TESTS / f"test_{name}.py").exists(), name


def test_step_task_ids_name_their_run() -> None:
    assert step_task_id("r-1", "welcome") == "wf:r-1:welcome"
    assert run_of_task("wf:r-1:welcome") == "r-1"
    assert run_of_task("orders~abc") is None and run_of_task("wf:r-1") is None


def test_the_run_and_step_tables_answer_allowed_like_the_task_table() -> None:
    assert allowed(RunState.RUNNING, RunState.CANCELED, RUN_TRANSITIONS)
    assert not allowed(RunState.SUCCEEDED, RunState.RUNNING, RUN_TRANSITIONS)
    assert allowed(StepState.WAITING, StepState.SKIPPED, STEP_TRANSITIONS)
    assert not allowed(StepState.RUNNING, StepState.CANCELED, STEP_TRANSITIONS)
