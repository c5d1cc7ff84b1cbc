"""seed_<state>() and read helpers for the workflow store tests (tests/store/test_run_*.py,
test_step_*.py, test_workflow_*.py)."""

from __future__ import annotations

from appliance.model import NewTask
from appliance.store import Store
from appliance.store.workflows import WorkflowStore
from appliance.workflows.model import RunRecord, step_task_id

STEPS = ["a", "b", "c"]


async def seed_run(store: Store, run_id: str = "r1") -> WorkflowStore:
    wf = WorkflowStore(store)
    assert await wf.start_run(run_id, "w", 1, '{"x": 1}', STEPS)
    return wf


def step_task(run_id: str, step: str, due_ms: int = 1, topic: str = "t") -> NewTask:
    return NewTask(step_task_id(run_id, step), topic, f"payload-{step}", 2, execute_at_ms=due_ms)


async def seed_scheduled(store: Store, run_id: str = "r1", *steps: str) -> WorkflowStore:
    wf = await seed_run(store, run_id)
    for s in steps or ("a",):
        assert await wf.schedule_step(run_id, s, step_task(run_id, s)) is None
    return wf


async def read_run(wf: WorkflowStore, run_id: str = "r1") -> RunRecord:
    return await wf.get_run(run_id, STEPS)


def states(run: RunRecord) -> list[str]:
    return [run.state.value, *(s.state.value for s in run.steps)]
