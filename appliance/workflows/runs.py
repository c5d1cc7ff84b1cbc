"""Starting a run of a workflow's latest version, as StartRun and workflow schedules do: the
definition looked up, the run written once per run id (a repeat finds it; ADR 0010).

Reaches Redis only through the store; must not import grpc.
"""

from __future__ import annotations

from appliance.errors import AlreadyExists
from appliance.store.workflows import WorkflowStore
from appliance.workflows.definitions import Workflow


async def start(
    store: WorkflowStore, name: str, run_id: str, run_input: str, start_ms: int = 0
) -> tuple[int, bool]:
    """(the run's version, whether it was created now). NotFound: no such workflow;
    AlreadyExists: the id is a run of another workflow."""
    version, text = await store.workflow(name)
    wf = Workflow.from_json(name, version, text)
    created = await store.start_run(run_id, name, version, run_input, wf.step_names, start_ms)
    if not created:
        fields = await store.run_fields(run_id)
        if fields.get("wf") != name:
            raise AlreadyExists(f"run {run_id!r} is a run of workflow {fields.get('wf')!r}")
        version = int(fields["ver"])
    return version, created
