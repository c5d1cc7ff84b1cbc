"""Starting a run of a workflow's latest version, as StartRun and workflow schedules do: the
definition looked up, the run written once per run id (a repeat finds it), its first steps
scheduled by the same script, as the advancer would schedule them (ADR 0010).

Reaches Redis only through the store; must not import grpc.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import NamedTuple

from appliance.errors import AlreadyExists
from appliance.model import NewTask
from appliance.store.workflows import WorkflowStore
from appliance.workflows.advancer import Advancer
from appliance.workflows.definitions import Workflow
from appliance.workflows.model import RunRecord, run_from_fields

Definition = Callable[[str, int], Awaitable[Workflow]]
Look = Callable[[RunRecord, int], int]


class Started(NamedTuple):
    version: int
    created: bool  # False: the run existed (nothing changed)
    run: RunRecord | None = None  # as run_start made it with its first steps scheduled
    workflow: Workflow | None = None


async def start(
    store: WorkflowStore,
    name: str,
    run_id: str,
    run_input: str,
    start_ms: int = 0,
    *,
    retries: int,
    definition: Definition | None = None,
    look: Look | None = None,
) -> Started:
    """Start the run. Its steps without parents are scheduled by run_start itself (rendered
    here from the input, exactly as the advancer would: Advancer.decide) and their tasks
    written after it (ids derived: a repeat writes nothing), so no advancer need read the new
    run; its first look (`look`: when, from the run as made and a Redis time; default the
    advancer's rule) catches a crash before the tasks were written. A first step that would
    end without a task (a false `when`, a failing template) leaves the run to an advancer,
    the long way (run_start's message). `retries`: the server's default max retries;
    `definition`: a cached lookup of a workflow version. NotFound: no such workflow;
    AlreadyExists: the id is a run of another workflow."""
    version = await store.latest_version(name)
    if definition is None:
        wf = Workflow.from_json(name, version, (await store.workflow(name, version))[1])
    else:
        wf = await definition(name, version)
    now = await store.store.now_ms()
    created_ms = start_ms or now
    fresh = _as_made(run_id, wf, run_input, created_ms, [])
    plan = Advancer.decide(fresh, wf, retries)
    ready = [(step, task) for step, task in plan if isinstance(task, NewTask)]
    if len(ready) < len(plan):  # a first step ends without a task: the long way
        ready = []
    run = _as_made(run_id, wf, run_input, created_ms, ready) if ready else None
    look = look or (lambda made, now: Advancer.next_look(made, now, []))
    at = look(run, now) if run else 0
    created = await store.start_run(
        run_id, name, version, run_input, wf.step_names, created_ms, ready, now, at
    )
    if not created:
        fields = await store.run_fields(run_id)
        if fields.get("wf") != name:
            raise AlreadyExists(f"run {run_id!r} is a run of workflow {fields.get('wf')!r}")
        return Started(int(fields["ver"]), False)
    tasks = [task for _, task in ready if task.id]  # a signal step has none
    if tasks:
        await store.write_tasks(tasks)
    return Started(version, True, run, wf)


def _as_made(
    run_id: str,
    wf: Workflow,
    run_input: str,
    created_ms: int,
    scheduled: list[tuple[str, NewTask]],
) -> RunRecord:
    """The run as run_start writes it (the same fields), `scheduled` steps SCHEDULED."""
    fields = {"wf": wf.name, "ver": str(wf.version), "input": run_input}
    fields |= {"state": "RUNNING" if scheduled else "PENDING", "created": str(created_ms)}
    fields |= {f"{n}:state": "WAITING" for n in wf.step_names}
    for step, task in scheduled:
        fields |= {f"{step}:state": "SCHEDULED", f"{step}:task": task.id}
        fields |= {f"{step}:topic": task.topic, f"{step}:payload": task.payload}
        fields |= {f"{step}:due": str(task.execute_at_ms), f"{step}:maxr": str(task.max_retries)}
    return run_from_fields(run_id, fields, wf.step_names)
